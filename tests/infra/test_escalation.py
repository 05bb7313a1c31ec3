"""The IAM escalation paths of the trust-model issue, each as the request AWS would now deny.

Every request is evaluated offline (tests/support/iam_policy.py) against the policies the synthesized
stacks deploy: a role's inline policies, its permissions boundary and, for the secret, its resource
policy. The principals are the ones an attacker would hold: gamma's and prod's `canvalo-deploy`, the
beta pipeline's deploy role (which deploys beta and may assume the other two), the pipeline's update
role, and any role those may create. The first tests prove the evaluator itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.infra.conftest import STAGES, Document
from tests.support.iam_policy import (
    Condition,
    ContextValue,
    Outcome,
    Policy,
    Principal,
    Request,
    Stacks,
    Statement,
    evaluate,
)

ACCOUNTS = {"beta": "111111111111", "gamma": "222222222222", "prod": "333333333333"}
REGION = "eu-west-1"
IN_REGION = {"aws:RequestedRegion": REGION}
PIPELINE_DEPLOY_ROLE = "canvalo-pipeline-deploy"
UPDATE_ROLE = "canvalo-beta-pipeline-update-pipeline"
# The one pipeline role that may answer an approval (pipelines/review.py).
REVIEW_ROLE = "canvalo-beta-pipeline-review"
# What a role's policy may say once someone can write it: a grant of everything, which only a boundary
# and explicit denies can still cap.
EVERYTHING = Policy("everything", (Statement("Everything", "Allow", actions=("*",), resources=("*",)),))


@pytest.fixture(scope="module")
def iam(stacks: dict[str, Document]) -> Stacks:
    return Stacks(stacks)


def deploy_role(iam: Stacks, stage: str) -> Principal:
    """Who deploys a stage: gamma's and prod's own `canvalo-deploy`, beta's the pipeline's deploy role."""
    if stage == "beta":
        return iam.principal("pipeline", PIPELINE_DEPLOY_ROLE)
    return iam.principal(f"bootstrap-{stage}", "canvalo-deploy")


def role_arn(stage: str, name: str) -> str:
    return f"arn:aws:iam::{ACCOUNTS[stage]}:role/canvalo/{name}"


def workload_boundary(iam: Stacks, stage: str) -> Policy:
    return iam.managed_policy(f"arn:aws:iam::{ACCOUNTS[stage]}:policy/canvalo/canvalo-workload-boundary")


def secret_arn(stage: str, name: str = "") -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNTS[stage]}:secret:{name or f'canvalo/{stage}/backend'}-AbCdEf"


def state_object(stage: str, key: str) -> str:
    return f"arn:aws:s3:::canvalo-tfstate-{ACCOUNTS[stage]}-{REGION}/{key}"


def assert_denied(principal: Principal, request: Request, *, resource_policies: tuple[Policy, ...] = ()) -> None:
    decision = evaluate(request, principal, resource_policies=resource_policies)
    assert not decision.allowed, f"{principal.arn} may {request.action} on {request.resource}: {decision}"


def assert_allowed(principal: Principal, request: Request, *, resource_policies: tuple[Policy, ...] = ()) -> None:
    decision = evaluate(request, principal, resource_policies=resource_policies)
    assert decision.allowed, f"{principal.arn} may not {request.action} on {request.resource}: {decision}"


# The evaluator itself.


def allow(*actions: str, resources: tuple[str, ...] = ("*",), conditions: tuple[Condition, ...] = ()) -> Statement:
    return Statement("Allow", "Allow", actions=actions, resources=resources, conditions=conditions)


def deny(*actions: str, resources: tuple[str, ...] = ("*",), conditions: tuple[Condition, ...] = ()) -> Statement:
    return Statement("Deny", "Deny", actions=actions, resources=resources, conditions=conditions)


def someone(*statements: Statement, boundary: tuple[Statement, ...] | None = None) -> Principal:
    return Principal(
        "arn:aws:iam::111111111111:role/someone",
        (Policy("identity", statements),),
        Policy("boundary", boundary) if boundary is not None else None,
    )


def test_an_explicit_deny_wins_over_any_allow_in_any_policy() -> None:
    request = Request("s3:PutObject", "arn:aws:s3:::bucket/key")
    assert evaluate(request, someone(allow("s3:*"))).allowed
    decision = evaluate(request, someone(allow("s3:*"), deny("s3:PutObject")))
    assert decision.outcome is Outcome.EXPLICITLY_DENIED and decision.statements == ("identity:Deny",)
    in_boundary = someone(allow("s3:*"), boundary=(allow("*"), deny("s3:Put*")))
    assert evaluate(request, in_boundary).outcome is Outcome.EXPLICITLY_DENIED
    resource_policy = Policy("bucket", (deny("s3:PutObject"),))
    decision = evaluate(request, someone(allow("s3:*")), resource_policies=(resource_policy,))
    assert decision.outcome is Outcome.EXPLICITLY_DENIED


def test_the_boundary_and_the_identity_policy_must_both_allow() -> None:
    request = Request("ecs:RunTask", "arn:aws:ecs:eu-west-1:111111111111:task-definition/app:1")
    assert evaluate(request, someone(allow("ecs:*"), boundary=(allow("ecs:RunTask"),))).allowed
    assert evaluate(request, someone(allow("ecs:*"), boundary=(allow("logs:*"),))).outcome is (
        Outcome.OUTSIDE_THE_BOUNDARY
    )
    assert evaluate(request, someone(allow("logs:*"), boundary=(allow("*"),))).outcome is Outcome.NOT_ALLOWED
    assert evaluate(request, someone()).outcome is Outcome.NOT_ALLOWED


def test_action_patterns_are_case_insensitive_wildcards() -> None:
    def allowed(action: str, *patterns: str) -> bool:
        return evaluate(Request(action, "*"), someone(allow(*patterns))).allowed

    assert allowed("ecs:RunTask", "ecs:*") and allowed("ECS:runtask", "ecs:RunTask")
    assert allowed("ec2:CreateVpc", "ec2:*Vpc*") and allowed("ec2:DescribeVpcAttribute", "ec2:*Vpc*")
    assert not allowed("ec2:CreateSubnet", "ec2:*Vpc*")
    assert not allowed("ecs:RunTask", "ec2:*") and not allowed("ecs:RunTasks", "ecs:RunTask")
    assert allowed("kms:GenerateDataKeyPair", "kms:GenerateDataKey*") and allowed("s3:GetObject", "s3:GetObjec?")
    not_action = Statement("NotAction", "Allow", not_actions=("iam:*",), resources=("*",))
    assert evaluate(Request("s3:GetObject", "*"), someone(not_action)).allowed
    assert not evaluate(Request("iam:CreateRole", "*"), someone(not_action)).allowed


def test_resource_patterns_are_case_sensitive_wildcards() -> None:
    secret = "arn:aws:secretsmanager:eu-west-1:1:secret:app/backend-??????"
    principal = someone(allow("secretsmanager:GetSecretValue", resources=(secret,)))

    def allowed(resource: str) -> bool:
        return evaluate(Request("secretsmanager:GetSecretValue", resource), principal).allowed

    assert allowed("arn:aws:secretsmanager:eu-west-1:1:secret:app/backend-AbCdEf")
    assert not allowed("arn:aws:secretsmanager:eu-west-1:1:secret:app/backend-other-AbCdEf")
    assert not allowed("arn:aws:secretsmanager:eu-west-1:1:secret:APP/backend-AbCdEf")
    keys = someone(allow("s3:GetObject", resources=("arn:aws:s3:::state/beta-*",)))
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::state/beta-network/terraform.tfstate"), keys).allowed
    assert not evaluate(Request("s3:GetObject", "arn:aws:s3:::state/pipeline/terraform.tfstate"), keys).allowed
    not_resource = Statement("NotResource", "Deny", actions=("s3:*",), not_resources=("arn:aws:s3:::state/beta-*",))
    fenced = someone(allow("s3:*"), not_resource)
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::state/beta-x"), fenced).allowed
    assert not evaluate(Request("s3:GetObject", "arn:aws:s3:::state/pipeline/x"), fenced).allowed


def test_conditions_are_anded_their_values_ored_and_absent_keys_handled_as_iam_does() -> None:
    def holds(test: str, key: str, values: tuple[str, ...], context: Mapping[str, ContextValue]) -> bool:
        return Condition(test, key, values).holds(context)

    assert holds("StringEquals", "aws:RequestedRegion", ("eu-west-1", "us-east-1"), IN_REGION)
    assert not holds("StringEquals", "aws:RequestedRegion", ("EU-WEST-1",), IN_REGION)
    assert not holds("StringEquals", "aws:RequestedRegion", ("eu-west-1",), {})
    assert holds("StringLike", "s3:prefix", ("pipeline/*",), {"s3:prefix": "pipeline/terraform.tfstate"})
    assert holds(
        "ArnLike",
        "aws:PrincipalArn",
        ("arn:aws:iam::1:role/*/Admin*",),
        {"aws:PrincipalArn": "arn:aws:iam::1:role/x/Admin1"},
    )
    assert holds(
        "ArnEquals",
        "aws:SourceArn",
        ("arn:aws:ecs:eu-west-1:1:*",),
        {"aws:SourceArn": "arn:aws:ecs:eu-west-1:1:task/x"},
    )
    # A negated operator is true where the key is absent; a positive one false, unless ...IfExists.
    assert holds("StringNotEquals", "aws:PrincipalArn", ("x",), {})
    assert holds("ArnNotEquals", "aws:PrincipalArn", ("x",), {"aws:PrincipalArn": "y"})
    assert not holds("ArnNotEquals", "aws:PrincipalArn", ("x",), {"aws:PrincipalArn": "x"})
    assert holds("StringEqualsIfExists", "aws:RequestTag/application", ("canvalo",), {})
    assert holds("Null", "aws:ResourceTag/application", ("true",), {})
    assert not holds("Null", "aws:ResourceTag/application", ("true",), {"aws:ResourceTag/application": "x"})
    assert holds("Null", "aws:ResourceTag/application", ("false",), {"aws:ResourceTag/application": "x"})
    assert holds("Bool", "aws:SecureTransport", ("false",), {"aws:SecureTransport": False})
    assert not holds("Bool", "aws:SecureTransport", ("false",), {"aws:SecureTransport": True})
    tags = {"aws:TagKeys": ["application", "stage"]}
    assert holds("ForAllValues:StringEquals", "aws:TagKeys", ("application", "stage", "component"), tags)
    assert not holds("ForAllValues:StringEquals", "aws:TagKeys", ("application",), tags)
    assert holds("ForAllValues:StringEquals", "aws:TagKeys", ("application",), {})
    assert holds("ForAnyValue:StringLike", "aws:TagKeys", ("stag?",), tags)
    assert not holds("ForAnyValue:StringEquals", "aws:TagKeys", ("application",), {})
    both = allow(
        "kms:TagResource",
        conditions=(
            Condition("StringEquals", "aws:RequestTag/application", ("canvalo",)),
            Condition("StringEquals", "aws:RequestedRegion", ("eu-west-1",)),
        ),
    )
    tagging = {"aws:RequestTag/application": "canvalo"}
    assert evaluate(Request("kms:TagResource", "*", {**tagging, **IN_REGION}), someone(both)).allowed
    assert not evaluate(Request("kms:TagResource", "*", tagging), someone(both)).allowed


def test_what_the_evaluator_does_not_model_raises_instead_of_answering() -> None:
    with pytest.raises(ValueError, match="not modelled"):
        Condition("NumericLessThan", "aws:MultiFactorAuthAge", ("3600",)).holds({"aws:MultiFactorAuthAge": "1"})
    with pytest.raises(ValueError, match="multi-valued"):
        Condition("StringEquals", "aws:TagKeys", ("a",)).holds({"aws:TagKeys": ["a"]})
    with pytest.raises(ValueError, match="unresolved Terraform reference"):
        evaluate(Request("s3:GetObject", "x"), someone(allow("s3:*", resources=("${aws_s3_bucket.b.arn}",))))
    with pytest.raises(ValueError, match="exactly one of actions"):
        Statement("Empty", "Allow", resources=("*",))


def test_roles_are_read_from_the_stacks_with_their_boundary_and_references_resolved(iam: Stacks) -> None:
    update = iam.principal("pipeline", UPDATE_ROLE)
    assert update.arn == role_arn("beta", UPDATE_ROLE)
    assert update.boundary is not None and update.boundary.name.startswith("pipeline/boundary_document")
    execution = iam.principal("prod", "canvalo-prod-backend-execution")
    assert execution.boundary == workload_boundary(iam, "prod"), "found in bootstrap-prod by its ARN"
    for principal in (update, execution, deploy_role(iam, "gamma")):
        for policy in (*principal.identity, *([principal.boundary] if principal.boundary else [])):
            for item in policy.statements:
                assert "${" not in repr(item), f"{policy.name}:{item.sid} keeps a Terraform reference"


# 1. Trust: no condition key inspects a trust document, so no deploying role may rewrite one.


@pytest.mark.req("R4.6", "R5.3")
@pytest.mark.parametrize("stage", STAGES)
def test_no_deploy_role_may_rewrite_a_roles_trust_policy(iam: Stacks, stage: str) -> None:
    """Else it could make the task execution role, the one reader of the secret, trust another account."""
    principal = deploy_role(iam, stage)
    for name in ("backend-execution", "backend-task", "vpc-flow-logs"):
        assert_denied(
            principal, Request("iam:UpdateAssumeRolePolicy", role_arn(stage, f"canvalo-{stage}-{name}"), IN_REGION)
        )


@pytest.mark.req("R4.6")
def test_the_update_role_may_not_rewrite_a_pipeline_roles_trust_policy(iam: Stacks) -> None:
    """Else it could make the pipeline's deploy role, which gamma's and prod's deploy roles trust by ARN,
    trust another account. A trust change always broadens, so an administrator applies it anyway."""
    update = iam.principal("pipeline", UPDATE_ROLE)
    for role in iam["pipeline"].resources("aws_iam_role").values():
        assert_denied(update, Request("iam:UpdateAssumeRolePolicy", role_arn("beta", role["name"])))


@pytest.mark.req("R5.3")
@pytest.mark.parametrize("stage", STAGES)
def test_no_deploy_role_may_replace_the_role_that_reads_the_secret(iam: Stacks, stage: str) -> None:
    """Deleting and recreating the execution role under its name would give it a new trust policy that
    still matches the secret's `aws:PrincipalArn` condition and the workload boundary."""
    execution = role_arn(stage, f"canvalo-{stage}-backend-execution")
    assert_denied(deploy_role(iam, stage), Request("iam:DeleteRole", execution, IN_REGION))


@pytest.mark.req("R4.6")
def test_the_update_role_may_neither_create_nor_delete_a_pipeline_role(iam: Stacks) -> None:
    """A recreated `canvalo-pipeline-deploy` with another trust would reach gamma and prod; creating or
    deleting a role always broadens (plan_summary), so self_update never applies it: an administrator does."""
    update = iam.principal("pipeline", UPDATE_ROLE)
    boundary = {"iam:PermissionsBoundary": "arn:aws:iam::111111111111:policy/canvalo/canvalo-pipeline-boundary"}
    for name in (PIPELINE_DEPLOY_ROLE, UPDATE_ROLE, "canvalo-beta-pipeline-build", "canvalo-beta-pipeline-new"):
        assert_denied(update, Request("iam:DeleteRole", role_arn("beta", name)))
        assert_denied(update, Request("iam:CreateRole", role_arn("beta", name), boundary))


@pytest.mark.req("R5.3")
@pytest.mark.parametrize("stage", STAGES)
def test_a_role_the_deploy_role_creates_cannot_read_the_secret(iam: Stacks, stage: str) -> None:
    """The deploy role may still create a project role with any trust policy (CreateRole has no condition
    key for it): what such a role can do is the workload boundary's, which lets only the execution role,
    by its ARN, read the stage's secret, with or without the secret's resource policy (which the deploy
    role manages, and may delete, as Terraform's destroy of aws_secretsmanager_secret_policy does)."""
    account = ACCOUNTS[stage]
    boundary = workload_boundary(iam, stage)
    created = role_arn(stage, f"canvalo-{stage}-backdoor")
    assert_allowed(
        deploy_role(iam, stage),
        Request(
            "iam:CreateRole",
            created,
            {
                "iam:PermissionsBoundary": f"arn:aws:iam::{account}:policy/canvalo/canvalo-workload-boundary",
                **IN_REGION,
            },
        ),
    )
    backend = iam[stage]
    ((secret_policy,),) = [[p["policy"] for p in backend.resources("aws_secretsmanager_secret_policy").values()]]
    resource_policy = backend.policy(secret_policy)
    secret = backend.attribute(
        f"data.aws_secretsmanager_secret.{next(iter(backend.data('aws_secretsmanager_secret')))}.arn"
    )
    read = Request("secretsmanager:GetSecretValue", secret, IN_REGION)
    backdoor = Principal(created, (EVERYTHING,), boundary)
    assert_denied(backdoor, read, resource_policies=(resource_policy,))
    assert_denied(backdoor, read)
    execution = iam.principal(stage, f"canvalo-{stage}-backend-execution")
    assert_allowed(execution, read, resource_policies=(resource_policy,))
    assert_denied(deploy_role(iam, stage), read)


# 2. The workload boundary: the stage's secret only, and no key.


@pytest.mark.req("R5.3")
@pytest.mark.parametrize("stage", STAGES)
def test_the_workload_boundary_reads_only_the_stages_secret_and_decrypts_nothing(iam: Stacks, stage: str) -> None:
    """Even the execution role, were its policy rewritten to allow everything, reads no other secret and
    uses no KMS key: the secret is encrypted with the AWS-managed key, which needs no kms:Decrypt grant."""
    rewritten = Principal(
        role_arn(stage, f"canvalo-{stage}-backend-execution"), (EVERYTHING,), workload_boundary(iam, stage)
    )
    assert_allowed(rewritten, Request("secretsmanager:GetSecretValue", secret_arn(stage), IN_REGION))
    assert_denied(rewritten, Request("secretsmanager:GetSecretValue", secret_arn(stage, "someone/else"), IN_REGION))
    other = "beta" if stage != "beta" else "gamma"
    assert_denied(
        rewritten, Request("secretsmanager:GetSecretValue", secret_arn(stage, f"canvalo/{other}/backend"), IN_REGION)
    )
    key = f"arn:aws:kms:{REGION}:{ACCOUNTS[stage]}:key/0b1c2d3e-0000-0000-0000-000000000000"
    for via in ({}, {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}):
        assert_denied(rewritten, Request("kms:Decrypt", key, {**IN_REGION, **via}))


@pytest.mark.req("R5.3")
@pytest.mark.parametrize("stage", STAGES)
def test_every_workload_role_keeps_what_its_own_policy_grants(iam: Stacks, stage: str) -> None:
    """The boundary caps the workloads without breaking them: each grant of their policies passes it."""
    for stack_name in (stage,):
        for role in iam[stack_name].resources("aws_iam_role").values():
            principal = iam.principal(stack_name, role["name"])
            for policy in principal.identity:
                for item in policy.statements:
                    for action in item.actions:
                        for resource in item.resources:
                            example = resource.replace("*", "example").replace("?", "a")
                            assert_allowed(principal, Request(action, example, IN_REGION))


# 3. KMS: tagging a key as the project's would make it the deploy role's.


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", STAGES)
def test_no_deploy_role_may_tag_another_applications_key_as_its_own(iam: Stacks, stage: str) -> None:
    principal = deploy_role(iam, stage)
    key = f"arn:aws:kms:{REGION}:{ACCOUNTS[stage]}:key/0b1c2d3e-0000-0000-0000-000000000000"
    claim = {
        "aws:RequestTag/application": "canvalo",
        "aws:RequestTag/stage": stage,
        "aws:TagKeys": ["application", "stage"],
    }
    assert_denied(
        principal, Request("kms:TagResource", key, {**IN_REGION, **claim, "aws:ResourceTag/application": "billing"})
    )
    # Creating the project's own key, tagged on creation, stays possible (the key has no tags yet).
    assert_allowed(principal, Request("kms:CreateKey", "*", {**IN_REGION, **claim}))
    assert_allowed(principal, Request("kms:TagResource", key, {**IN_REGION, **claim}))


# 4. ECS and logs: no command of the deploy role's choosing in a task that holds the secret.


@pytest.mark.req("R5.3")
@pytest.mark.parametrize("stage", STAGES)
def test_no_deploy_role_may_run_a_command_in_a_task_or_read_its_logs(iam: Stacks, stage: str) -> None:
    principal = deploy_role(iam, stage)
    account = ACCOUNTS[stage]
    cluster = f"canvalo-{stage}-backend"
    for action, resource in (
        ("ecs:RunTask", f"arn:aws:ecs:{REGION}:{account}:task-definition/{cluster}:7"),
        ("ecs:StartTask", f"arn:aws:ecs:{REGION}:{account}:task-definition/{cluster}:7"),
        ("ecs:ExecuteCommand", f"arn:aws:ecs:{REGION}:{account}:task/{cluster}/0123456789abcdef"),
        ("ecs:ExecuteCommand", f"arn:aws:ecs:{REGION}:{account}:cluster/{cluster}"),
    ):
        assert_denied(principal, Request(action, resource, IN_REGION))
    log_group = f"arn:aws:logs:{REGION}:{account}:log-group:/canvalo/{stage}/backend"
    for action in ("logs:GetLogEvents", "logs:FilterLogEvents", "logs:StartQuery", "logs:StartLiveTail"):
        assert_denied(principal, Request(action, f"{log_group}:log-stream:backend/app/0123", IN_REGION))
        assert_denied(principal, Request(action, log_group, IN_REGION))


# 5. The pipeline boundary: a deny in an inline policy another pipeline role may rewrite is no guard.


def example(pattern: str) -> str:
    """One value an IAM pattern matches."""
    return pattern.replace("*", "example").replace("?", "a")


def requests_denied_by(item: Statement) -> list[Request]:
    """One request for each action and resource of a Deny, with a context its conditions hold in (a negated
    operator's key left out, so it holds too)."""
    context: dict[str, ContextValue] = {}
    for condition in item.conditions:
        test = condition.test.removesuffix("IfExists")
        if test in ("StringEquals", "StringLike", "ArnEquals", "ArnLike"):
            context[condition.variable] = example(condition.values[0])
        elif not (test.startswith(("StringNot", "ArnNot")) or (test, condition.values) == ("Null", ("true",))):
            raise AssertionError(f"{item.sid}: no example for {condition}")
    return [Request(example(a), example(r), context) for a in item.actions for r in item.resources]


@pytest.mark.req("R4.6")
def test_every_deny_of_a_pipeline_roles_policy_is_also_in_the_pipeline_boundary(iam: Stacks) -> None:
    """Whatever the update role writes into a pipeline role's policy, each Deny the role carries still holds:
    its boundary denies every request the Deny does (the boundary may hold it merged with another, or
    leave out an action another of its Denies already denies on the same resources)."""
    pipeline = iam["pipeline"]
    for role in pipeline.resources("aws_iam_role").values():
        principal = iam.principal("pipeline", role["name"])
        assert principal.boundary is not None
        rewritten = Principal(principal.arn, (EVERYTHING,), principal.boundary)
        for policy in principal.identity:
            for item in policy.statements:
                if item.effect != "Deny":
                    continue
                for request in requests_denied_by(item):
                    assert item.applies(
                        Request(
                            request.action, request.resource, {"aws:PrincipalArn": principal.arn, **request.context}
                        )
                    ), f"{role['name']}: {item.sid} does not deny its own example {request}"
                    assert_denied(rewritten, request)


@pytest.mark.req("R4.6", "R5.3")
@pytest.mark.parametrize("role", [PIPELINE_DEPLOY_ROLE, UPDATE_ROLE, "canvalo-beta-pipeline-build"])
def test_a_pipeline_role_whose_policy_was_rewritten_is_still_held_by_the_boundary(iam: Stacks, role: str) -> None:
    """The update role may rewrite every pipeline role's inline policy but its own: give one everything,
    and the boundary still refuses each step of the paths above."""
    actual = iam.principal("pipeline", role)
    rewritten = Principal(actual.arn, (EVERYTHING,), actual.boundary)
    for request in (
        Request("iam:PutRolePolicy", role_arn("beta", UPDATE_ROLE)),
        Request("iam:UpdateAssumeRolePolicy", role_arn("beta", PIPELINE_DEPLOY_ROLE)),
        Request("iam:UpdateAssumeRolePolicy", role_arn("beta", "canvalo-beta-backend-execution")),
        Request("iam:DeleteRole", role_arn("beta", PIPELINE_DEPLOY_ROLE)),
        Request("iam:DeleteRole", role_arn("beta", "canvalo-beta-backend-execution")),
        Request("iam:DeleteRolePermissionsBoundary", role_arn("beta", PIPELINE_DEPLOY_ROLE)),
        Request("secretsmanager:GetSecretValue", secret_arn("beta"), IN_REGION),
        Request("ecs:RunTask", f"arn:aws:ecs:{REGION}:111111111111:task-definition/canvalo-beta-backend:7", IN_REGION),
        Request("s3:PutObject", state_object("beta", "bootstrap-beta/terraform.tfstate")),
        Request(
            "codepipeline:PutApprovalResult",
            f"arn:aws:codepipeline:{REGION}:111111111111:canvalo-beta-pipeline/Prod/Approve",
        ),
    ):
        assert_denied(rewritten, request)
    pipeline_state = Request("s3:PutObject", state_object("beta", "pipeline/terraform.tfstate"))
    if role == UPDATE_ROLE:
        assert_allowed(actual, pipeline_state)
    else:
        assert_denied(rewritten, pipeline_state)


# 6. State: a stage's deploy role writes its own stacks' state and nothing else in the bucket.


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", STAGES)
def test_deploy_roles_touch_only_their_own_stages_state(iam: Stacks, stage: str) -> None:
    principal = deploy_role(iam, stage)
    for key in (f"{stage}/terraform.tfstate", f"{stage}/terraform.tfstate.tflock"):
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert_allowed(principal, Request(action, state_object(stage, key)))
    for key in (
        f"bootstrap-{stage}/terraform.tfstate",
        "pipeline/terraform.tfstate",
        "pipeline/terraform.tfstate.tflock",
    ):
        for action in ("s3:PutObject", "s3:DeleteObject"):
            assert_denied(principal, Request(action, state_object(stage, key)))


# 7. Only CodePipeline (and the drift schedule, for drift) starts the privileged builds.

PIPELINE_PREFIX = "canvalo-beta-pipeline"
# What runs with a stage's or the pipeline's rights: Plan (also Bake), each stage's Apply, the drift check.
PRIVILEGED_PROJECTS = ("plan", "apply-beta", "apply-gamma", "apply-prod", "drift")
# The services whose role starts builds: CodePipeline runs its actions, EventBridge the daily drift check.
BUILD_STARTERS = {
    f"{PIPELINE_PREFIX}-codepipeline": PRIVILEGED_PROJECTS,
    f"{PIPELINE_PREFIX}-drift-schedule": ("drift",),
}
START_ACTIONS = (
    "codebuild:StartBuild",
    "codebuild:RetryBuild",
    "codebuild:StartBuildBatch",
    "codebuild:RetryBuildBatch",
)
# Changing what a privileged project runs, or creating one that runs as its role, is starting it too.
PROJECT_WRITES = ("codebuild:UpdateProject", "codebuild:CreateProject")
# What would let a role move an execution past a gate, or run it at a revision of its choosing.
GATE_ACTIONS = (
    "codepipeline:PutApprovalResult",
    "codepipeline:OverrideStageCondition",
    "codepipeline:RetryStageExecution",
    "codepipeline:RollbackStage",
)


def project_arn(kind: str) -> str:
    return f"arn:aws:codebuild:{REGION}:111111111111:project/{PIPELINE_PREFIX}-{kind}"


def pipeline_roles(iam: Stacks) -> list[str]:
    return sorted(body["name"] for body in iam["pipeline"].resources("aws_iam_role").values())


def starts_a_privileged_build(principal: Principal) -> list[str]:
    """Each (action, project) the principal may do that starts, or rewrites, a privileged build."""
    starter_projects = BUILD_STARTERS.get(principal.arn.rsplit("/", 1)[-1], ())
    return [
        f"{action} {kind}"
        for kind in PRIVILEGED_PROJECTS
        for action in (*START_ACTIONS, *PROJECT_WRITES)
        if evaluate(Request(action, project_arn(kind), IN_REGION), principal).allowed
        and not (action in START_ACTIONS and kind in starter_projects)
    ]


@pytest.mark.req("R4.6")
def test_no_pipeline_role_but_the_services_own_starts_or_rewrites_a_privileged_build(iam: Stacks) -> None:
    """`StartBuild` with `buildspecOverride` on `apply-prod` runs any command as prod's Apply role, which
    prod's deploy role trusts; `UpdateProject` or `CreateProject` with that role does the same later."""
    found = {role: starts_a_privileged_build(iam.principal("pipeline", role)) for role in pipeline_roles(iam)}
    assert {role: paths for role, paths in found.items() if paths} == {}
    # The twin: the update role with its former grant (codebuild:* on the pipeline's projects) is caught. No
    # boundary: the pipeline boundary is the ceiling of the roles' own grants (boundary_statements), so it
    # would grow with the grant.
    update = iam.principal("pipeline", UPDATE_ROLE)
    former = Policy(
        "former",
        (Statement("ManageThePipelineProjects", "Allow", actions=("codebuild:*",), resources=(project_arn("*"),)),),
    )
    assert starts_a_privileged_build(Principal(update.arn, (*update.identity, former)))


@pytest.mark.req("R4.6")
def test_no_pipeline_role_may_pass_a_privileged_projects_role_but_to_create_nothing(iam: Stacks) -> None:
    """Passing `apply-prod`'s role to a project of one's own is that project running as prod's Apply."""
    privileged = [
        role_arn("beta", f"{PIPELINE_PREFIX}-{kind}")
        for kind in ("plan", "apply-beta", "apply-gamma", "apply-prod", "drift")
    ]
    for role in pipeline_roles(iam):
        principal = iam.principal("pipeline", role)
        for passed in privileged:
            assert_denied(
                principal, Request("iam:PassRole", passed, {"iam:PassedToService": "codebuild.amazonaws.com"})
            )


@pytest.mark.req("R4.6")
def test_no_pipeline_role_may_move_an_execution_past_a_gate(iam: Stacks) -> None:
    """Approving, overriding the window, retrying a failed stage: a person's decisions. One exception: Review
    answers a stage's approval (each Apply accepts that answer only for a plan that needs no person)."""
    stage_arn = f"arn:aws:codepipeline:{REGION}:111111111111:{PIPELINE_PREFIX}/Prod"
    approval_arn = f"{stage_arn}/Approve"
    for role in pipeline_roles(iam):
        principal = iam.principal("pipeline", role)
        for action in GATE_ACTIONS:
            for resource in (approval_arn, stage_arn, f"arn:aws:codepipeline:{REGION}:111111111111:{PIPELINE_PREFIX}"):
                if (role, action, resource) == (REVIEW_ROLE, "codepipeline:PutApprovalResult", approval_arn):
                    assert_allowed(principal, Request(action, resource, IN_REGION))
                    continue
                assert_denied(principal, Request(action, resource, IN_REGION))
        # Even with a policy granting everything (the update role may rewrite the others' policies), no
        # role but Review may answer an approval: the boundary's OnlyReviewApproves.
        rewritten = Principal(principal.arn, (EVERYTHING,), principal.boundary)
        request = Request("codepipeline:PutApprovalResult", approval_arn, IN_REGION)
        if role == REVIEW_ROLE:
            assert_allowed(rewritten, request)
        else:
            assert_denied(rewritten, request)
    update = iam.principal("pipeline", UPDATE_ROLE)
    former = Policy(
        "former",
        (
            Statement(
                "Former",
                "Allow",
                actions=("codepipeline:*",),
                resources=(f"arn:aws:codepipeline:{REGION}:111111111111:{PIPELINE_PREFIX}*",),
            ),
        ),
    )
    # The twin, with the grant back (and, as above, the boundary that would grow with it).
    twin = Principal(update.arn, (*update.identity, former))
    assert evaluate(Request("codepipeline:OverrideStageCondition", f"{stage_arn}/Approve", IN_REGION), twin).allowed


def registry_policy(iam: Stacks) -> tuple[str, Policy]:
    """The repository every stage pulls from, and its policy as ECR evaluates it (its statements name no
    resource: they apply to the repository itself)."""
    pipeline = iam["pipeline"]
    (name,) = pipeline.resources("aws_ecr_repository")
    repository = pipeline.attribute(f"aws_ecr_repository.{name}.arn")
    ((document,),) = [[p["policy"] for p in pipeline.resources("aws_ecr_repository_policy").values()]]
    name = document.removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
    blocks = pipeline.resolve(pipeline.data("aws_iam_policy_document")[name]["statement"])
    return repository, Policy.from_blocks(name, [{**block, "resources": [repository]} for block in blocks])


@pytest.mark.req("R4.6", "R5.3")
@pytest.mark.parametrize("role", [UPDATE_ROLE, "canvalo-beta-pipeline-build", PIPELINE_DEPLOY_ROLE])
@pytest.mark.parametrize(
    "action", ["ecr:BatchDeleteImage", "ecr:PutLifecyclePolicy", "ecr:PutImageTagMutability", "ecr:SetRepositoryPolicy"]
)
def test_no_pipeline_role_can_remove_an_image_a_stage_runs(iam: Stacks, role: str, action: str) -> None:
    """Images are immutable (issue 19 item 6): not even a pipeline role whose policy grants everything (the
    update role may rewrite the others') can delete prod's image, let its tag move or expire it by a new
    lifecycle. The twin: the update role's own `ecr:*` on the repository allows it without the policy."""
    repository, policy = registry_policy(iam)
    principal = iam.principal("pipeline", role)
    request = Request(action, repository, IN_REGION)
    assert_denied(Principal(principal.arn, (EVERYTHING,), principal.boundary), request, resource_policies=(policy,))
    assert_denied(principal, request, resource_policies=(policy,))
    if role == UPDATE_ROLE:
        assert_allowed(principal, request)
    # The pull grants still hold for the stages' roles beside the Deny.
    assert any(s.effect == "Allow" and "ecr:BatchGetImage" in s.actions for s in policy.statements)


# 8. KMS: the update role may rewrite the other pipeline roles' policies, but no key of the account is theirs.

# A key of the pipeline's account that is not the pipeline's: beta's workload key, another application's, or one
# with no tags, by the tags it carries.
OTHER_KEY = f"arn:aws:kms:{REGION}:{ACCOUNTS['beta']}:key/0b1c2d3e-0000-0000-0000-000000000000"
# What claiming a key for beta sends (as CreateKey with tags does).
CLAIM = {
    "aws:RequestTag/application": "canvalo",
    "aws:RequestTag/stage": "beta",
    "aws:TagKeys": ["application", "stage"],
}


def kms_requests_beyond_the_pipelines_key(principal: Principal) -> list[str]:
    """Each way `principal` may use, or claim, a key of the account that is not the pipeline's."""
    deploys_beta = principal.arn == role_arn("beta", PIPELINE_DEPLOY_ROLE)
    tags: list[dict[str, ContextValue]] = [{"aws:ResourceTag/application": "billing"}, {}]
    requests = [Request("kms:Decrypt", OTHER_KEY, {**IN_REGION, **tag}) for tag in tags]
    requests.append(Request("kms:CreateGrant", OTHER_KEY, {**IN_REGION, "aws:ResourceTag/application": "billing"}))
    if not deploys_beta:
        # Beta's own keys, and claiming an untagged key as beta's, are the deploy role's work (ProjectKeys,
        # TagNewProjectKeysWithoutResourceScope); no other pipeline role's.
        requests.append(Request("kms:Decrypt", OTHER_KEY, {**IN_REGION, "aws:ResourceTag/application": "canvalo"}))
        requests.append(Request("kms:TagResource", OTHER_KEY, {**IN_REGION, **CLAIM}))
    return [f"{r.action} {r.context}" for r in requests if evaluate(r, principal).allowed]


@pytest.mark.req("R4.6", "R5.3")
def test_the_update_role_cannot_give_a_pipeline_role_decrypt_on_a_key_other_than_the_pipelines(iam: Stacks) -> None:
    """The update role writes every other pipeline role's inline policy, within that role's boundary: with
    `kms:*` on "*" in the boundaries it could give one decrypt on any key of the account, or let it claim
    one by tagging it. Each role, its policy rewritten to grant everything, still uses the pipeline's key
    and no other. The twin: the `kms:*` on "*" ceiling back in a boundary lets the rewritten role decrypt."""
    pipeline = iam["pipeline"]
    (key,) = pipeline.resources("aws_kms_key")
    pipeline_key = pipeline.attribute(f"aws_kms_key.{key}.arn")
    update = iam.principal("pipeline", UPDATE_ROLE)
    bodies = {body["name"]: body for body in pipeline.resources("aws_iam_role").values()}
    # Not the update role itself: no pipeline role, itself included, may change its policy.
    for name in [n for n in pipeline_roles(iam) if n != UPDATE_ROLE]:
        actual = iam.principal("pipeline", name)
        boundary = {"iam:PermissionsBoundary": pipeline.resolve(bodies[name]["permissions_boundary"])}
        assert_allowed(update, Request("iam:PutRolePolicy", actual.arn, boundary))
        rewritten = Principal(actual.arn, (EVERYTHING,), actual.boundary)
        assert_allowed(rewritten, Request("kms:Decrypt", pipeline_key, IN_REGION))
        assert kms_requests_beyond_the_pipelines_key(rewritten) == [], name
    build = iam.principal("pipeline", "canvalo-beta-pipeline-build")
    assert build.boundary is not None
    every_key = Statement("PipelineActions", "Allow", actions=("kms:*",), resources=("*",))
    former = Policy(build.boundary.name, (*build.boundary.statements, every_key))
    assert kms_requests_beyond_the_pipelines_key(Principal(build.arn, (EVERYTHING,), former))


def artifact_bucket_policy(iam: Stacks) -> tuple[str, Policy]:
    """The pipeline's artifact bucket and its policy, as S3 evaluates it."""
    pipeline = iam["pipeline"]
    (name,) = pipeline.resources("aws_s3_bucket")
    ((document,),) = [[p["policy"] for p in pipeline.resources("aws_s3_bucket_policy").values()]]
    return pipeline.attribute(f"aws_s3_bucket.{name}.arn"), pipeline.policy(document)


APPLY_ROLES = {
    "beta": PIPELINE_DEPLOY_ROLE,
    "gamma": "canvalo-beta-pipeline-apply-gamma",
    "prod": "canvalo-beta-pipeline-apply-prod",
}
# Every other role of the pipeline account that holds s3:PutObject on the artifact bucket, the commit's Build
# among them, and the plan role the drift check runs as.
OTHER_ARTIFACT_WRITERS = [
    "canvalo-beta-pipeline-build",
    "canvalo-beta-pipeline-plan",
    "canvalo-beta-pipeline-codepipeline",
    UPDATE_ROLE,
]


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", STAGES)
def test_only_the_stages_own_apply_may_record_the_stack_the_drift_check_plans(iam: Stacks, stage: str) -> None:
    """`applied/<stage>/cdk.tf.json` is what the drift check plans as prod's configuration: whoever could rewrite
    it (an `ignore_changes = all` on every resource, say) could silence the check. Only that stage's Apply role
    may put it, the other stages' Applies and every other artifact writer may not, whatever their grant on the
    whole bucket; the plan role, which runs the check, reads it. The twin: without the bucket's policy the Build
    role's artifact grant would let a commit's code write it."""
    bucket, policy = artifact_bucket_policy(iam)
    record = Request("s3:PutObject", f"{bucket}/applied/{stage}/cdk.tf.json", IN_REGION)
    assert_allowed(iam.principal("pipeline", APPLY_ROLES[stage]), record, resource_policies=(policy,))
    for other in [*(r for s, r in APPLY_ROLES.items() if s != stage), *OTHER_ARTIFACT_WRITERS]:
        principal = iam.principal("pipeline", other)
        assert_denied(principal, record, resource_policies=(policy,))
        # Not even with a policy granting everything: the Deny is the bucket's, which no pipeline role rewrites.
        assert_denied(Principal(principal.arn, (EVERYTHING,), principal.boundary), record, resource_policies=(policy,))
    assert_allowed(iam.principal("pipeline", "canvalo-beta-pipeline-build"), record)
    read = Request("s3:GetObject", f"{bucket}/applied/{stage}/cdk.tf.json", IN_REGION)
    assert_allowed(iam.principal("pipeline", "canvalo-beta-pipeline-plan"), read, resource_policies=(policy,))
    # SSE-KMS with the pipeline's key: writing takes a data key, reading the record decrypts it.
    pipeline = iam["pipeline"]
    (key,) = pipeline.resources("aws_kms_key")
    key_arn = pipeline.attribute(f"aws_kms_key.{key}.arn")
    assert_allowed(iam.principal("pipeline", APPLY_ROLES[stage]), Request("kms:GenerateDataKey", key_arn, IN_REGION))
    assert_allowed(iam.principal("pipeline", "canvalo-beta-pipeline-plan"), Request("kms:Decrypt", key_arn, IN_REGION))
    # Each Apply still writes its stage's artifacts (the outputs it hands on), under CodePipeline's folder.
    artifact = Request("s3:PutObject", f"{bucket}/canvalo-beta-pipelin/{stage.capitalize()}Outp/a1B2c3D", IN_REGION)
    assert_allowed(iam.principal("pipeline", APPLY_ROLES[stage]), artifact, resource_policies=(policy,))
