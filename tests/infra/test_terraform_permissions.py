"""The deploy roles can do what Terraform does with the stacks they apply, measured against pike.

pike (tests/fixtures/pike, vendored) maps each Terraform resource and data source type to the IAM
actions the AWS provider calls to plan, create, change and destroy it. For every resource and data
source the stage stacks synthesize, every action pike lists must be allowed, by the offline evaluator
(tests/support/iam_policy.py), to the role that applies that stage: gamma's and prod's `canvalo-deploy`,
beta's pipeline deploy role (with its boundary); likewise the pipeline stack for the update role. Plus
the S3 backend's own calls on the stack's state. Where pike lists an action that these stacks provably
never need, NOT_NEEDED says so with the reason; everything else the role lacks is a failure to fix.

The request each action is checked with (`requests`):
- the resource: the synthesized resource's own ARN for the services whose statements are scoped by ARN
  (S3, IAM, KMS, logs, SNS, Secrets Manager, SSM, ECR, CodeBuild, CodePipeline, CodeStar, EventBridge),
  or "*" for the services whose statements use "*" held to a region (EC2, ELB, ECS, Application Auto
  Scaling, CloudWatch, ACM, CloudFront, Route53);
- the context: aws:RequestedRegion (the resource's provider region; us-east-1 for the global IAM,
  CloudFront and Route53), the stage's default tags as aws:ResourceTag/* (every resource carries them),
  iam:PassedToService / iam:AWSServiceName / iam:PermissionsBoundary as the call would send them; and a
  KMS key's creation is also checked as CreateKey sends it: request tags, no resource tags yet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import STAGES, Document, resources, stacks_holding, synth_pipeline_stack
from tests.support.config import fixture_project
from tests.support.iam_policy import ContextValue, Principal, Request, Stack, Stacks, evaluate

PIKE = Path(__file__).resolve().parent.parent / "fixtures" / "pike"
PIPELINE_DEPLOY_ROLE = "canvalo-pipeline-deploy"
UPDATE_ROLE = "canvalo-beta-pipeline-update-pipeline"
GLOBAL_SERVICES = ("iam", "cloudfront", "route53")
# Services whose deploy statements use Resource "*" (held to a region): the request names no ARN.
UNSCOPED_SERVICES = (
    "ec2",
    "elasticloadbalancing",
    "ecs",
    "application-autoscaling",
    "cloudwatch",
    "acm",
    "cloudfront",
    "route53",
    "lambda",
)
# What passes a role to which service, for iam:PassRole.
PASSED_TO = {
    "aws_ecs_task_definition": "ecs-tasks.amazonaws.com",
    "aws_ecs_service": "ecs-tasks.amazonaws.com",
    "aws_flow_log": "vpc-flow-logs.amazonaws.com",
    "aws_codebuild_project": "codebuild.amazonaws.com",
    "aws_codepipeline": "codepipeline.amazonaws.com",
    "aws_cloudwatch_event_rule": "events.amazonaws.com",
    "aws_cloudwatch_event_target": "events.amazonaws.com",
}
# Whose service-linked role a type's creation may create, for iam:CreateServiceLinkedRole.
SERVICE_LINKED = {
    "aws_ecs_cluster": "ecs.amazonaws.com",
    "aws_appautoscaling_target": "ecs.application-autoscaling.amazonaws.com",
    "aws_lb": "elasticloadbalancing.amazonaws.com",
    "aws_codestarnotifications_notification_rule": "codestar-notifications.amazonaws.com",
    # AWSServiceRoleForCloudFrontVPCOrigin, which pike does not list: made by the account's first VPC origin.
    "aws_cloudfront_vpc_origin": "vpcorigin.cloudfront.amazonaws.com",
}
# What resourceKeyCreate calls after CreateKey, until its read (terraform-provider-aws,
# internal/service/kms/key.go: updateKeyRotationEnabled, waitKeyPolicyPropagated, waitTagsPropagated,
# findKeyInfo), retrying only NotFound.
KEY_CALLS_AFTER_CREATE = (
    "kms:EnableKeyRotation",
    "kms:GetKeyRotationStatus",
    "kms:GetKeyPolicy",
    "kms:ListResourceTags",
    "kms:DescribeKey",
)
EXAMPLE_SUBSCRIPTION_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ROLE_REFERENCE = re.compile(r"\$\{aws_iam_role\.([^.}]+)\.arn\}")


@dataclass(frozen=True)
class Target:
    """One resource or data source of a synthesized stack."""

    stack: Stack
    kind: str  # "resource" or "data"
    tf_type: str
    name: str
    body: Document

    @property
    def address(self) -> str:
        return f"{'data.' if self.kind == 'data' else ''}{self.tf_type}.{self.name}"

    def arn(self) -> str:
        return self.stack.attribute(f"{self.address}.arn")

    @property
    def region(self) -> str:
        alias = str(self.body.get("provider", "aws")).removeprefix("aws").removeprefix(".")
        providers = self.stack.document["provider"]["aws"]
        return str(next(p["region"] for p in providers if p.get("alias", "") == alias))


@dataclass(frozen=True)
class NotNeeded:
    """An action pike lists that the role never needs for this type, and why; `where` narrows it to the
    resources the reason holds for (checked on the synthesized resource, so a change makes it fail)."""

    role: str
    tf_type: str
    actions: tuple[str, ...]
    reason: str
    where: Callable[[Target], bool] = lambda target: True


def named(*names: str) -> Callable[[Target], bool]:
    return lambda target: target.body.get("name") in names


def role_of_policy(*names: str) -> Callable[[Target], bool]:
    return lambda target: any(f"{name}" in json.dumps(target.body) for name in names)


UPDATE_ROLE_ITSELF = "update-pipeline-role_"
NOT_NEEDED = (
    NotNeeded(
        "plan",
        "aws_vpc_security_group_egress_rule",
        ("ec2:RevokeSecurityGroupEgress",),
        "pike lists it under plan, but a plan reads the rule (ec2:DescribeSecurityGroupRules); revoking it is "
        "an apply's or a destroy's",
    ),
    NotNeeded(
        "deploy",
        "aws_iam_role",
        ("iam:DeleteRolePermissionsBoundary",),
        "No role the stacks create ever loses its boundary: a boundary is replaced with "
        "PutRolePermissionsBoundary (the NeverRemoveABoundary deny).",
    ),
    NotNeeded(
        "deploy",
        "aws_iam_role",
        ("iam:DeleteRole",),
        "The backend's task execution role, the one reader of the secret, is replaced only by an "
        "administrator: recreated under its name it could trust anyone "
        "(test_no_deploy_role_may_replace_the_role_that_reads_the_secret).",
        lambda target: str(target.body.get("name", "")).endswith("-backend-execution"),
    ),
    NotNeeded(
        "deploy",
        "aws_appautoscaling_target",
        (
            "lambda:GetProvisionedConcurrencyConfig",
            "lambda:PutProvisionedConcurrencyConfig",
            "lambda:DeleteProvisionedConcurrencyConfig",
        ),
        "The stacks scale ECS services only; Lambda provisioned concurrency is another service namespace.",
        lambda target: target.body.get("service_namespace") == "ecs",
    ),
    NotNeeded(
        "deploy",
        "aws_appautoscaling_policy",
        ("cloudwatch:GetMetricData",),
        "Read for predictive scaling's forecasts; the stacks' policies are target tracking.",
        lambda target: target.body.get("policy_type") == "TargetTrackingScaling",
    ),
    NotNeeded(
        "deploy",
        "aws_lb",
        ("ec2:DetachNetworkInterface", "ec2:DeleteNetworkInterface"),
        "Best effort only: after DeleteLoadBalancer the provider tries to clean up the load balancer's "
        "network interfaces and logs a warning when it cannot (terraform-provider-aws, elbv2 "
        "resourceLoadBalancerDelete); Elastic Load Balancing deletes them itself.",
    ),
    NotNeeded(
        "deploy",
        "aws_flow_log",
        ("logs:CreateLogDelivery",),
        "Vended-log delivery, for flow logs to S3 or Firehose; these go to CloudWatch Logs through their "
        "own IAM role (iam_role_arn).",
        lambda target: target.body.get("log_destination_type") == "cloud-watch-logs",
    ),
    NotNeeded(
        "update",
        "aws_iam_role",
        ("iam:CreateRole", "iam:DeleteRole"),
        "Creating or deleting a pipeline role always broadens (a new trust policy is an added Allow, a "
        "role's destroy is not on the plan summary's safe list), so self_update never applies it: an "
        "administrator does (test_the_update_role_may_neither_create_nor_delete_a_pipeline_role).",
    ),
    NotNeeded(
        "update",
        "aws_iam_role",
        ("iam:DeleteRolePermissionsBoundary",),
        "No pipeline role ever loses its boundary (the NeverRemoveABoundary deny).",
    ),
    NotNeeded(
        "update",
        "aws_iam_role",
        ("iam:PutRolePermissionsBoundary", "iam:TagRole", "iam:UntagRole"),
        "The update role's own role is an administrator's to change (OnlyAnAdministratorChangesTheUpdateRole).",
        named(UPDATE_ROLE),
    ),
    NotNeeded(
        "update",
        "aws_iam_role_policy",
        ("iam:PutRolePolicy", "iam:DeleteRolePolicy"),
        "The update role's own policy is an administrator's to change (OnlyAnAdministratorChangesTheUpdateRole).",
        role_of_policy(UPDATE_ROLE_ITSELF),
    ),
    NotNeeded(
        "update",
        "aws_iam_policy",
        ("iam:CreatePolicy", "iam:DeletePolicy", "iam:TagPolicy", "iam:UntagPolicy"),
        "The two boundaries are an administrator's: created by the first `cdktn deploy pipeline` and "
        "never changed by a pipeline role (the NeverChangeABoundary deny).",
    ),
    NotNeeded(
        "update",
        "aws_codebuild_project",
        ("codebuild:CreateProject", "codebuild:UpdateProject", "codebuild:DeleteProject", "iam:PassRole"),
        "Every change to a build project is a pipeline gate (plan_summary), so self_update never applies one: "
        "an administrator does. A project the update role could write, or pass a role to, would run as "
        "that role (test_no_pipeline_role_but_the_services_own_starts_or_rewrites_a_privileged_build).",
    ),
    NotNeeded(
        "update",
        "aws_codepipeline",
        ("codepipeline:CreatePipeline", "codepipeline:DeletePipeline"),
        "The administrator's first apply creates the pipeline, and replacing it changes its stages (a "
        "pipeline gate). A pipeline the update role could create would run as the CodePipeline role, which "
        "starts every privileged build.",
    ),
    NotNeeded(
        "update",
        "aws_kms_key",
        ("kms:CreateKey",),
        "The artifact key is created by the administrator's first apply; another key means replacing "
        "it, which the plan summary flags (KMS keys are not on its safe list), so an administrator applies it.",
    ),
    NotNeeded(
        "update",
        "aws_codestarnotifications_notification_rule",
        ("iam:CreateServiceLinkedRole",),
        "CodeStar Notifications creates its service-linked role with the first notification rule, in the "
        "administrator's first apply; it is never deleted.",
    ),
    NotNeeded(
        "update",
        "aws_ecr_repository",
        ("kms:DescribeKey", "kms:CreateGrant", "kms:RetireGrant"),
        "The repository is encrypted with AES256: there is no KMS key.",
        lambda target: target.body.get("encryption_configuration") == [{"encryption_type": "AES256"}],
    ),
    NotNeeded(
        "update",
        "aws_ssm_parameter",
        ("kms:Decrypt",),
        "String parameters: no KMS key encrypts them.",
        lambda target: target.body.get("type") == "String" and "key_id" not in target.body,
    ),
)


# What a type needs that pike does not list.
BEYOND_PIKE = {"aws_cloudfront_vpc_origin": {"iam:CreateServiceLinkedRole"}}
EVERY_PHASE = ("plan", "apply", "modify", "destroy")


def pike(target: Target, phases: tuple[str, ...] = EVERY_PHASE) -> set[str]:
    """What pike lists for the target's type: its plan/apply/modify/destroy actions, the actions of
    the arguments the target sets, and of `tags` (every resource gets the provider's default tags).
    With `phases=("plan",)`, only what planning it reads."""
    path = PIKE / target.kind / f"{target.tf_type}.json"
    assert path.exists(), (
        f"no pike mapping for {target.kind} {target.tf_type}: vendor it (tests/fixtures/pike/README.md)"
    )
    # A type that needs no call at all (aws_iam_policy_document) is an empty list.
    mapping: dict[str, Any] = next(iter(json.loads(path.read_text())), {})
    # An action's service prefix is case-insensitive in IAM; some of pike's files write it upper case.
    mapping = {
        key: {name: [normal(a) for a in listed] for name, listed in value.items()}
        if isinstance(value, dict)
        else [normal(a) for a in value]
        for key, value in mapping.items()
    }
    actions = {a for phase in phases for a in mapping.get(phase, [])}
    if phases != EVERY_PHASE:
        return actions
    actions |= BEYOND_PIKE.get(target.tf_type, set())
    for argument, argument_actions in mapping.get("attributes", {}).items():
        if argument in target.body or (argument == "tags" and target.kind == "resource"):
            actions |= set(argument_actions)
    return actions


def normal(action: str) -> str:
    service, _, verb = action.partition(":")
    return f"{service.lower()}:{verb}"


def targets(stack: Stack) -> Iterator[Target]:
    for kind, section in (("resource", "resource"), ("data", "data")):
        for tf_type, instances in stack.document.get(section, {}).items():
            if tf_type == "terraform_remote_state":
                continue  # not AWS: its reads are the backend's, checked by backend_requests
            for name, body in instances.items():
                yield Target(stack, kind, tf_type, name, body)


def role_arns(target: Target) -> list[str]:
    """The roles the target names (a task definition's, a project's service role...)."""
    text = json.dumps(target.body)
    if target.tf_type == "aws_iam_role_policy":
        text = text.replace(".name}", ".arn}")
    return sorted({target.stack.attribute(f"aws_iam_role.{n}.arn") for n in ROLE_REFERENCE.findall(text)})


def resources_for(target: Target, action: str) -> list[tuple[str, dict[str, ContextValue]]]:
    """The resource(s) an action of the target acts on, with what the call adds to the context."""
    stack, body, tf_type = target.stack, target.body, target.tf_type
    service, verb = action.split(":")
    account, region = stack.account, target.region
    if action == "ec2:GetManagedPrefixListEntries":
        return [(f"arn:aws:ec2:{region}:aws:prefix-list/pl-example", {})]
    if service in UNSCOPED_SERVICES:
        return [("*", {})]
    if service == "iam":
        if verb == "CreateServiceLinkedRole":
            service_name = SERVICE_LINKED[tf_type]
            return [
                (
                    f"arn:aws:iam::{account}:role/aws-service-role/{service_name}/example",
                    {"iam:AWSServiceName": service_name},
                )
            ]
        if tf_type == "aws_iam_policy":
            return [(target.arn(), {})]
        roles = [target.arn()] if tf_type == "aws_iam_role" else role_arns(target)
        if verb == "PassRole":
            return [(role, {"iam:PassedToService": PASSED_TO[tf_type]}) for role in roles]
        if verb in ("CreateRole", "PutRolePolicy", "PutRolePermissionsBoundary"):
            boundary = role_body(stack, roles)["permissions_boundary"]
            return [(role, {"iam:PermissionsBoundary": stack.resolve(boundary)}) for role in roles]
        return [(role, {}) for role in roles]
    if service == "kms":
        if verb in ("CreateKey", "ListAliases"):
            return [("*", {})]
        if tf_type == "aws_kms_alias":
            key = stack.attribute(str(body["target_key_id"]).removeprefix("${").removesuffix(".key_id}") + ".arn")
            return [(f"arn:aws:kms:{region}:{account}:{body['name']}", {}), (key, {})]
        return [(target.arn(), {})]
    if service == "s3":
        bucket = target.arn() if tf_type == "aws_s3_bucket" else f"arn:aws:s3:::{stack.resolve(body['bucket'])}"
        return [(f"{bucket}/index.html" if "Object" in verb else bucket, {})]
    if service == "logs":
        return [(target.arn() if tf_type == "aws_cloudwatch_log_group" else "*", {})]
    if service == "sns":
        if tf_type == "aws_sns_topic_subscription":
            # A subscription's ARN is its topic's and its id; Subscribe itself acts on the topic.
            topic = stack.resolve(body["topic_arn"])
            return [(topic if verb == "Subscribe" else f"{topic}:{EXAMPLE_SUBSCRIPTION_ID}", {})]
        return [(target.arn() if tf_type == "aws_sns_topic" else stack.resolve(body["arn"]), {})]
    if service == "secretsmanager":
        return [(target.arn() if target.kind == "data" else stack.resolve(body["secret_arn"]), {})]
    if service == "ssm":
        parameter = f"arn:aws:ssm:{region}:{account}:parameter{body['name']}"
        return [("*" if verb == "DescribeParameters" else parameter, {})]
    if service == "ecr":
        repository = body["name"] if tf_type == "aws_ecr_repository" else stack.resolve(body["repository"])
        return [(f"arn:aws:ecr:{region}:{account}:repository/{repository}", {})]
    if service in ("codebuild", "codepipeline", "codestar-connections"):
        return [(target.arn(), {})]
    if service == "events":
        rule = body["name"] if tf_type == "aws_cloudwatch_event_rule" else stack.resolve(body["rule"])
        return [(f"arn:aws:events:{region}:{account}:rule/{rule}", {})]
    if service == "codestar-notifications":
        return [(f"arn:aws:codestar-notifications:{region}:{account}:notificationrule/example", {})]
    raise AssertionError(f"{target.address}: no request model for {action}")


def role_body(stack: Stack, arns: list[str]) -> Mapping[str, Any]:
    (role,) = [
        b for n, b in stack.resources("aws_iam_role").items() if stack.attribute(f"aws_iam_role.{n}.arn") in arns
    ]
    return role


def requests(target: Target, action: str, tags: dict[str, str]) -> list[Request]:
    service = action.split(":")[0]
    region = "us-east-1" if service in GLOBAL_SERVICES else target.region
    resource_tags = {f"aws:ResourceTag/{key}": value for key, value in tags.items()}
    found = [
        Request(action, resource, {"aws:RequestedRegion": region, **resource_tags, **extra})
        for resource, extra in resources_for(target, action)
    ]
    if target.tf_type == "aws_kms_key" and action in ("kms:CreateKey", "kms:TagResource"):
        # CreateKey sends the tags: kms:TagResource is authorised before the key exists or has a tag.
        request_tags: dict[str, ContextValue] = {f"aws:RequestTag/{key}": value for key, value in tags.items()}
        found.append(
            Request(action, target.arn(), {"aws:RequestedRegion": region, **request_tags, "aws:TagKeys": sorted(tags)})
        )
    return found


def backend_requests(stack: Stack, writes_state: bool = True) -> list[Request]:
    """What the S3 backend does with the stack's state (and a remote state it reads): the object and its
    lock file, the bucket listed under the stack's key, the DynamoDB lock. A plan (`writes_state=False`)
    reads the object and takes the lock, and writes no state."""
    configs = [stack.document["terraform"]["backend"]["s3"]]
    configs += [r["config"] for r in stack.data("terraform_remote_state").values()]
    found = []
    for index, config in enumerate(configs):
        bucket = f"arn:aws:s3:::{config['bucket']}"
        key = config["key"]
        in_region = {"aws:RequestedRegion": config["region"]}
        found.append(Request("s3:GetObject", f"{bucket}/{key}", in_region))
        if index == 0:
            found += [
                Request(a, f"{bucket}/{k}", in_region)
                for a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
                for k in (key, f"{key}.tflock")
                if writes_state or k.endswith(".tflock") or a == "s3:GetObject"
            ]
            found.append(Request("s3:ListBucket", bucket, {**in_region, "s3:prefix": key.split("/")[0] + "/"}))
            table = f"arn:aws:dynamodb:{config['region']}:{stack.account}:table/{config['dynamodb_table']}"
            found += [
                Request(a, table, in_region) for a in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem")
            ]
    return found


def missing(
    principal: Principal, role: str, stack: Stack, tags: dict[str, str], phases: tuple[str, ...] = EVERY_PHASE
) -> list[str]:
    """Each action pike lists for a target of `stack` that `principal` is refused, unless NOT_NEEDED."""
    problems = []
    for target in targets(stack):
        for action in sorted(pike(target, phases)):
            if any(
                n.role == role and n.tf_type == target.tf_type and action in n.actions and n.where(target)
                for n in NOT_NEEDED
            ):
                continue
            for request in requests(target, action, tags):
                decision = evaluate(request, principal)
                if not decision.allowed:
                    problems.append(f"{target.address}: {action} on {request.resource}: {decision}")
    for request in backend_requests(stack, writes_state=phases == EVERY_PHASE):
        decision = evaluate(request, principal)
        if not decision.allowed:
            problems.append(f"backend: {request.action} on {request.resource}: {decision}")
    return problems


@pytest.fixture(scope="module")
def iam(stacks: dict[str, Document]) -> Stacks:
    return Stacks(stacks)


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", STAGES)
def test_each_stages_deploy_role_may_do_what_terraform_does_with_its_stack(iam: Stacks, stage: str) -> None:
    principal = (
        iam.principal("pipeline", PIPELINE_DEPLOY_ROLE)
        if stage == "beta"
        else iam.principal(f"bootstrap-{stage}", "canvalo-deploy")
    )
    tags = {"application": "canvalo", "stage": stage, "component": "workload", "managed-by": "cdktn"}
    problems = missing(principal, "deploy", iam[stage], tags)
    assert not problems, "\n".join(problems)


@pytest.mark.req("R4.6")
@pytest.mark.parametrize("stage", STAGES)
def test_each_stages_plan_role_may_read_what_terraform_plan_reads(iam: Stacks, stage: str) -> None:
    principal = (
        iam.principal("pipeline", "canvalo-beta-pipeline-plan")
        if stage == "beta"
        else iam.principal(f"bootstrap-{stage}", "canvalo-plan")
    )
    tags = {"application": "canvalo", "stage": stage, "component": "workload", "managed-by": "cdktn"}
    problems = missing(principal, "plan", iam[stage], tags, phases=("plan",))
    assert not problems, "\n".join(problems)


@pytest.mark.req("R4.4")
def test_the_update_role_may_do_what_terraform_does_with_the_pipeline_stack(iam: Stacks) -> None:
    tags = {"application": "canvalo", "stage": "beta", "component": "pipeline", "managed-by": "cdktn"}
    problems = missing(iam.principal("pipeline", UPDATE_ROLE), "update", iam["pipeline"], tags)
    assert not problems, "\n".join(problems)


@pytest.mark.req("R4.4", "R4.5")
def test_the_update_role_may_keep_the_notification_email_subscription(tmp_path: Path) -> None:
    """With `notificationEmail` set, every refresh of the pipeline stack reads the subscription."""
    document = synth_pipeline_stack(tmp_path, fixture_project(notificationEmail="ops@example.com"))
    assert resources(document, "aws_sns_topic_subscription"), "the fixture's pipeline with an email subscribed"
    with_email = Stacks({"pipeline": document})
    tags = {"application": "canvalo", "stage": "beta", "component": "pipeline", "managed-by": "cdktn"}
    problems = missing(with_email.principal("pipeline", UPDATE_ROLE), "update", with_email["pipeline"], tags)
    assert not problems, "\n".join(problems)


@pytest.mark.req("R4.6", "R11.4")
@pytest.mark.parametrize("stage", STAGES)
def test_the_deploy_role_may_set_up_a_key_before_its_tags_count(
    iam: Stacks, stacks: dict[str, Document], stage: str
) -> None:
    """Right after CreateKey the provider enables rotation and reads the key back, and retries none of it
    on AccessDenied, while the key's tags may not count yet for aws:ResourceTag conditions (KMS is
    eventually consistent): those calls must be allowed without them."""
    principal = (
        iam.principal("pipeline", PIPELINE_DEPLOY_ROLE)
        if stage == "beta"
        else iam.principal(f"bootstrap-{stage}", "canvalo-deploy")
    )
    holding = [iam[name] for name in stacks_holding(stacks, "aws_kms_key") if name.startswith(stage)]
    keys = [
        Target(stack, "resource", "aws_kms_key", n, dict(b))
        for stack in holding
        for n, b in stack.resources("aws_kms_key").items()
    ]
    assert keys, f"{stage}: the alarm topic's key"
    problems = []
    for key in keys:
        for action in KEY_CALLS_AFTER_CREATE:
            decision = evaluate(Request(action, key.arn(), {"aws:RequestedRegion": key.region}), principal)
            if not decision.allowed:
                problems.append(f"{key.address}: {action} before its tags count: {decision}")
    assert not problems, "\n".join(problems)


def test_every_exclusion_still_excludes_something_pike_lists(iam: Stacks) -> None:
    """An exclusion whose type, action or resource the stacks no longer have is a stale reason."""
    stacks = [iam[stage] for stage in STAGES]
    for exclusion in NOT_NEEDED:
        scope = [iam["pipeline"]] if exclusion.role == "update" else stacks
        for action in exclusion.actions:
            used = [
                t
                for stack in scope
                for t in targets(stack)
                if t.tf_type == exclusion.tf_type and exclusion.where(t) and action in pike(t)
            ]
            assert used, f"{exclusion.role} {exclusion.tf_type} {action}: excluded, but nothing synthesized needs it"


def test_pike_mappings_are_vendored_unmodified_with_their_source() -> None:
    readme = (PIKE / "README.md").read_text()
    assert "085701b0937c02379ffa7fb990d9218fc803ecbf" in readme and "Apache License 2.0" in readme
    assert (PIKE / "LICENSE").read_text().lstrip().startswith("Apache License")
    for path in sorted(PIKE.glob("*/*.json")):
        mappings = json.loads(path.read_text())
        assert len(mappings) <= 1 and all(
            set(m) <= {"apply", "plan", "modify", "destroy", "attributes"} for m in mappings
        ), path.name
