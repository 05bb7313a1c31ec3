"""The custom checkov checks over container definitions (checkov/checks), on the shape checkov gives them."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType
from typing import Any

import pytest
from checkov.common.models.enums import CheckResult
from checkov.terraform_json.parser import hclify

from tests.infra.conftest import STAGES, Document, one
from tools.requirements import PROJECT_ROOT


@pytest.fixture(scope="module")
def checks() -> ModuleType:
    path = PROJECT_ROOT / "checkov" / "checks" / "ecs_container_definitions.py"
    spec = importlib.util.spec_from_file_location("canvalo_container_checks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkov_conf(task_definition: Document, **container_changes: Any) -> dict[str, Any]:
    """The task definition as checkov's terraform_json runner hands it to a check."""
    containers = json.loads(task_definition["container_definitions"])
    containers[0].update(container_changes)
    containers[0] = {k: v for k, v in containers[0].items() if v is not None}
    return hclify({**task_definition, "container_definitions": json.dumps(containers)})


@pytest.mark.parametrize("stage", STAGES)
def test_the_synthesized_task_definitions_pass(stacks: dict[str, Document], stage: str, checks: ModuleType) -> None:
    conf = checkov_conf(one(stacks[stage], "aws_ecs_task_definition"))
    assert checks.no_privileged_container.scan_resource_conf(conf) == CheckResult.PASSED
    assert checks.read_only_root_filesystem.scan_resource_conf(conf) == CheckResult.PASSED


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"privileged": True}, "no_privileged_container"),
        ({"readonlyRootFilesystem": False}, "read_only_root_filesystem"),
        ({"readonlyRootFilesystem": None}, "read_only_root_filesystem"),
    ],
)
def test_a_privileged_or_writable_root_container_fails(
    stacks: dict[str, Document], checks: ModuleType, change: dict[str, Any], failing: str
) -> None:
    conf = checkov_conf(one(stacks["beta"], "aws_ecs_task_definition"), **change)
    assert getattr(checks, failing).scan_resource_conf(conf) == CheckResult.FAILED


def test_unreadable_definitions_are_unknown_not_passed(checks: ModuleType) -> None:
    for conf in ({}, {"container_definitions": ["not json"]}, {"container_definitions": ["${var.containers}"]}):
        assert checks.read_only_root_filesystem.scan_resource_conf(conf) == CheckResult.UNKNOWN
