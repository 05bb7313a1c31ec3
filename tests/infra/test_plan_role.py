"""`canvalo-plan`, the read-only role of gamma and prod (modules/plan_role.py): what the pipeline's Plan
actions and drift check assume, before any approval, so that planning cannot change a stage."""

from __future__ import annotations

import re

import pytest

from modules.iam import statement
from modules.plan_role import covers, read_only_actions, read_only_statements, without_covered
from tests.infra.conftest import Document, policy_statements
from tests.infra.test_bootstrap import PIPELINE_PLAN_ROLE, pipeline_trust
from tests.infra.test_pipeline import role_named, role_statements
from tests.support.config import fixture_project

ACCOUNTS = {"beta": "111111111111", "gamma": "222222222222", "prod": "333333333333"}
REGION = "eu-west-1"
# An action that only reads: its verb, a whole CamelCase word, is one of these (`Get*`, `GetObject`).
READS = re.compile(r"^[a-z0-9-]+:(Describe|Get|List|Head)([A-Z*]|$)")


# read_only_statements, on statements as modules build them.


def test_a_wildcard_is_narrowed_to_its_reads_and_an_explicit_action_kept_only_if_it_reads() -> None:
    assert read_only_actions("ecs:*") == ["ecs:Describe*", "ecs:Get*", "ecs:List*"]
    assert read_only_actions("cloudwatch:*Alarm*") == [
        "cloudwatch:Describe*Alarm*",
        "cloudwatch:Get*Alarm*",
        "cloudwatch:List*Alarm*",
    ]
    for kept in ("ec2:Describe*", "s3:GetObject", "route53:List*", "cloudwatch:ListTagsForResource", "s3:HeadBucket"):
        assert read_only_actions(kept) == [kept]
    # A verb is a whole word: "Listener..." is no List, "Delete"/"Put"/"?et" are no reads, "*" names no service.
    for dropped in (
        "elasticloadbalancing:ListenerCreate",
        "s3:PutObject",
        "iam:DeleteRole",
        "s3:?etObject",
        "*",
        "ec2",
    ):
        assert read_only_actions(dropped) == [], dropped


def test_a_pattern_covered_by_another_is_left_out() -> None:
    assert covers("ec2:Describe*", "ec2:Describe*Vpc*") and not covers("ec2:Describe*Vpc*", "ec2:Describe*")
    assert not covers("ec2:?escribeVpcs", "ec2:*escribeVpcs"), "a ? may stand for one of the other's wildcards"
    assert without_covered(["ec2:Describe*", "ec2:Describe*Vpc*", "ec2:Get*Vpc*", "ec2:Describe*"]) == [
        "ec2:Describe*",
        "ec2:Get*Vpc*",
    ]
    assert without_covered(["s3:Get**", "s3:Get*"]) == ["s3:Get**"], "of two covering each other, the first"


def test_read_only_statements_keep_resources_conditions_and_denies() -> None:
    in_region = [("StringEquals", "aws:RequestedRegion", [REGION])]
    allow = statement(sid="Mixed", actions=["ecs:*", "iam:PassRole", "ssm:GetParameter"], resources=["arn:x"])
    regional = statement(sid="Regional", actions=["ec2:*Vpc*"], resources=["*"], conditions=in_region)
    writes = statement(sid="Writes", actions=["iam:CreateRole", "kms:TagResource"], resources=["*"])
    deny = statement(sid="Never", effect="Deny", actions=["iam:*"], resources=["arn:y"])
    narrowed = read_only_statements([allow, regional, writes, deny])
    assert [s.sid for s in narrowed] == ["Mixed", "Regional", "Never"], "an Allow left with no action is dropped"
    mixed, vpc, kept = narrowed
    assert mixed.actions == ["ecs:Describe*", "ecs:Get*", "ecs:List*", "ssm:GetParameter"]
    assert (mixed.effect, mixed.resources, mixed.condition) == ("Allow", ["arn:x"], None)
    assert vpc.actions == ["ec2:Describe*Vpc*", "ec2:Get*Vpc*", "ec2:List*Vpc*"]
    assert vpc.resources == ["*"] and vpc.condition == regional.condition
    assert kept is deny, "a Deny is kept as it is, iam:* and all"


def test_an_allow_with_not_action_has_no_read_only_form() -> None:
    from cdktn_provider_aws.data_aws_iam_policy_document import DataAwsIamPolicyDocumentStatement

    everything_but_iam = DataAwsIamPolicyDocumentStatement(sid="Broad", not_actions=["iam:*"], resources=["*"])
    with pytest.raises(ValueError, match="Broad: an Allow with NotAction"):
        read_only_statements([everything_but_iam])


# The role bootstrap-<stage> creates.


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", ["gamma", "prod"])
def test_the_plan_role_is_trusted_only_by_the_pipelines_plan_role(stacks: dict[str, Document], stage: str) -> None:
    document = stacks[f"bootstrap-{stage}"]
    logical, plan = role_named(document, "canvalo-plan")
    assert plan["path"] == "/canvalo/" and "managed_policy_arns" not in plan and "permissions_boundary" not in plan
    project = fixture_project()
    assert project.plan_role_arn(project.stage(stage)) == f"arn:aws:iam::{ACCOUNTS[stage]}:role/canvalo/canvalo-plan"
    assert project.pipeline_plan_role_arn == PIPELINE_PLAN_ROLE
    assert policy_statements(document, plan["assume_role_policy"]) == [pipeline_trust(PIPELINE_PLAN_ROLE)]
    assert document["output"]["plan_role_arn"]["value"] == f"${{aws_iam_role.{logical}.arn}}"


def test_beta_has_no_plan_role_because_the_pipeline_plans_it_with_its_own(stacks: dict[str, Document]) -> None:
    assert fixture_project().plan_role_arn(fixture_project().stage("beta")) is None
    assert "plan_role_arn" not in stacks["bootstrap-beta"].get("output", {})


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", ["gamma", "prod"])
def test_the_plan_role_reads_and_locks_but_writes_nothing(stacks: dict[str, Document], stage: str) -> None:
    document = stacks[f"bootstrap-{stage}"]
    statements = role_statements(document, "canvalo-plan")
    deploy = {s["sid"]: s for s in role_statements(document, "canvalo-deploy")}
    lock_sids = {"TerraformLockFiles", "TerraformLockItems"}
    for item in statements:
        if item["effect"] == "Allow" and item["sid"] not in lock_sids:
            assert all(READS.match(action) for action in item["actions"]), item
            # What the deploy role may do, narrowed: the same resources, held by the same conditions.
            origin = deploy[item["sid"]]
            assert (item["resources"], item.get("condition")) == (origin["resources"], origin.get("condition"))
    lock_files, lock_items = (next(s for s in statements if s["sid"] == sid) for sid in sorted(lock_sids))
    assert lock_files["actions"] == ["s3:PutObject", "s3:DeleteObject"]
    # Only the lock file of the stage's one state, which the deploy role writes: never a state object itself.
    (state_keys,) = deploy["TerraformState"]["resources"]
    assert state_keys.endswith(f"/{stage}/*")
    assert lock_files["resources"] == [state_keys.replace("/*", "/terraform.tfstate.tflock")]
    assert lock_items["actions"] == ["dynamodb:PutItem", "dynamodb:DeleteItem"]
    assert lock_items["resources"] == deploy["TerraformLock"]["resources"]
    # The lock item only, never the state's digest `<bucket>/<key>-md5`.
    assert lock_items["condition"] == [
        {
            "test": "ForAllValues:StringLike",
            "variable": "dynamodb:LeadingKeys",
            "values": [f"*/{stage}/terraform.tfstate"],
        }
    ]
    # Every deny of the deploy role holds here too.
    assert [s for s in deploy.values() if s["effect"] == "Deny"] == [
        s for s in statements if s["effect"] == "Deny" and s["sid"] in deploy
    ]


@pytest.mark.req("R4.6", "R5.3")
@pytest.mark.parametrize("stage", ["gamma", "prod"])
def test_the_plan_role_never_reads_a_secret_value(stacks: dict[str, Document], stage: str) -> None:
    statements = role_statements(stacks[f"bootstrap-{stage}"], "canvalo-plan")
    (never,) = [s for s in statements if s["sid"] == "NeverReadSecretValues"]
    assert never["effect"] == "Deny" and never["resources"] == ["*"] and "condition" not in never
    assert set(never["actions"]) == {"secretsmanager:GetSecretValue", "kms:Decrypt"}
    # What the pipeline's preflight asks of the secret, without its value: that it exists and has one.
    secrets = next(s for s in statements if s["sid"] == "ProjectSecretsWithoutValues")
    assert "secretsmanager:DescribeSecret" in secrets["actions"]
