"""The privileged actions run only the toolkit the pipeline pinned: the check a build runs, as a build runs it."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from app.core.config import REQUIRED_SECRET_KEYS as BACKEND_REQUIRED_SECRET_KEYS
from modules.pipeline import BUILDSPECS, PIPELINE_OWNED
from modules.pipeline_toolkit import (
    LOCAL_ONLY,
    TOOLKIT_EXCLUDED,
    TOOLKIT_PATHS,
    TOOLKIT_REQUIREMENTS,
    PipelineToolkit,
    toolkit_sha256,
)
from pipelines.preflight import REQUIRED_SECRET_KEYS
from tools.requirements import PROJECT_ROOT

# Only boto3 comes from outside the standard library (pipelines/requirements.txt); mypy_boto3_* only for types.
THIRD_PARTY = {"boto3", "botocore"}
TYPE_ONLY = re.compile(r"mypy_boto3_\w+$")


def clean_checkout(target: Path) -> Path:
    """The commit as CodePipeline's source artifact holds it: the toolkit, the stage data, no local caches."""
    for entry in TOOLKIT_PATHS:
        source = PROJECT_ROOT / entry
        if source.is_dir():
            shutil.copytree(source, target / entry, ignore=shutil.ignore_patterns(*LOCAL_ONLY, "*.pyc"))
        else:
            (target / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / entry)
    shutil.copy2(PROJECT_ROOT / "cdktf.json", target / "cdktf.json")
    (target / "stacks").mkdir()
    shutil.copy2(PROJECT_ROOT / "stacks" / "config.py", target / "stacks" / "config.py")
    return target


def run_check(source: Path, script: str = 'printf "%s" "$TOOLKIT_DIR"') -> subprocess.CompletedProcess[str]:
    """The build's first command, pinned to this repository's toolkit, then `script`, in one bash like CodeBuild's."""
    pinned = PipelineToolkit(toolkit_sha256(PROJECT_ROOT))
    return subprocess.run(
        ["bash", "-c", pinned.verify_commands() + script],
        env={"PATH": os.environ["PATH"], "CODEBUILD_SRC_DIR": str(source), "HOME": str(source.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.req("R4.6", "R4.3")
def test_a_commit_whose_toolkit_is_the_pinned_one_runs_it_from_a_copy(tmp_path: Path) -> None:
    source = clean_checkout(tmp_path / "source")
    result = run_check(source)
    assert result.returncode == 0, result.stderr
    toolkit = Path(result.stdout)
    assert (toolkit / "pipelines" / "terraform_stage.py").read_bytes() == (
        source / "pipelines" / "terraform_stage.py"
    ).read_bytes()
    assert not (toolkit / "cdktf.json").exists(), "the toolkit reads its project's environment, not cdktf.json"
    assert not (toolkit / "stacks").exists(), "the toolkit is code only: pipelines/ and names.py"
    assert not (toolkit / TOOLKIT_EXCLUDED[0]).exists()
    shutil.rmtree(toolkit)


def append(path: str, text: str) -> Callable[[Path], None]:
    def change(source: Path) -> None:
        with (source / path).open("a") as file:
            file.write(text)

    return change


def add(path: str, content: bytes) -> Callable[[Path], None]:
    def change(source: Path) -> None:
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_bytes(content)

    return change


def delete(path: str) -> Callable[[Path], None]:
    return lambda source: (source / path).unlink()


TAMPERING = {
    "a line in terraform_stage.py": (append("pipelines/terraform_stage.py", "\nimport os\n"), "changes the pipeline"),
    "a new toolkit module": (add("pipelines/extra.py", b"print('hello')\n"), "changes the pipeline"),
    # A hash-based .pyc is imported without its source being checked.
    "a committed bytecode file": (
        add("pipelines/__pycache__/terraform_stage.cpython-311.pyc", b"\x00" * 16),
        "changes the pipeline",
    ),
    "the Terraform checksums": (append("pipelines/terraform.sha256sums", "00  x.zip\n"), "changes the pipeline"),
    "the toolkit's requirements": (append(TOOLKIT_REQUIREMENTS, "evil==1.0\n"), "changes the pipeline"),
    "a deleted toolkit file": (delete("names.py"), "lacks part of the pipeline toolkit"),
}


@pytest.mark.req("R4.6", "R4.3")
@pytest.mark.parametrize("what", list(TAMPERING))
def test_a_commit_that_changes_the_toolkit_runs_nothing_and_says_who_must_deploy_it(tmp_path: Path, what: str) -> None:
    change, words = TAMPERING[what]
    source = clean_checkout(tmp_path / "source")
    change(source)
    result = run_check(source, "echo RAN")
    assert result.returncode == 1
    assert "RAN" not in result.stdout
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and words in line and "make review-pipeline EXECUTION=" in line


# Stage data: prod's memory in STAGE_DEFAULTS and in cdktf.json are the same kind of edit, and neither is code the
# privileged actions run (they read what they need from their project's environment, stacks/run_environment.py).
def prods_memory_in_cdktf_json(source: Path) -> None:
    path = source / "cdktf.json"
    path.write_text(path.read_text().replace('"domain_name"', '"memory": 4096, "domain_name"'))


DATA_EDITS = {
    "prod's memory in STAGE_DEFAULTS": append("stacks/config.py", '\nSTAGE_DEFAULTS["prod"]["memory"] = 4096\n'),
    "prod's memory in cdktf.json": prods_memory_in_cdktf_json,
}


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("what", list(DATA_EDITS))
def test_a_stage_data_edit_is_no_toolkit_change_and_needs_no_administrator(tmp_path: Path, what: str) -> None:
    source = clean_checkout(tmp_path / "source")
    before = (source / "cdktf.json").read_text() + (source / "stacks" / "config.py").read_text()
    DATA_EDITS[what](source)
    assert (source / "cdktf.json").read_text() + (source / "stacks" / "config.py").read_text() != before
    result = run_check(source, "echo RAN")
    assert result.returncode == 0, result.stderr
    assert "RAN" in result.stdout


def test_a_changed_buildspec_file_is_no_toolkit_change_since_the_pinned_copy_runs_inline(tmp_path: Path) -> None:
    source = clean_checkout(tmp_path / "source")
    append("pipelines/buildspecs/deploy.yml", "# a comment\n")(source)
    assert run_check(source).returncode == 0


@pytest.mark.req("R4.6")
def test_the_commit_directory_never_reaches_sys_path_of_the_toolkit(tmp_path: Path) -> None:
    source = clean_checkout(tmp_path / "source")
    # A package of the commit named like one the toolkit imports: it must not shadow the installed one.
    add("boto3/__init__.py", b"raise SystemExit('the commit shadowed boto3')\n")(source)
    exports = [line for line in PipelineToolkit.install_commands().splitlines() if line.startswith("export ")]
    assert len(exports) == 1 and "PYTHONSAFEPATH=1" in exports[0]
    probe = f'cd "$CODEBUILD_SRC_DIR"\n{exports[0]}\n{sys.executable} -c "import boto3, pipelines.errors as e; print(e.__file__)"'
    result = run_check(source, probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("/pipelines/errors.py")
    assert not result.stdout.startswith(str(source)), "the toolkit must come from the checked copy"


@pytest.mark.req("R4.6")
def test_each_pipeline_owned_project_checks_the_toolkit_before_any_other_command() -> None:
    toolkit = PipelineToolkit("0" * 64)
    for kind in PIPELINE_OWNED:
        text = (PROJECT_ROOT / BUILDSPECS[kind]).read_text()
        inline = yaml.safe_load(toolkit.inline_buildspec(text, source=BUILDSPECS[kind]))
        original = yaml.safe_load(text)
        install = inline["phases"]["install"]["commands"]
        assert install[:2] == [toolkit.verify_commands(), toolkit.install_commands()], kind
        assert f'"$toolkit_sha256" != {"0" * 64}' in install[0]
        for phase in ("build", "post_build"):
            assert inline["phases"].get(phase) == original["phases"].get(phase), (kind, phase)


def toolkit_modules() -> list[Path]:
    return [
        path
        for entry in TOOLKIT_PATHS
        for path in ([PROJECT_ROOT / entry] if entry.endswith(".py") else sorted((PROJECT_ROOT / entry).rglob("*.py")))
    ]


def test_the_toolkit_imports_only_itself_the_standard_library_and_boto3() -> None:
    toolkit = {
        path.relative_to(PROJECT_ROOT).with_suffix("").as_posix().replace("/", ".") for path in toolkit_modules()
    }
    toolkit |= {name.removesuffix(".__init__") for name in toolkit}
    for path in toolkit_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                allowed = (
                    top in sys.stdlib_module_names or top in THIRD_PARTY or TYPE_ONLY.match(top) or name in toolkit
                )
                assert allowed, f"{path.relative_to(PROJECT_ROOT)} imports {name}, which the toolkit does not hold"


def test_the_toolkit_requirements_are_uv_lock_versions_with_its_hashes() -> None:
    lock = {package["name"]: package for package in tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]}
    text = (PROJECT_ROOT / TOOLKIT_REQUIREMENTS).read_text().replace("\\\n", " ")
    pins = re.findall(r"^([a-z0-9-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", text, re.MULTILINE)
    assert {name for name, _, _ in pins} >= {"boto3", "botocore"}
    for name, version, hashes in pins:
        locked = lock[name]
        assert locked["version"] == version, (
            f"{name}: {version} in {TOOLKIT_REQUIREMENTS}, {locked['version']} in uv.lock"
        )
        files = [*locked.get("wheels", []), *([locked["sdist"]] if "sdist" in locked else [])]
        known = {file["hash"].removeprefix("sha256:") for file in files}
        assert set(re.findall(r"sha256:([0-9a-f]{64})", hashes)) <= known, name


def test_the_preflight_requires_the_secret_keys_the_backend_requires() -> None:
    assert REQUIRED_SECRET_KEYS == BACKEND_REQUIRED_SECRET_KEYS
