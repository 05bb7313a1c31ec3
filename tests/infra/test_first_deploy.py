"""What a first apply (and the applies after it) needs from the synthesized JSON beyond what each resource
says on its own: the order AWS needs, values AWS stores as given, replacements AWS allows.

The resources are found by type, in whichever stack holds them (conftest.stacks_holding).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.infra.conftest import Document, resources, stacks_holding


def as_ecs_returns(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Container definitions as DescribeTaskDefinition hands them back, which is what the provider compares
    the configuration with at each plan: an environment variable with an empty value is not stored
    (hashicorp/terraform-provider-aws issue 39533), and neither is a field without a value."""
    stored = copy.deepcopy(containers)
    for container in stored:
        if "environment" in container:
            container["environment"] = [v for v in container["environment"] if v.get("value") not in ("", None)]
        for key in [k for k, v in container.items() if v is None]:
            del container[key]
    return stored


@pytest.mark.req("R1.3", "R8.6")
def test_task_definitions_are_what_ecs_stores_so_no_plan_replaces_them(stacks: dict[str, Document]) -> None:
    holding = stacks_holding(stacks, "aws_ecs_task_definition")
    definitions = [d for document in holding.values() for d in resources(document, "aws_ecs_task_definition").values()]
    assert len(definitions) == 3, "one per stage"
    for definition in definitions:
        containers = json.loads(definition["container_definitions"])
        assert as_ecs_returns(containers) == containers, definition["family"]


@pytest.mark.req("R4.5")
def test_every_task_definition_revision_stays_registered_for_a_rollback(stacks: dict[str, Document]) -> None:
    """A rollback (circuit breaker, deployment alarm) starts the revision the service ran before, which ECS
    cannot start once Terraform has deregistered it on replacing the resource."""
    for document in stacks_holding(stacks, "aws_ecs_task_definition").values():
        for definition in resources(document, "aws_ecs_task_definition").values():
            assert definition.get("skip_destroy") is True, definition["family"]
