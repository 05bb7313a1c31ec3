"""Static checks as tests, so that `make test` runs them once and the requirements report sees them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.requirements import PROJECT_ROOT

BIN = Path(sys.executable).parent
# Every Python package of the project; mypy --strict covers all of them (R6.4 in SPEC.md's Python form).
PACKAGES = [
    p
    for p in ("main.py", "names.py", "stacks", "modules", "app", "pipelines", "tools", "tests")
    if (PROJECT_ROOT / p).exists()
]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.req("R6.1", "R6.4")
def test_mypy_strict_is_clean() -> None:
    result = run(str(BIN / "mypy"), "--strict", *PACKAGES)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout


def test_ruff_lint_and_format_are_clean() -> None:
    lint = run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout[-5000:]
    formatting = run(str(BIN / "ruff"), "format", "--check", ".")
    assert formatting.returncode == 0, formatting.stdout[-5000:]
