"""What `make status` relies on in the `pipeline` stack: who may read through the plan role, and what each
Apply may write about what it deployed (R4.6: each role holds only the rights it needs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ConfigError
from tests.infra.conftest import Document, policy_statements, resources
from tests.infra.test_pipeline import BETA, PLAN_ROLE, role_named, role_statements
from tests.support.config import fixture_project
from tools.requirements import PROJECT_ROOT

SERVICE_TRUST = {
    "sid": "AssumeRole",
    "effect": "Allow",
    "actions": ["sts:AssumeRole"],
    "resources": [],
    "principals": [{"type": "Service", "identifiers": ["codebuild.amazonaws.com"]}],
    "condition": [{"test": "StringEquals", "variable": "aws:SourceAccount", "values": [BETA]}],
}


@pytest.fixture(scope="module")
def pipeline(stacks: dict[str, Document]) -> Document:
    return stacks["pipeline"]


def trust(document: Document, role_name: str) -> list[Document]:
    _, role = role_named(document, role_name)
    return policy_statements(document, role["assume_role_policy"])


@pytest.mark.req("R4.6")
def test_operators_roles_alone_may_assume_the_plan_role_besides_codebuild(pipeline: Document) -> None:
    service, operators = trust(pipeline, PLAN_ROLE)
    assert service == SERVICE_TRUST
    assert operators["sid"] == "OperatorsReadThroughThePlanRole"
    assert operators["actions"] == ["sts:AssumeRole", "sts:SetSourceIdentity"]
    assert operators["principals"] == [{"type": "AWS", "identifiers": [f"arn:aws:iam::{BETA}:root"]}]
    # The name at the root path or under any path, and no other name ending the same way; one session name.
    assert operators["condition"] == [
        {
            "test": "ArnLike",
            "variable": "aws:PrincipalArn",
            "values": [f"arn:aws:iam::{BETA}:role/canvalo-operator", f"arn:aws:iam::{BETA}:role/*/canvalo-operator"],
        },
        {"test": "StringEquals", "variable": "sts:RoleSessionName", "values": ["canvalo-status"]},
    ]
    # No other pipeline role trusts anyone but its service.
    for logical, role in resources(pipeline, "aws_iam_role").items():
        if role["name"] != PLAN_ROLE:
            statements = policy_statements(pipeline, role["assume_role_policy"])
            assert [s["principals"][0]["type"] for s in statements] == ["Service"], logical


@pytest.mark.req("R4.6")
def test_an_operators_session_of_the_plan_role_may_only_assume_the_stages_plan_roles(pipeline: Document) -> None:
    statements = role_statements(pipeline, PLAN_ROLE)
    (deny,) = [s for s in statements if s["sid"] == "OperatorSessionsOnlyAssumeThePlanRoles"]
    assert deny["effect"] == "Deny" and deny["resources"] == ["*"]
    assert deny["condition"] == [{"test": "StringLike", "variable": "aws:userid", "values": ["*:canvalo-status"]}]
    # Every service the role's Allows reach is denied to such a session, but STS, whose only Allow is
    # sts:AssumeRole on the stages' plan roles.
    services = {a.split(":")[0] for s in statements if s["effect"] == "Allow" for a in s["actions"]}
    assert deny["actions"] == sorted(f"{service}:*" for service in services - {"sts"})
    assert {a for s in statements if s["effect"] == "Allow" for a in s["actions"] if a.startswith("sts:")} == {
        "sts:AssumeRole"
    }
    # The boundary holds it too (its copies carry no sid), so the update role cannot rewrite it away.
    (boundary,) = [
        p for p in resources(pipeline, "aws_iam_policy").values() if p["name"] == "canvalo-pipeline-plan-boundary"
    ]
    assert {key: value for key, value in deny.items() if key != "sid"} in policy_statements(
        pipeline, boundary["policy"]
    )


def synth_pipeline(environ: dict[str, str], outdir: Path) -> Document:
    from cdktn import App

    from stacks.pipeline import PipelineStack

    target_versions = json.loads((PROJECT_ROOT / "cdktf.json").read_text())["targetVersions"]
    app = App(outdir=str(outdir), context={"targetVersions": target_versions})
    PipelineStack(app, project=fixture_project(environ))
    app.synth()
    document: dict[str, Any] = json.loads((outdir / "stacks" / "pipeline" / "cdk.tf.json").read_text())
    return document


@pytest.mark.req("R4.6")
def test_without_operator_roles_only_codebuild_assumes_the_plan_role(tmp_path: Path) -> None:
    document = synth_pipeline({"CANVALO_OPERATOR_ROLES": ""}, tmp_path)
    assert trust(document, PLAN_ROLE) == [SERVICE_TRUST]
    assert "OperatorSessionsOnlyAssumeThePlanRoles" not in [s["sid"] for s in role_statements(document, PLAN_ROLE)]


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("value", ["*", "*?", "role/admin", "a b"])
def test_operator_roles_refuse_what_is_not_a_role_name(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^operator_roles: .*CANVALO_OPERATOR_ROLES"):
        fixture_project({"CANVALO_OPERATOR_ROLES": value})


@pytest.mark.req("R4.6")
def test_operator_roles_come_from_a_list_or_a_comma_separated_variable() -> None:
    assert fixture_project().operator_roles == ("canvalo-operator",)
    assert fixture_project(operatorRoles=["ops", "AWSReservedSSO_Admin_*"]).operator_role_patterns == (
        f"arn:aws:iam::{BETA}:role/ops",
        f"arn:aws:iam::{BETA}:role/*/ops",
        f"arn:aws:iam::{BETA}:role/AWSReservedSSO_Admin_*",
        f"arn:aws:iam::{BETA}:role/*/AWSReservedSSO_Admin_*",
    )
    assert fixture_project({"CANVALO_OPERATOR_ROLES": " ops , on-call "}).operator_roles == ("ops", "on-call")
    assert fixture_project({"CANVALO_OPERATOR_ROLES": ""}).operator_roles == ()
