"""The pipeline's toolkit: the scripts its privileged actions run, pinned by the pipeline's own definition.

Plan, Apply, the self-update and the drift check run with rights to change the stages, so what they run
must not be the commit under test: a commit could otherwise rewrite `terraform_stage.py` or its buildspec
and run anything with those rights before any person saw it. So the pipeline stack pins, at the synth
an administrator (or a non-broadening self-update) applied:
- each privileged project's buildspec, inline in the project (the repository file as it was then), and
- the SHA-256 of the toolkit (`TOOLKIT_PATHS`), which that buildspec checks before anything else runs.
A build copies the toolkit out of the commit, hashes the copy and runs it only if the hash is the pinned
one, from a virtual environment installed with hashes (`pipelines/requirements.txt`), with the commit's
directory off `sys.path`. A commit that changes the toolkit or a privileged buildspec therefore changes the
pipeline stack, which the self-update refuses as broadening: an administrator reviews it and runs
`cdktn deploy pipeline`. The commit's synthesized JSON stays data, which the toolkit checks; the stage data
the scripts need comes from their project's environment, which the pipeline stack synthesized
(stacks/run_environment.py), so the toolkit never reads cdktf.json.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Files the privileged actions import or run, relative to the repository root: code only, whole folders and
# files. Stage data is not in it: the pipeline stack hands the actions what they need in their projects'
# environment (stacks/run_environment.py), so editing a stage's data, in cdktf.json or stacks/config.py,
# changes the pipeline's projects and never the pinned hash. `pipelines/buildspecs` is not part of it: the
# privileged buildspecs are inlined into their projects, the others run without rights.
TOOLKIT_PATHS = ("pipelines", "names.py")
TOOLKIT_EXCLUDED = ("pipelines/buildspecs",)
# Never in a clean checkout (.gitignore), so never part of the pinned toolkit; a commit that adds one (a
# hash-based .pyc runs without its source being checked) changes the build's hash and is refused.
LOCAL_ONLY = ("__pycache__",)
TOOLKIT_REQUIREMENTS = "pipelines/requirements.txt"


def _toolkit_files(root: Path) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for entry in TOOLKIT_PATHS:
        top = root / entry
        candidates = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in candidates:
            relative = path.relative_to(root).as_posix()
            if any(part in LOCAL_ONLY for part in path.relative_to(root).parts) or path.suffix == ".pyc":
                continue
            if any(relative == excluded or relative.startswith(f"{excluded}/") for excluded in TOOLKIT_EXCLUDED):
                continue
            files.append((f"./{relative}", path))
    return sorted(files)


def toolkit_sha256(root: Path) -> str:
    """What `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum` prints over a copy of
    the toolkit (the build's check, `verify_commands`), computed over the repository at `root`."""
    listing = "".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}\n" for name, path in _toolkit_files(root)
    )
    return hashlib.sha256(listing.encode()).hexdigest()


@dataclass(frozen=True)
class PipelineToolkit:
    """The toolkit as the pipeline pins it: its hash, checked by every privileged build."""

    sha256: str

    def verify_commands(self) -> str:
        """Copies the toolkit out of the commit into $TOOLKIT_DIR and refuses to go on unless it is the pinned one."""
        copied = " ".join(shlex.quote(path) for path in TOOLKIT_PATHS)
        excluded = " ".join(f'"$TOOLKIT_DIR"/{shlex.quote(path)}' for path in TOOLKIT_EXCLUDED)
        return f"""set -euo pipefail
# Pipeline-owned (modules/pipeline_toolkit.py): this commit's toolkit runs only if it is the one this pipeline
# was deployed with, byte for byte; the commit's own directory never reaches sys.path.
export TOOLKIT_DIR="$(mktemp -d)"
if ! (cd "$CODEBUILD_SRC_DIR" && cp -R -L --parents {copied} "$TOOLKIT_DIR/"); then
  echo "error: this commit lacks part of the pipeline toolkit ({", ".join(TOOLKIT_PATHS)}): an administrator reviews the change and applies it with \\`make review-pipeline EXECUTION=${{PIPELINE_EXECUTION_ID:-<execution id>}}\\` (README, Updating the pipeline)" >&2
  exit 1
fi
rm -rf {excluded}
toolkit_sha256="$(cd "$TOOLKIT_DIR" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ "$toolkit_sha256" != {self.sha256} ]; then
  echo "error: this commit changes the pipeline toolkit ({", ".join(TOOLKIT_PATHS)}; sha256 $toolkit_sha256, the pipeline runs {self.sha256}): privileged actions run only the toolkit the pipeline was deployed with; an administrator reads the toolkit's diff and applies the change with \\`make review-pipeline EXECUTION=${{PIPELINE_EXECUTION_ID:-<execution id>}}\\`, which never runs this commit's code (README, Updating the pipeline)" >&2
  exit 1
fi
"""

    @staticmethod
    def install_commands() -> str:
        """The toolkit's Python environment and Terraform, both checked against hashes in the (verified) toolkit."""
        return f"""python3 -m venv "$TOOLKIT_DIR/.venv"
"$TOOLKIT_DIR/.venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$TOOLKIT_DIR/{TOOLKIT_REQUIREMENTS}"
export PATH="$TOOLKIT_DIR/.venv/bin:$PATH" PYTHONPATH="$TOOLKIT_DIR" PYTHONSAFEPATH=1 PYTHONDONTWRITEBYTECODE=1
bash "$TOOLKIT_DIR/pipelines/install_terraform.sh"
"""

    def inline_buildspec(self, text: str, *, source: str) -> str:
        """The buildspec `text` (the repository file `source`) with the toolkit's check and install first."""
        spec: dict[str, Any] = yaml.safe_load(text)
        phases = spec.setdefault("phases", {})
        install = phases.setdefault("install", {}) or {}
        phases["install"] = install
        install["commands"] = [self.verify_commands(), self.install_commands(), *(install.get("commands") or [])]
        header = f"# {source} as the pipeline was deployed with, preceded by the toolkit's check.\n"
        return header + yaml.dump(spec, Dumper=_BlockDumper, sort_keys=False, width=1000)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line commands as YAML block scalars, so the console shows the buildspec as written."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _represent_text)
