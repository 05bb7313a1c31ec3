"""The project's shape as SPEC.md sets it: Python CDK for Terraform, one repository for everything."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.config import hermetic_environment
from tools.requirements import PROJECT_ROOT


@pytest.mark.req("R6.1")
def test_infrastructure_is_python_cdk_terrain() -> None:
    cdktf = json.loads((PROJECT_ROOT / "cdktf.json").read_text())
    assert cdktf["language"] == "python"
    assert cdktf["app"].endswith("python -O main.py")
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    infra = " ".join(project["dependency-groups"]["infra"])
    assert "cdktn>=" in infra and "cdktn-provider-aws>=" in infra
    assert "cdktf" not in infra.replace("cdktn", ""), "the archived cdktf packages are not used"
    assert project["tool"]["mypy"]["strict"] is True


@pytest.mark.req("R6.5")
def test_one_repository_holds_app_frontend_infrastructure_pipeline_and_tests() -> None:
    expected = {
        "main.py": "file",
        "cdktf.json": "file",
        "pyproject.toml": "file",
        "uv.lock": "file",
        "stacks": "dir",
        "modules": "dir",
        "app": "dir",
        "frontend": "dir",
        "pipelines": "dir",
        "tests": "dir",
    }
    for name, kind in expected.items():
        path = PROJECT_ROOT / name
        assert path.is_file() if kind == "file" else path.is_dir(), f"{name} is missing"
    assert (PROJECT_ROOT / "app" / "Dockerfile").is_file()
    assert (PROJECT_ROOT / "frontend" / "package-lock.json").is_file()
    assert list((PROJECT_ROOT / "pipelines" / "buildspecs").glob("*.yml"))


@pytest.mark.req("R6.3")
def test_the_readme_documents_every_setting() -> None:
    """Every project setting and every stage field can be overridden, so each has a row in the README."""
    from stacks.config import PROJECT_SETTINGS, STAGE_FIELDS

    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [variable for _, variable in PROJECT_SETTINGS.values() if f"`{variable}`" not in readme]
    missing += [field.upper() for field in STAGE_FIELDS if f"`{field.upper()}`" not in readme]
    assert not missing, f"README.md's configuration tables lack {missing}"


@pytest.mark.req("R6.1")
def test_the_cdktn_cli_runs_the_app_with_the_projects_environment_and_no_uv(tmp_path: Path) -> None:
    """The CLI runs cdktf.json's `app` in a shell in the project folder: `make env` is all it needs."""
    app = json.loads((PROJECT_ROOT / "cdktf.json").read_text())["app"]
    tools = PROJECT_ROOT / ".venv" / "bin"
    assert not (tools / "uv").exists(), "the PATH below must not offer uv"
    # Only the project's environment on PATH (its Node.js for jsii): no uv, nothing of the machine's.
    environ = hermetic_environment(
        {"PATH": str(tools), "HOME": os.environ.get("HOME", str(tmp_path)), "CDKTF_OUTDIR": str(tmp_path)}
    )
    result = subprocess.run(
        ["/bin/sh", "-c", app], cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "stacks" / "pipeline" / "cdk.tf.json").is_file()


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved against its package."""
    package = path.relative_to(PROJECT_ROOT).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = [*package[: len(package) - node.level + 1]] if node.level else []
            if node.module:
                found.add(".".join([*base, node.module]))
            else:  # `from .. import pipelines`
                found |= {".".join([*base, alias.name]) for alias in node.names}
    return found


# Imports run down only: names.py under both wings, the synth (main.py, stacks/, modules/) beside the
# pipeline's run-time scripts (pipelines/, tools/), constructs under stacks. What both wings need by name
# lives in names.py. pipelines/ reads the configuration only from its environment, which the pipeline stack
# synthesizes (pipelines/run_env.py): the pinned toolkit is pipelines/ and names.py, code only.
FORBIDDEN_IMPORTS = {
    "main.py": ("pipelines", "tools"),
    "stacks": ("pipelines", "tools"),
    "modules": ("stacks", "pipelines", "tools"),
    "pipelines": ("main", "stacks", "modules", "tools"),
}


def test_imports_run_down_only() -> None:
    violations = []
    for entry, forbidden in FORBIDDEN_IMPORTS.items():
        top = PROJECT_ROOT / entry
        for path in [top] if top.is_file() else sorted(top.rglob("*.py")):
            for name in sorted(imported_modules(path)):
                if name.split(".")[0] in forbidden:
                    violations.append(f"{path.relative_to(PROJECT_ROOT)} imports {name}")
    assert not violations, "imports must run down only (shared names go in names.py):\n" + "\n".join(violations)


def test_names_imports_only_the_standard_library() -> None:
    imported = imported_modules(PROJECT_ROOT / "names.py")
    outside = sorted(name for name in imported if name.split(".")[0] not in sys.stdlib_module_names)
    assert not outside, f"names.py imports {outside}: both wings import it, so it holds plain functions only"


def test_no_function_of_the_synth_or_the_toolkit_is_over_100_lines() -> None:
    """Functions a reader takes in whole: split a longer one (stacks/, modules/, pipelines/)."""
    long = []
    for top in ("stacks", "modules", "pipelines"):
        for path in sorted((PROJECT_ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                    lines = node.end_lineno - node.lineno + 1
                    if lines > 100:
                        long.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 100 lines:\n" + "\n".join(long)
