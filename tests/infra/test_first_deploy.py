"""What a first apply (and the applies after it) needs from the synthesized JSON beyond what each resource
says on its own: the order AWS needs, values AWS stores as given, replacements AWS allows.

The resources are found by type, in whichever stack holds them (conftest.stacks_holding).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Document, resources, stacks_holding, synth_pipeline_stack, synth_workload_stack
from tests.support import terraform_engine
from tests.support.config import fixture_project

REFERENCE = re.compile(r"^\$\{([a-z0-9_]+)\.([^.}]+)\.([a-z_]+)\}$")


def referenced(reference: str) -> tuple[str, str, str]:
    """`${<type>.<name>.<attribute>}` as (type, name, attribute)."""
    match = REFERENCE.match(reference)
    assert match, f"not a plain reference: {reference}"
    kind, name, attribute = match.groups()
    return kind, name, attribute


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


@pytest.mark.req("R2.4", "R5.2")
def test_the_service_starts_only_once_its_roles_hold_their_policies(stacks: dict[str, Document]) -> None:
    holding = stacks_holding(stacks, "aws_ecs_service")
    assert len(holding) == 3
    for name, document in holding.items():
        ((_, service),) = resources(document, "aws_ecs_service").items()
        kind, task, _ = referenced(service["task_definition"])
        definition = resources(document, kind)[task]
        for role_field in ("execution_role_arn", "task_role_arn"):
            _, role, _ = referenced(definition[role_field])
            policies = [
                f"aws_iam_role_policy.{key}"
                for key, policy in resources(document, "aws_iam_role_policy").items()
                if policy["role"] == f"${{aws_iam_role.{role}.name}}"
            ]
            assert policies, f"{name}: {role_field} has no inline policy"
            assert set(policies) <= set(service.get("depends_on", [])), f"{name}: {role_field}'s policy comes first"


@pytest.mark.req("R4.1", "R4.2")
def test_the_pipeline_is_created_after_the_projects_it_runs(stacks: dict[str, Document]) -> None:
    """A new pipeline starts an execution at once; its actions name projects by name only, which gives
    Terraform no order of its own."""
    (document,) = stacks_holding(stacks, "aws_codepipeline").values()
    (pipeline,) = resources(document, "aws_codepipeline").values()
    named = {
        action["configuration"]["ProjectName"]
        for stage in pipeline["stage"]
        for action in stage["action"]
        if "ProjectName" in action.get("configuration", {})
    }
    projects = {
        body["name"]: f"aws_codebuild_project.{key}"
        for key, body in resources(document, "aws_codebuild_project").items()
    }
    assert named and named <= set(projects)
    depends_on = set(pipeline.get("depends_on", []))
    assert {projects[name] for name in named} <= depends_on
    _, role, _ = referenced(pipeline["role_arn"])
    (policy,) = [
        k
        for k, p in resources(document, "aws_iam_role_policy").items()
        if p["role"] == f"${{aws_iam_role.{role}.name}}"
    ]
    assert f"aws_iam_role_policy.{policy}" in depends_on


@pytest.mark.req("R8.2")
def test_a_replaced_load_balancer_replaces_the_vpc_origin_before_the_old_one_goes(stacks: dict[str, Document]) -> None:
    """CloudFront refuses to update a VPC origin a distribution uses, and the provider would update it in
    place for a new ALB ARN: a new ALB must replace it, the new one first, under a name of its own."""
    holding = stacks_holding(stacks, "aws_cloudfront_vpc_origin")
    assert sum(len(resources(d, "aws_cloudfront_vpc_origin")) for d in holding.values()) == 2, "beta's and gamma's"
    for name, document in holding.items():
        for vpc_origin in resources(document, "aws_cloudfront_vpc_origin").values():
            (endpoint,) = vpc_origin["vpc_origin_endpoint_config"]
            kind, load_balancer, attribute = referenced(endpoint["arn"])
            assert (kind, attribute) == ("aws_lb", "arn") and load_balancer in resources(document, "aws_lb"), name
            lifecycle = vpc_origin["lifecycle"]
            assert lifecycle["create_before_destroy"] is True, name
            # The ARN, not the ALB: an in-place change of the ALB keeps its ARN and must replace nothing.
            # A bare reference: Terraform's JSON syntax refuses "${...}" in replace_triggered_by.
            arn = endpoint["arn"].removeprefix("${").removesuffix("}")
            assert lifecycle.get("replace_triggered_by") == [arn], name
            assert arn in endpoint["name"], f"{name}: two VPC origins of one name would exist at once"


def pipeline_with(tmp_path: Path, **context: Any) -> Document:
    return synth_pipeline_stack(tmp_path, fixture_project(**context))


@pytest.mark.req("R6.6")
def test_nothing_that_needs_an_authorized_connection_is_created_with_a_pending_one(tmp_path: Path) -> None:
    pending = pipeline_with(tmp_path / "pending", connectionAvailable=False)
    assert resources(pending, "aws_codestarconnections_connection"), "created PENDING: a person authorizes it"
    projects = resources(pending, "aws_codebuild_project").values()
    assert [p["name"] for p in projects if "auth" in p["source"]] == []
    assert not resources(pending, "aws_cloudwatch_event_rule"), "no schedule for a project that is not there"

    available = pipeline_with(tmp_path / "available", connectionAvailable=True)
    (drift,) = [p for p in resources(available, "aws_codebuild_project").values() if "auth" in p["source"]]
    assert drift["source"]["auth"]["type"] == "CODECONNECTIONS"
    assert len(resources(available, "aws_cloudwatch_event_rule")) == 1


@pytest.mark.req("R4.7")
def test_a_deploy_of_the_unreleased_tag_stops_at_its_plan_naming_the_command(tmp_path: Path) -> None:
    """`cdktn deploy beta` from a laptop without CANVALO_IMAGE_TAG would deploy `unreleased`, which no build
    pushes: the real engine, planning the stack's variables as synthesized, stops with one line naming what to
    run; a pushed tag plans. (Only the variables: no AWS provider runs here, and a variable's validation is
    the engine's own.)"""
    unreleased = synth_workload_stack(tmp_path / "unreleased", fixture_project(), "beta")
    refused = terraform_engine.plan(tmp_path / "plan-unreleased", {"variable": unreleased["variable"]})
    assert refused.exit_code != 0
    (error,) = refused.errors
    assert error.startswith("Invalid value for variable: The image tag 'unreleased' names no pushed image"), error
    # Terraform adds where the rule is, after a blank line: the message itself is one line.
    assert error.splitlines()[0].endswith("CANVALO_IMAGE_TAG=$(bash pipelines/image_tag.sh) cdktn deploy beta"), error

    pushed = synth_workload_stack(tmp_path / "pushed", fixture_project(imageTag="app-0123abcd"), "beta")
    planned = terraform_engine.plan(tmp_path / "plan-pushed", {"variable": pushed["variable"]})
    assert (planned.exit_code, planned.errors) == (0, [])
