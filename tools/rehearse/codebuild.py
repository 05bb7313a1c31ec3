"""One CodeBuild build, as CodeBuild runs it: a fresh container, the project's environment, the buildspec.

The "container" is a private mount namespace (`unshare --mount`) in which /usr/local/bin is a fresh
directory, so what a build installs there (Terraform) is gone with it, as in a new CodeBuild container.
That directory also holds the build image's stand-ins for what cannot run here: `curl`, which serves
Terraform releases from the rehearsal's mirror (holding the fake terraform) and reaches no other
host, and `docker`, which pushes an image manifest to the rehearsal's ECR. Role credentials come from a
container credentials endpoint on 127.0.0.1, as CodeBuild hands them to a build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modules.pipeline_toolkit import TOOLKIT_REQUIREMENTS, PipelineToolkit
from tools.rehearse.world import REPOSITORY, launcher

PHASES = ("install", "pre_build", "build", "post_build")
TRUST_VARIABLE = re.compile(r"(CA_BUNDLE|CA_CERTS|CERT_FILE|CERT_DIR|CAINFO|ROOTS_FILE_PATH)$")
TERRAFORM_VERSION_PLACEHOLDER = "1.13.4"
# What the build image brings besides the buildspec's own installs: git, python3 and the AWS CLI.
IMAGE_TOOLS = ("git", "python3", "aws", "bash", "make", "unzip", "zip", "sha256sum")


@dataclass(frozen=True)
class StandIn:
    """A buildspec command the rehearsal cannot run here, and what it runs instead, with the reason."""

    project_kind: str
    command_starts: str
    replacement: str
    reason: str
    # Only in builds whose action passes this MODE (deploy.yml's branches), or in every build of the project.
    mode: str | None = None
    # The build image's own stand-ins (`EVERY_PROJECT`) change no result, only its time: the action's result
    # does not name them; the module's docstring and docs/rehearsal.md do.
    noted: bool = True


# A StandIn.project_kind that matches every project: a property of the build image, not of one action.
EVERY_PROJECT = "*"


@dataclass
class Build:
    """What one action hands CodeBuild, and what comes back."""

    project: str
    buildspec: str
    primary: Path
    secondary: dict[str, Path]
    environment: dict[str, str]
    credentials_url: str
    stand_ins: list[StandIn] = field(default_factory=list)
    exported: dict[str, str] = field(default_factory=dict)
    status: int = 0
    log: Path | None = None


class Machine:
    """The build image: the tools a build may call, prepared once per rehearsal."""

    def __init__(self, root: Path, world_file: Path, endpoint: str) -> None:
        self.root = root
        self.world_file = world_file
        self.endpoint = endpoint
        self.mirror = root / "terraform-releases"
        self.home = root / "home"
        self.tool_path = self._tool_path()
        self._prepare_mirror()
        self._prepare_home()
        self._toolkit_stand_ins: list[StandIn] | None = None

    def mirror_checksums(self) -> dict[str, str]:
        """The mirror's fake release cannot match the Terraform checksums committed in the repository, so a
        build checks it against the mirror's own SHA256SUMS (install_terraform.sh's documented override)."""
        version = TERRAFORM_VERSION_PLACEHOLDER
        sums = self.mirror / "terraform" / version / f"terraform_{version}_SHA256SUMS"
        return {"TERRAFORM_PINNED_SHA256SUMS": str(sums)}

    @staticmethod
    def trusted_certificates() -> dict[str, str]:
        """The machine's TLS trust settings (a build image trusts what its host trusts)."""
        return {name: value for name, value in os.environ.items() if TRUST_VARIABLE.search(name)}

    def _tool_path(self) -> str:
        directories: list[str] = []
        for tool in IMAGE_TOOLS:
            found = shutil.which(tool)
            if found and str(Path(found).parent) not in directories and Path(found).parent != Path("/usr/local/bin"):
                directories.append(str(Path(found).parent))
        return ":".join(["/usr/local/bin", *directories, "/usr/bin", "/bin"])

    def _prepare_mirror(self) -> None:
        """A Terraform release whose binary is the fake: install_terraform.sh checks and installs it."""
        version = TERRAFORM_VERSION_PLACEHOLDER
        folder = self.mirror / "terraform" / version
        folder.mkdir(parents=True, exist_ok=True)
        terraform = launcher("tools.rehearse.terraform", self.world_file)
        sums = []
        for arch in ("amd64", "arm64"):
            name = f"terraform_{version}_linux_{arch}.zip"
            with zipfile.ZipFile(folder / name, "w") as archive:
                info = zipfile.ZipInfo("terraform", date_time=(2025, 1, 1, 0, 0, 0))
                info.external_attr = 0o755 << 16
                archive.writestr(info, terraform)
            sums.append(f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n")
        (folder / f"terraform_{version}_SHA256SUMS").write_text("".join(sums))

    def _prepare_home(self) -> None:
        """HOME of every build: the machine's package caches, so installs read no registry twice."""
        cache = self.home / ".cache"
        cache.mkdir(parents=True, exist_ok=True)
        machine_home = Path.home()
        for name in (".cache/uv", ".cache/pip", ".npm"):
            (machine_home / name).mkdir(parents=True, exist_ok=True)
        # The registries' settings of this machine too (npm's, pip's): the same registries, reached the same way.
        for name in (".cache/uv", ".cache/pip", ".npm", ".npmrc", ".config/pip", ".config/uv"):
            source, target = machine_home / name, self.home / name
            if source.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)

    @property
    def stand_ins(self) -> list[StandIn]:
        """The build image's stand-ins for every project, prepared at the first build that needs them."""
        if self._toolkit_stand_ins is None:
            self._toolkit_stand_ins = self._toolkit_environment()
        return self._toolkit_stand_ins

    def _toolkit_environment(self) -> list[StandIn]:
        """The toolkit's virtual environment, made once with the privileged buildspecs' own two commands."""
        folder = self.root / "toolkit"
        (folder / "pipelines").mkdir(parents=True)
        requirements = REPOSITORY / TOOLKIT_REQUIREMENTS
        shutil.copy2(requirements, folder / TOOLKIT_REQUIREMENTS)
        build_environment = {
            "PATH": self.tool_path,
            "HOME": str(self.home),
            "TOOLKIT_DIR": str(folder),
            "LANG": "C.UTF-8",
        }
        with (self.root / "toolkit.log").open("w") as log:
            for line in PipelineToolkit.install_commands().splitlines()[:2]:
                made = subprocess.run(["bash", "-c", line], env=build_environment, stdout=log, stderr=log, check=False)
                if made.returncode:
                    raise RuntimeError(f"the build image's toolkit environment failed ({line}): see {log.name}")
        return toolkit_environment_stand_ins(folder / ".venv", hashlib.sha256(requirements.read_bytes()).hexdigest())

    def image_bin(self, folder: Path) -> Path:
        """A fresh /usr/local/bin for one build: the machine's own tools, and the stand-ins."""
        folder.mkdir(parents=True)
        for entry in Path("/usr/local/bin").iterdir():
            if entry.name not in ("terraform", "docker", "curl"):
                (folder / entry.name).symlink_to(entry)
        for tool in ("curl", "docker"):
            script = launcher(
                "tools.rehearse.image_tools", self.world_file, tool, CANVALO_REHEARSAL_MIRROR=str(self.mirror)
            )
            (folder / tool).write_text(script)
            (folder / tool).chmod(0o755)
        return folder


def toolkit_environment_stand_ins(venv: Path, requirements_sha256: str) -> list[StandIn]:
    """A build whose (verified) toolkit asks for the requirements `venv` was made from links it instead of
    making its own; any other makes its own, as in CodeBuild. What this cannot show: a real container's first
    `pip install` (its time, a registry outage); `make codebuild-test` and the tests install the same file."""
    venv_line, pip_line = PipelineToolkit.install_commands().splitlines()[:2]
    same_requirements = (
        f'[ "$(sha256sum < "$TOOLKIT_DIR/{TOOLKIT_REQUIREMENTS}" | cut -d" " -f1)" = {requirements_sha256} ]'
    )
    reason = "the build image's toolkit environment, installed once from the same hashed requirements"
    link = f'ln -s {shlex.quote(str(venv))} "$TOOLKIT_DIR/.venv"'
    return [
        StandIn(
            EVERY_PROJECT, venv_line, f"if {same_requirements}; then {link}; else {venv_line}; fi", reason, noted=False
        ),
        # Matched by the command and its subcommand; the options are the pinned line's own, kept as they are.
        StandIn(
            EVERY_PROJECT, pip_line.split(" --")[0], f'[ -L "$TOOLKIT_DIR/.venv" ] || {pip_line}', reason, noted=False
        ),
    ]


def load_buildspec(buildspec: str, primary: Path) -> dict[str, Any]:
    """The project's buildspec: inline, as CodeBuild takes a value that is a YAML document, else a file of the source."""
    if "\n" in buildspec:
        inline: dict[str, Any] = yaml.safe_load(buildspec)
        return inline
    try:
        spec: dict[str, Any] = yaml.safe_load((primary / buildspec).read_text())
    except OSError:
        raise FileNotFoundError(f"the buildspec {buildspec} is not in the source artifact") from None
    return spec


def build_script(spec: dict[str, Any], build: Build, exports_file: Path) -> tuple[str, list[str]]:
    """The shell script of the buildspec's phases: one shell, as CodeBuild's buildspec 0.2 runs them."""
    lines = ['cd "$CODEBUILD_SRC_DIR"']
    notes: list[str] = []
    for phase in PHASES:
        for number, command in enumerate((spec.get("phases") or {}).get(phase, {}).get("commands") or [], 1):
            command = stand_in_lines(command, build.stand_ins, notes)
            lines.append(f'echo "[Container] $(date +%T) {phase}: running command {number}" >&2')
            lines.append(command.rstrip("\n"))
            lines.append(
                f'status=$?; if [ "$status" -ne 0 ]; then echo "[Container] {phase}: command {number} exited $status" >&2; '
                'exit "$status"; fi'
            )
    exported = (spec.get("env") or {}).get("exported-variables") or []
    for name in exported:
        lines.append(f'printf "%s=%s\\0" {name} "${{{name}:-}}" >> {shlex.quote(str(exports_file))}')
    return "\n".join(lines) + "\n", notes


def stand_in_lines(command: str, stand_ins: list[StandIn], notes: list[str]) -> str:
    """The command with each line a stand-in names replaced (a buildspec command may be a whole block)."""
    lines = command.split("\n")
    for index, line in enumerate(lines):
        for stand_in in stand_ins:
            if line.strip().startswith(stand_in.command_starts):
                indent = line[: len(line) - len(line.lstrip())]
                lines[index] = indent + stand_in.replacement
                if stand_in.noted:
                    notes.append(f"stand-in for `{stand_in.command_starts}`: {stand_in.reason}")
    return "\n".join(lines)


def run_build(build: Build, machine: Machine, workdir: Path) -> list[str]:
    """Runs the build; returns notes (stand-ins used). Sets status, exported variables and log."""
    spec = load_buildspec(build.buildspec, build.primary)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    exports_file = workdir / "exported"
    script, notes = build_script(spec, build, exports_file)
    (workdir / "build.sh").write_text(script)
    image_bin = machine.image_bin(workdir / "image-bin")
    environment = {
        **{str(k): str(v) for k, v in ((spec.get("env") or {}).get("variables") or {}).items()},
        **build.environment,
        "PATH": machine.tool_path,
        "HOME": str(machine.home),
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": build.credentials_url,
        "AWS_ENDPOINT_URL": machine.endpoint,
        "CODEBUILD_SRC_DIR": str(build.primary),
        **{f"CODEBUILD_SRC_DIR_{name}": str(path) for name, path in build.secondary.items()},
        "LANG": "C.UTF-8",
        # The container's own /tmp, gone with it (the toolkit's virtual environment is made there).
        "TMPDIR": str(workdir / "tmp"),
        **Machine.trusted_certificates(),
        **machine.mirror_checksums(),
    }
    build.log = workdir / "build.log"
    inner = f"mount --bind {shlex.quote(str(image_bin))} /usr/local/bin && exec bash {shlex.quote(str(workdir / 'build.sh'))}"
    with build.log.open("w") as log:
        started = time.monotonic()
        completed = subprocess.run(
            ["unshare", "--mount", "--fork", "bash", "-c", inner],
            cwd=build.primary,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=900,
            check=False,
        )
        log.write(
            f"\n[Container] build finished with status {completed.returncode} in {time.monotonic() - started:.1f} s\n"
        )
    build.status = completed.returncode
    if exports_file.exists():
        for item in exports_file.read_text().split("\0"):
            if "=" in item:
                name, value = item.split("=", 1)
                build.exported[name] = value
    return notes


def collect_artifacts(buildspec: str, primary: Path, target: Path) -> None:
    """The buildspec's `artifacts` section: files under base-directory matching its globs."""
    spec = load_buildspec(buildspec, primary)
    section = spec.get("artifacts") or {}
    base = primary / section.get("base-directory", ".")
    target.mkdir(parents=True, exist_ok=True)
    for pattern in section.get("files") or []:
        for path in base.glob(pattern):
            if path.is_file():
                destination = target / path.relative_to(base)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)


def credentials_document(credentials: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "AccessKeyId": credentials["AccessKeyId"],
            "SecretAccessKey": credentials["SecretAccessKey"],
            "Token": credentials["SessionToken"],
            "Expiration": credentials["Expiration"],
        }
    ).encode()


def environment_of_project(project: dict[str, Any]) -> dict[str, str]:
    variables = (project.get("environment") or {}).get("environment_variable") or []
    return {str(v["name"]): str(v["value"]) for v in variables}
