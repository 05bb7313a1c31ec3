"""What AWS would decide for gamma's and prod's `canvalo-plan`, evaluated offline (tests/support/iam_policy.py)
over the policies bootstrap-<stage> deploys: a plan reads the stage and takes the state lock, and may
change nothing, not even its state, and read no secret value."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Document
from tests.support.iam_policy import ContextValue, Principal, Request, Stacks, evaluate

ACCOUNTS = {"gamma": "222222222222", "prod": "333333333333"}
REGION = "eu-west-1"
IN_REGION = {"aws:RequestedRegion": REGION}
CROSS_ACCOUNT_STAGES = ["gamma", "prod"]


def plan_role(stacks: dict[str, Document], stage: str) -> Principal:
    return Stacks(stacks).principal(f"bootstrap-{stage}", "canvalo-plan")


def bucket(stage: str) -> str:
    return f"canvalo-tfstate-{ACCOUNTS[stage]}-{REGION}"


def lock_table(stage: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNTS[stage]}:table/canvalo-tfstate-lock"


def secret(stage: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNTS[stage]}:secret:canvalo/{stage}/backend-AbCdEf"


def lock_item(stage: str, key: str) -> dict[str, ContextValue]:
    """The request context of a PutItem/DeleteItem on the lock table item whose LockID is `<bucket>/<key>`."""
    return {"dynamodb:LeadingKeys": [f"{bucket(stage)}/{key}"], **IN_REGION}


def what_a_plan_does(stage: str) -> list[Request]:
    """The calls of `terraform plan` on the stage's stacks and of the pipeline's preflight before it."""
    account, state = ACCOUNTS[stage], f"{stage}/terraform.tfstate"
    return [
        # The S3 backend: the stage's one state, its digest, the lock.
        Request("s3:ListBucket", f"arn:aws:s3:::{bucket(stage)}", IN_REGION),
        Request("s3:GetObject", f"arn:aws:s3:::{bucket(stage)}/{state}", IN_REGION),
        Request("s3:PutObject", f"arn:aws:s3:::{bucket(stage)}/{state}.tflock", IN_REGION),
        Request("s3:DeleteObject", f"arn:aws:s3:::{bucket(stage)}/{state}.tflock", IN_REGION),
        Request("dynamodb:GetItem", lock_table(stage), lock_item(stage, f"{state}-md5")),
        Request("dynamodb:PutItem", lock_table(stage), lock_item(stage, state)),
        Request("dynamodb:DeleteItem", lock_table(stage), lock_item(stage, state)),
        # Refreshing what the stacks manage.
        Request("ec2:DescribeVpcs", "*", IN_REGION),
        Request("ecs:DescribeServices", f"arn:aws:ecs:{REGION}:{account}:service/canvalo-{stage}-backend/x", IN_REGION),
        Request("elasticloadbalancing:DescribeLoadBalancers", "*", IN_REGION),
        Request("cloudwatch:DescribeAlarms", "*", IN_REGION),
        Request("iam:GetRole", f"arn:aws:iam::{account}:role/canvalo/canvalo-{stage}-backend-execution"),
        Request("secretsmanager:GetResourcePolicy", secret(stage), IN_REGION),
        Request("cloudfront:GetDistribution", "*", {"aws:RequestedRegion": "us-east-1"}),
        # The preflight (pipelines/preflight.py check_stage_account): table, version, zone, the secret's metadata.
        Request("dynamodb:DescribeTable", lock_table(stage), IN_REGION),
        Request("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{account}:parameter/canvalo/{stage}/bootstrap-version"),
        Request("route53:ListHostedZonesByName", "*"),
        Request("route53:GetHostedZone", "arn:aws:route53:::hostedzone/Z0123456789"),
        Request("secretsmanager:DescribeSecret", secret(stage), IN_REGION),
    ]


def what_a_plan_may_not_do(stage: str) -> list[Request]:
    account, state = ACCOUNTS[stage], f"{stage}/terraform.tfstate"
    return [
        Request("ecs:UpdateService", f"arn:aws:ecs:{REGION}:{account}:service/canvalo-{stage}-backend/x", IN_REGION),
        Request("ec2:CreateVpc", "*", IN_REGION),
        Request("iam:PutRolePolicy", f"arn:aws:iam::{account}:role/canvalo/canvalo-{stage}-backend-task"),
        Request("iam:PassRole", f"arn:aws:iam::{account}:role/canvalo/canvalo-{stage}-backend-task"),
        Request("sts:AssumeRole", f"arn:aws:iam::{account}:role/canvalo/canvalo-deploy"),
        Request("route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/Z0123456789"),
        Request("kms:TagResource", "*", {"aws:RequestTag/application": "canvalo", **IN_REGION}),
        # Its state: neither written nor deleted, nor its digest, nor the bootstrap's lock.
        Request("s3:PutObject", f"arn:aws:s3:::{bucket(stage)}/{state}", IN_REGION),
        Request("s3:DeleteObject", f"arn:aws:s3:::{bucket(stage)}/{state}", IN_REGION),
        Request("s3:PutObject", f"arn:aws:s3:::{bucket(stage)}/bootstrap-{stage}/terraform.tfstate.tflock", IN_REGION),
        Request("dynamodb:PutItem", lock_table(stage), lock_item(stage, f"{state}-md5")),
        Request("dynamodb:DeleteItem", lock_table(stage), lock_item(stage, f"{state}-md5")),
        # No secret value, nor what a running task logs.
        Request("secretsmanager:GetSecretValue", secret(stage), IN_REGION),
        Request("kms:Decrypt", f"arn:aws:kms:{REGION}:{account}:key/k", IN_REGION),
        Request(
            "logs:GetLogEvents", f"arn:aws:logs:{REGION}:{account}:log-group:/canvalo/{stage}/backend:*", IN_REGION
        ),
    ]


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", CROSS_ACCOUNT_STAGES)
def test_the_plan_role_may_do_what_a_plan_and_its_preflight_do(stacks: dict[str, Document], stage: str) -> None:
    principal = plan_role(stacks, stage)
    decisions = {f"{r.action} on {r.resource}": evaluate(r, principal) for r in what_a_plan_does(stage)}
    assert not {call: str(decision) for call, decision in decisions.items() if not decision.allowed}


@pytest.mark.req("R4.6", "R5.3")
@pytest.mark.parametrize("stage", CROSS_ACCOUNT_STAGES)
def test_the_plan_role_may_change_nothing_and_read_no_secret(stacks: dict[str, Document], stage: str) -> None:
    principal = plan_role(stacks, stage)
    allowed = [f"{r.action} on {r.resource}" for r in what_a_plan_may_not_do(stage) if evaluate(r, principal).allowed]
    assert not allowed
    deploy = Stacks(stacks).principal(f"bootstrap-{stage}", "canvalo-deploy")
    # The deploy role may do the writes above: they are refused for the plan role, not for every role.
    assert evaluate(Request("ecs:UpdateService", "*", IN_REGION), deploy).allowed
    assert evaluate(Request("s3:PutObject", f"arn:aws:s3:::{bucket(stage)}/{stage}/terraform.tfstate"), deploy).allowed
