"""The checkov gate over every synthesized stack: no finding outside checkov/suppressions.toml."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tools.requirements import PROJECT_ROOT

SUPPRESSIONS = PROJECT_ROOT / "checkov" / "suppressions.toml"
CUSTOM_CHECKS = PROJECT_ROOT / "checkov" / "checks"


def run_checkov(directory: Path) -> list[dict[str, Any]]:
    environ = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE", "LOG_LEVEL": "ERROR"}
    command = [
        str(Path(sys.executable).parent / "checkov"),
        "--directory", str(directory),
        "--framework", "terraform_json", "secrets",
        "--skip-download",
        "--output", "json",
        "--compact",
    ]  # fmt: skip
    if any(CUSTOM_CHECKS.glob("*.py")):
        command += ["--external-checks-dir", str(CUSTOM_CHECKS)]
    result = subprocess.run(command, capture_output=True, text=True, env=environ, timeout=600, check=False)
    assert result.returncode in (0, 1), f"checkov crashed: {result.stderr[-2000:]}"
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def stack_patterns(entry: dict[str, Any]) -> list[str]:
    """An entry's `stack`: one shell-style pattern or a list of them; any stack when unset."""
    stack = entry.get("stack", "*")
    return [stack] if isinstance(stack, str) else list(stack)


def stack_of(finding: dict[str, Any]) -> str:
    return Path(finding["file_path"]).parent.name


@pytest.fixture(scope="session")
def checkov_reports(synth_outdir: Path) -> list[dict[str, Any]]:
    return run_checkov(synth_outdir)


@pytest.mark.req("R6.2")
def test_checkov_ran_and_parsed_every_stack(checkov_reports: list[dict[str, Any]], synth_outdir: Path) -> None:
    terraform = [r for r in checkov_reports if r["check_type"] == "terraform_json"]
    assert terraform, "checkov produced no terraform_json report"
    summary = terraform[0]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100, "checkov ran almost no checks: it did not read the stacks"
    scanned = {stack_of(f) for f in terraform[0]["results"]["passed_checks"]}
    synthesized = {p.parent.name for p in (synth_outdir / "stacks").glob("*/cdk.tf.json")}
    assert scanned == synthesized


def test_no_checkov_finding_without_a_written_reason(checkov_reports: list[dict[str, Any]]) -> None:
    suppressions = tomllib.loads(SUPPRESSIONS.read_text())["suppression"]
    for entry in suppressions:
        assert len(entry.get("reason", "")) > 40, f"suppression {entry} needs a specific reason"
    used: set[int] = set()
    unexplained = []
    for report in checkov_reports:
        for finding in report["results"]["failed_checks"]:
            matches = [
                index
                for index, entry in enumerate(suppressions)
                if entry["check"] == finding["check_id"]
                and fnmatch.fnmatch(finding["resource"], entry.get("resource", "*"))
                and any(fnmatch.fnmatch(stack_of(finding), stack) for stack in stack_patterns(entry))
            ]
            used.update(matches)
            if not matches:
                unexplained.append(
                    f"{finding['check_id']} {stack_of(finding)} {finding['resource']}: {finding['check_name']}"
                )
    assert not unexplained, "checkov findings to fix or justify in checkov/suppressions.toml:\n" + "\n".join(
        unexplained
    )
    stale = [suppressions[i]["check"] for i in range(len(suppressions)) if i not in used]
    assert not stale, f"suppressions that no longer match any finding (remove them): {stale}"


@pytest.mark.req("R6.2")
def test_every_test_a_suppression_reason_names_exists() -> None:
    """A reason that states a fact names the test asserting it; a renamed or deleted test leaves the reason
    unproven, so each named `test_*` (or `path.py::test_*`; a `*` in it stands for a family of tests) must
    match a test function under tests/."""
    tests = {
        (path.relative_to(PROJECT_ROOT).as_posix(), node.name)
        for path in (PROJECT_ROOT / "tests").rglob("test_*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }
    names = {name for _, name in tests}
    named = 0
    for entry in tomllib.loads(SUPPRESSIONS.read_text())["suppression"]:
        for path, name in re.findall(r"(?:(tests/[\w/]+\.py)::)?(test_[\w*]+)", entry["reason"]):
            candidates = {n for p, n in tests if p == path} if path else names
            assert fnmatch.filter(candidates, name), f"{entry['check']}: no test {path}::{name}"
            named += 1
    assert named, "no reason names a test: this test checks nothing"
