"""`python -m pipelines.plan_summary` on hand-written plans in Terraform's JSON plan format (R4.3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.plan_summary import (
    BROADENING_TITLE,
    DATA_LOSS,
    DESTROY,
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    NETWORK,
    PERMISSIONS,
    PIPELINE,
    PUBLIC,
    REPLACEABLE_TYPES,
    UNREADABLE,
    Broadening,
    PlanError,
    StackPlan,
    broadenings,
    broadens,
    headline,
    load_plan,
    main,
    parse_plan,
    render,
)

PLANS = Path(__file__).parent / "plans"


def stderr_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.req("R4.3")
def test_each_action_type_is_counted_under_its_reviewer_name() -> None:
    plan = load_plan("beta", PLANS / "every_action.json")
    actions = {change.address: change.action for change in plan.changes}
    assert actions == {
        "aws_ecs_cluster.cluster": "no-op",
        "aws_ecs_service.backend": "create",
        "aws_ecs_task_definition.backend": "replace",  # create-before-destroy
        "aws_lb_target_group.backend": "replace",  # destroy-before-create
        "aws_cloudwatch_metric_alarm.cpu": "update",
        "aws_sns_topic_subscription.old": "destroy",
        "aws_ssm_parameter.legacy": "forget",
    }, "data sources (read) are not changes to review"
    assert plan.counts() == {"create": 1, "update": 1, "replace": 2, "destroy": 1}
    assert plan.output_changes == {"service_name": "create"}


@pytest.mark.req("R4.3")
def test_the_markdown_lists_each_changed_resource_per_stack_and_leaves_out_no_ops() -> None:
    markdown = render([load_plan("beta", PLANS / "every_action.json")])
    assert "## beta: 1 to create, 1 to update, 2 to replace, 1 to destroy" in markdown
    assert "| create | `aws_ecs_service.backend` |" in markdown
    assert "| replace | `aws_lb_target_group.backend` |" in markdown
    assert "| destroy | `aws_sns_topic_subscription.old` |" in markdown
    assert "aws_ecs_cluster.cluster" not in markdown
    assert "data.aws_caller_identity" not in markdown
    assert "`service_name` (create)" in markdown
    assert "DATA LOSS" not in markdown
    assert "IAM grants more" not in markdown


@pytest.mark.req("R4.3")
def test_a_stack_without_changes_says_so() -> None:
    plan = load_plan("beta", PLANS / "no_changes.json")
    assert not plan.has_changes
    assert headline([plan]) == "no changes in 1 stack(s)"
    assert "## beta: no changes" in render([plan])


@pytest.mark.req("R4.3")
def test_replacing_or_destroying_stateful_resources_is_flagged_and_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main([f"prod={PLANS / 'destroys_stateful.json'}"], environ={})
    assert status == EXIT_REFUSED
    out = capsys.readouterr()
    assert "**DATA LOSS**: destroy of stateful `aws_s3_bucket.frontend`" in out.out
    assert "**DATA LOSS**: replace of stateful `aws_cloudwatch_log_group.backend`" in out.out
    assert "aws_secretsmanager_secret.backend` (" not in out.out, "an in-place update loses nothing"
    assert "WARNING 2 stateful resource(s) replaced or destroyed, 2 refused" in out.out
    error = out.err.strip()
    assert error.count("\n") == 0
    assert "prod:aws_s3_bucket.frontend" in error
    assert "--allow-destroy" in error


@pytest.mark.req("R4.3")
def test_a_destroy_named_on_the_command_line_or_in_the_environment_is_allowed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = f"prod={PLANS / 'destroys_stateful.json'}"
    only_bucket = ["--allow-destroy", "prod:aws_s3_bucket.frontend"]
    assert main([plan, *only_bucket], environ={}) == EXIT_REFUSED
    assert "prod:aws_cloudwatch_log_group.backend" in capsys.readouterr().err
    both = {"CANVALO_ALLOW_DESTROY": "aws_cloudwatch_log_group.backend, prod:aws_s3_bucket.frontend"}
    assert main([plan], environ=both) == 0
    assert main([plan, *only_bucket], environ={"CANVALO_ALLOW_DESTROY": "aws_cloudwatch_log_group.backend"}) == 0
    out = capsys.readouterr()
    assert "DATA LOSS" in out.out, "an allowed destroy is still shown to the reviewer"
    assert out.err == ""


@pytest.mark.req("R4.3")
def test_an_allowance_for_another_stack_does_not_allow_this_one() -> None:
    assert main([f"prod={PLANS / 'destroys_stateful.json'}"], environ={
        "CANVALO_ALLOW_DESTROY": "gamma:aws_s3_bucket.frontend,gamma:aws_cloudwatch_log_group.backend"
    }) == EXIT_REFUSED  # fmt: skip


@pytest.mark.req("R4.3")
def test_iam_changes_that_grant_more_are_flagged_with_the_added_grants() -> None:
    plan = load_plan("beta", PLANS / "iam_changes.json")
    widenings = {w.address: w.grants for w in plan.iam_widenings()}
    assert widenings["aws_iam_role_policy.task"] == (
        "Allow s3:PutObject on arn:aws:s3:::canvalo-beta-data/*",
        "no longer denied: Deny s3:DeleteObject on *",
    )
    (trust,) = widenings["aws_iam_role.task"]
    assert trust.startswith("Allow sts:AssumeRole on (no resource) to ")
    assert "ecs-tasks.amazonaws.com" in trust and "when" not in trust, "dropping a condition widens the trust"
    assert widenings["aws_iam_role_policy_attachment.admin"] == (
        "attaches arn:aws:iam::aws:policy/AdministratorAccess",
    )
    assert widenings["aws_iam_policy.new"] == ("policy is known only after apply: review the code that builds it",)
    assert "aws_iam_role_policy.narrowed" not in widenings, "removing an action grants less"
    markdown = render([plan])
    assert "- **IAM grants more**: `aws_iam_role_policy.task`" in markdown
    assert "  - Allow s3:PutObject on arn:aws:s3:::canvalo-beta-data/*" in markdown
    assert "WARNING 4 IAM change(s) grant more" in headline([plan])


@pytest.mark.req("R4.3")
def test_several_stacks_make_one_headline_and_one_section_each(capsys: pytest.CaptureFixture[str]) -> None:
    status = main([f"beta={PLANS / 'every_action.json'}", f"gamma={PLANS / 'no_changes.json'}"], environ={})
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "# Plan: BROADENING: 1 resource(s) need a person's approval; "
        "1 to create, 1 to update, 2 to replace, 1 to destroy in beta\n"
    ), "destroying the email subscription broadens: it is not a type whose destruction loses nothing"
    assert "## beta:" in out and "## gamma: no changes" in out


def test_the_stack_name_defaults_to_the_plans_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "gamma" / "plan.json"
    plan.parent.mkdir()
    plan.write_text((PLANS / "every_action.json").read_text())
    assert main([str(plan)], environ={}) == 0
    assert "## gamma: 1 to create" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "cannot read"),
        ("broken.json", "{not json", "is not JSON"),
        ("not_a_plan.json", '{"resource_changes": []}', "no format_version"),
        (
            "odd_action.json",
            '{"format_version": "1.2", "resource_changes": [{"address": "a.b", "type": "a", "change": {"actions": ["explode"]}}]}',
            "unknown change actions ['explode']",
        ),
        ("no_change.json", '{"format_version": "1.2", "resource_changes": [{"address": "a.b", "type": "a"}]}', "lacks"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert main([f"beta={path}"], environ={}) == EXIT_BAD_INPUT
    assert message in stderr_line(capsys)
    assert capsys.readouterr().out == "", "no half summary on bad input"
    with pytest.raises(PlanError):
        load_plan("beta", path)


# -- broadening: what needs a person's approval -------------------------------------------------------


def resource(
    address: str, actions: list[str], before: Any, after: Any, after_unknown: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One `resource_changes` entry of `terraform show -json`."""
    kind, name = address.split(".")
    change = {"actions": actions, "before": before, "after": after, "after_unknown": after_unknown or {}}
    return {"address": address, "mode": "managed", "type": kind, "name": name, "change": change}


def update(address: str, before: dict[str, Any], after: dict[str, Any], **unknown: Any) -> dict[str, Any]:
    return resource(address, ["update"], before, after, unknown)


def create(address: str, after: dict[str, Any], **unknown: Any) -> dict[str, Any]:
    return resource(address, ["create"], None, after, unknown)


def stack_plan(*entries: dict[str, Any], stack: str = "prod") -> StackPlan:
    return parse_plan(stack, {"format_version": "1.2", "resource_changes": list(entries)}, "test plan")


def findings(*entries: dict[str, Any]) -> list[tuple[str, str]]:
    return [(b.reason, b.detail) for b in broadenings(stack_plan(*entries))]


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


CLOUDFRONT_READS = allow(
    "s3:GetObject",
    "arn:aws:s3:::site/*",
    Principal={"Service": "cloudfront.amazonaws.com"},
    Condition={"StringEquals": {"AWS:SourceArn": "arn:aws:cloudfront::333333333333:distribution/E1"}},
)
OTHER_ACCOUNT = "arn:aws:iam::999999999999:root"
OWN_ACCOUNT = "arn:aws:iam::333333333333:root"
BOUNDARY = "arn:aws:iam::333333333333:policy/canvalo-workload-boundary"


def pipeline(*stages: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"name": "canvalo", "stage": [{"name": name, "action": actions} for name, actions in stages]}


def action(name: str, category: str, run_order: int = 1, **configuration: str) -> dict[str, Any]:
    return {"name": name, "category": category, "run_order": run_order, "configuration": configuration}


SOURCE = action(
    "Source", "Source", BranchName="main", ConnectionArn="arn:aws:codeconnections:x", FullRepositoryId="canvalo/canvalo"
)
APPROVE = action("Approve", "Approval")
DEPLOY = action("Deploy", "Build", 2, ProjectName="canvalo-deploy", EnvironmentVariables='[{"name":"STAGE"}]')
PIPELINE_BEFORE = pipeline(("Source", [SOURCE]), ("Prod", [APPROVE, DEPLOY]))
WINDOW = {
    "before_entry": [
        {
            "condition": [
                {
                    "result": "FAIL",
                    "rule": [{"name": "DeploymentWindow", "configuration": {"Cron": "* * 8-16 ? * MON-FRI *"}}],
                }
            ]
        }
    ]
}


def codebuild(
    buildspec: str = "pipelines/buildspecs/deploy.yml", variables: tuple[str, ...] = ("STAGE",), **more: Any
) -> dict[str, Any]:
    return {
        "name": "canvalo-deploy",
        "service_role": "arn:aws:iam::111111111111:role/canvalo-deploy",
        "source": [{"type": "CODEPIPELINE", "buildspec": buildspec}],
        "environment": [
            {"image": "aws/codebuild/standard:7.0", "environment_variable": [{"name": v} for v in variables]}
        ],
        **more,
    }


def both_ways(address: str, before: dict[str, Any], after: dict[str, Any], reason: str, detail: str, id: str) -> Any:
    """A case whose twin is the same update undone: what widens one way narrows the other."""
    return pytest.param(update(address, before, after), reason, detail, update(address, after, before), id=id)


# (what broadens, its reason, part of its detail, a narrowing or neutral twin that must not be flagged)
CASES = [
    # permissions: policy documents of every kind, trust, boundary, attachments, credentials
    pytest.param(
        update(
            "aws_s3_bucket_policy.site",
            {"policy": policy(CLOUDFRONT_READS)},
            {"policy": policy(CLOUDFRONT_READS, allow("s3:GetObject", "arn:aws:s3:::site/*", Principal="*"))},
        ),
        PUBLIC,
        'Allow s3:GetObject on arn:aws:s3:::site/* to "*" (anyone)',
        update(
            "aws_s3_bucket_policy.site",
            {"policy": policy(CLOUDFRONT_READS)},
            {"policy": json.dumps(json.loads(policy(CLOUDFRONT_READS)), indent=2)},
        ),
        id="bucket-policy-principal-star",
    ),
    pytest.param(
        update(
            "aws_sns_topic.alarms",
            {"name": "alarms", "policy": policy()},
            {"name": "alarms", "policy": policy(allow("sns:Publish", Principal={"AWS": "*"}))},
        ),
        PUBLIC,
        'to {"AWS": "*"} (anyone)',
        update(
            "aws_sns_topic.alarms",
            {"display_name": "a", "policy": policy(allow("sns:Publish", Principal={"AWS": OWN_ACCOUNT}))},
            {"display_name": "b", "policy": policy(allow("sns:Publish", Principal={"AWS": OWN_ACCOUNT}))},
        ),
        id="topic-policy-aws-star",
    ),
    both_ways(
        "aws_sqs_queue_policy.jobs",
        {"policy": policy(allow("sqs:ReceiveMessage", Principal={"AWS": OWN_ACCOUNT}))},
        {"policy": policy(allow(["sqs:ReceiveMessage", "sqs:SendMessage"], Principal={"AWS": OWN_ACCOUNT}))},
        PERMISSIONS,
        "Allow sqs:SendMessage on *",
        id="queue-policy-added-action",
    ),
    both_ways(
        "aws_secretsmanager_secret_policy.backend",
        {"policy": policy(allow("secretsmanager:GetSecretValue", Principal={"AWS": OWN_ACCOUNT}))},
        {"policy": policy(allow("secretsmanager:GetSecretValue", Principal={"AWS": [OWN_ACCOUNT, OTHER_ACCOUNT]}))},
        PERMISSIONS,
        OTHER_ACCOUNT,
        id="secret-policy-added-principal",
    ),
    both_ways(
        "aws_kms_key.artifacts",
        {"policy": policy(allow("kms:Encrypt", Principal={"AWS": OWN_ACCOUNT}))},
        {"policy": policy(allow(["kms:Encrypt", "kms:Decrypt"], Principal={"AWS": OWN_ACCOUNT}))},
        PERMISSIONS,
        "Allow kms:Decrypt",
        id="key-policy-added-action",
    ),
    both_ways(
        "aws_sqs_queue_policy.jobs",
        {"policy": policy()},
        {"policy": policy(allow("sqs:SendMessage", Principal="*"))},
        PUBLIC,
        "(anyone)",
        id="queue-policy-principal-star",
    ),
    pytest.param(
        update(
            "aws_future_vault.archive",
            {"name": "a", "policy": policy()},
            {"name": "a", "policy": policy(allow("future:Read", Principal={"AWS": OTHER_ACCOUNT}))},
        ),
        PERMISSIONS,
        "Allow future:Read",
        update(
            "aws_future_vault.archive",
            {"name": "a", "policy": policy(allow("future:Read", Principal={"AWS": OTHER_ACCOUNT}))},
            {"name": "b", "policy": policy(allow("future:Read", Principal={"AWS": OTHER_ACCOUNT}))},
        ),
        id="unknown-type-policy-attribute",
    ),
    both_ways(
        "aws_iam_role.deploy",
        {"assume_role_policy": policy(allow("sts:AssumeRole", Principal={"AWS": OWN_ACCOUNT}))},
        {"assume_role_policy": policy(allow("sts:AssumeRole", Principal={"AWS": [OWN_ACCOUNT, OTHER_ACCOUNT]}))},
        PERMISSIONS,
        f'Allow sts:AssumeRole on * to {{"AWS": "{OTHER_ACCOUNT}"}}',
        id="trust-added-principal",
    ),
    pytest.param(
        update(
            "aws_s3_bucket_policy.site",
            {"policy": policy()},
            {"policy": policy(allow("s3:GetObject", NotPrincipal={"AWS": OTHER_ACCOUNT}))},
        ),
        PUBLIC,
        "to all but",
        update(
            "aws_s3_bucket_policy.site",
            {"policy": policy()},
            {
                "policy": policy(
                    {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "NotPrincipal": {"AWS": OWN_ACCOUNT}}
                )
            },
        ),
        id="allow-with-not-principal",
    ),
    both_ways(
        "aws_iam_role.task",
        {"name": "task", "permissions_boundary": BOUNDARY},
        {"name": "task", "permissions_boundary": ""},
        PERMISSIONS,
        f"permissions boundary {BOUNDARY} removed",
        id="boundary-removed",
    ),
    pytest.param(
        update(
            "aws_iam_role.task",
            {"managed_policy_arns": []},
            {"managed_policy_arns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
        ),
        PERMISSIONS,
        "attaches arn:aws:iam::aws:policy/AdministratorAccess",
        update(
            "aws_iam_role.task",
            {"managed_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]},
            {"managed_policy_arns": []},
        ),
        id="managed-policy-arns-added",
    ),
    both_ways(
        "aws_iam_policy_attachment.read",
        {"policy_arn": "arn:p", "roles": ["task"]},
        {"policy_arn": "arn:p", "roles": ["task", "deploy"]},
        PERMISSIONS,
        "attaches arn:p",
        id="policy-attachment-added-role",
    ),
    both_ways(
        "aws_iam_user_group_membership.ops",
        {"user": "ops", "groups": ["readers"]},
        {"user": "ops", "groups": ["readers", "admins"]},
        PERMISSIONS,
        "group membership adds admins",
        id="group-membership-added",
    ),
    pytest.param(
        create("aws_iam_access_key.ci", {"user": "ci"}, secret=True),
        PERMISSIONS,
        "creates a credential",
        update("aws_iam_access_key.ci", {"user": "ci", "status": "Active"}, {"user": "ci", "status": "Inactive"}),
        id="new-access-key",
    ),
    # network exposure
    pytest.param(
        create(
            "aws_vpc_security_group_ingress_rule.ssh",
            {"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_ipv4": "0.0.0.0/0"},
        ),
        NETWORK,
        "tcp 22-22 from 0.0.0.0/0",
        create(
            "aws_vpc_security_group_ingress_rule.ssh",
            {"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_ipv4": "10.10.0.0/16"},
        ),
        id="ingress-rule-any-ipv4",
    ),
    pytest.param(
        create(
            "aws_security_group_rule.https",
            {"type": "ingress", "protocol": "tcp", "from_port": 443, "to_port": 443, "ipv6_cidr_blocks": ["::/0"]},
        ),
        NETWORK,
        "from ::/0",
        create(
            "aws_security_group_rule.https",
            {"type": "egress", "protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]},
        ),
        id="security-group-rule-any-ipv6",
    ),
    pytest.param(
        update(
            "aws_security_group.alb",
            {"ingress": [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["10.0.0.0/8"]}]},
            {
                "ingress": [
                    {"protocol": "tcp", "from_port": 0, "to_port": 65535, "cidr_blocks": ["0.0.0.0/1", "128.0.0.0/1"]}
                ]
            },
        ),
        NETWORK,
        "tcp 0-65535 from 0.0.0.0/1",
        update(
            "aws_security_group.alb",
            {"ingress": [{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": ["0.0.0.0/0"]}]},
            {"ingress": []},
        ),
        id="security-group-inline-ingress-halves-of-the-internet",
    ),
    pytest.param(
        create(
            "aws_vpc_security_group_ingress_rule.app",
            {"ip_protocol": "tcp", "from_port": 8000, "to_port": 8000},
            cidr_ipv4=True,
        ),
        NETWORK,
        "known only after apply",
        create(
            "aws_vpc_security_group_ingress_rule.app",
            {"ip_protocol": "tcp", "from_port": 8000, "to_port": 8000},
            referenced_security_group_id=True,
        ),
        id="ingress-source-unknown",
    ),
    both_ways(
        "aws_s3_bucket_public_access_block.site",
        dict.fromkeys(
            ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"), True
        ),
        {
            "block_public_acls": True,
            "block_public_policy": False,
            "ignore_public_acls": True,
            "restrict_public_buckets": True,
        },
        PUBLIC,
        "block_public_policy was true, now false",
        id="public-access-block-off",
    ),
    pytest.param(
        create("aws_s3_bucket_public_access_block.site", {"bucket": "site", "block_public_acls": True}),
        PUBLIC,
        "restrict_public_buckets now false",
        create(
            "aws_s3_bucket_public_access_block.site",
            {
                "bucket": "site",
                **dict.fromkeys(
                    ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"), True
                ),
            },
        ),
        id="public-access-block-created-with-defaults",
    ),
    both_ways(
        "aws_db_instance.main",
        {"publicly_accessible": False},
        {"publicly_accessible": True},
        PUBLIC,
        "publicly_accessible was false, now true",
        id="publicly-accessible",
    ),
    pytest.param(
        create("aws_lb.admin", {"name": "admin", "load_balancer_type": "application"}),
        NETWORK,
        "internal now false",
        create("aws_lb.admin", {"name": "admin", "internal": True}),
        id="load-balancer-internet-facing",
    ),
    both_ways(
        "aws_s3_bucket_acl.site",
        {"acl": "private"},
        {"acl": "public-read"},
        PUBLIC,
        'acl was "private", now "public-read"',
        id="public-acl",
    ),
    # data-loss preparation
    both_ways(
        "aws_s3_bucket.data",
        {"force_destroy": False},
        {"force_destroy": True},
        DATA_LOSS,
        "force_destroy was false, now true",
        id="force-destroy",
    ),
    pytest.param(
        update("aws_ecr_repository.backend", {"force_delete": False}, {"force_delete": True}),
        DATA_LOSS,
        "force_delete",
        create("aws_ecr_repository.backend", {"name": "canvalo", "force_delete": True}),
        id="force-delete-but-not-on-create",
    ),
    both_ways(
        "aws_s3_bucket_versioning.data",
        {"versioning_configuration": [{"status": "Enabled"}]},
        {"versioning_configuration": [{"status": "Suspended"}]},
        DATA_LOSS,
        'versioning_configuration.0.status was "Enabled", now "Suspended"',
        id="versioning-suspended",
    ),
    both_ways(
        "aws_db_instance.main",
        {"deletion_protection": True},
        {"deletion_protection": False},
        DATA_LOSS,
        "deletion_protection was true, now false",
        id="deletion-protection-off",
    ),
    both_ways(
        "aws_dynamodb_table.items",
        {"deletion_protection_enabled": True},
        {"deletion_protection_enabled": False},
        DATA_LOSS,
        "deletion_protection_enabled",
        id="table-deletion-protection-off",
    ),
    both_ways(
        "aws_lb.backend",
        {"internal": False, "enable_deletion_protection": True},
        {"internal": False, "enable_deletion_protection": False},
        DATA_LOSS,
        "enable_deletion_protection",
        id="load-balancer-deletion-protection-off",
    ),
    both_ways(
        "aws_secretsmanager_secret.backend",
        {"recovery_window_in_days": 30},
        {"recovery_window_in_days": 0},
        DATA_LOSS,
        "recovery_window_in_days was 30, now 0",
        id="no-recovery-window",
    ),
    both_ways(
        "aws_db_instance.main",
        {"skip_final_snapshot": False},
        {"skip_final_snapshot": True},
        DATA_LOSS,
        "skip_final_snapshot",
        id="skip-final-snapshot",
    ),
    both_ways(
        "aws_cloudwatch_log_group.backend",
        {"retention_in_days": 365},
        {"retention_in_days": 7},
        DATA_LOSS,
        "retention_in_days was 365, now 7",
        id="shorter-retention",
    ),
    both_ways(
        "aws_dynamodb_table.items",
        {"point_in_time_recovery": [{"enabled": True}]},
        {"point_in_time_recovery": [{"enabled": False}]},
        DATA_LOSS,
        "point_in_time_recovery.0.enabled",
        id="point-in-time-recovery-off",
    ),
    # the pipeline's own gates
    pytest.param(
        update("aws_codepipeline.main", PIPELINE_BEFORE, pipeline(("Source", [SOURCE]), ("Prod", [DEPLOY]))),
        PIPELINE,
        "approval action Prod/Approve removed",
        update(
            "aws_codepipeline.main",
            PIPELINE_BEFORE,
            pipeline(
                ("Source", [SOURCE]),
                (
                    "Prod",
                    [
                        APPROVE,
                        {**DEPLOY, "configuration": {"ProjectName": "canvalo-deploy", "EnvironmentVariables": "[]"}},
                    ],
                ),
            ),
        ),
        id="approval-removed",
    ),
    pytest.param(
        update(
            "aws_codepipeline.main",
            PIPELINE_BEFORE,
            pipeline(("Source", [SOURCE]), ("Prod", [APPROVE, {**DEPLOY, "run_order": 1}])),
        ),
        PIPELINE,
        "reordered (now Source > Prod)",
        update(
            "aws_codepipeline.main",
            {**PIPELINE_BEFORE, "variable": [{"name": "DEFERRED", "default_value": "defer"}]},
            {**PIPELINE_BEFORE, "variable": [{"name": "DEFERRED", "default_value": "approved"}]},
        ),
        id="deploy-beside-its-approval",
    ),
    pytest.param(
        update(
            "aws_codepipeline.main",
            PIPELINE_BEFORE,
            pipeline(
                ("Source", [{**SOURCE, "configuration": {**SOURCE["configuration"], "BranchName": "attacker"}}]),
                ("Prod", [APPROVE, DEPLOY]),
            ),
        ),
        PIPELINE,
        "source action Source/Source changed: BranchName",
        update("aws_codepipeline.main", {**PIPELINE_BEFORE, "tags": {}}, {**PIPELINE_BEFORE, "tags": {"team": "web"}}),
        id="source-branch-changed",
    ),
    pytest.param(
        # Prod's window removed: a change may then be applied at any hour.
        update(
            "aws_codepipeline.main",
            {**PIPELINE_BEFORE, "stage": [PIPELINE_BEFORE["stage"][0], {**PIPELINE_BEFORE["stage"][1], **WINDOW}]},
            PIPELINE_BEFORE,
        ),
        PIPELINE,
        "entry condition of stage Prod changed",
        update(
            "aws_codepipeline.main",
            {**PIPELINE_BEFORE, "stage": [PIPELINE_BEFORE["stage"][0], {**PIPELINE_BEFORE["stage"][1], **WINDOW}]},
            {**PIPELINE_BEFORE, "stage": [PIPELINE_BEFORE["stage"][0], {**PIPELINE_BEFORE["stage"][1], **WINDOW}]},
        ),
        id="entry-condition-changed",
    ),
    pytest.param(
        update(
            "aws_codebuild_project.deploy",
            codebuild(),
            codebuild(buildspec="version: 0.2\nphases: {build: {commands: [curl evil]}}"),
        ),
        PIPELINE,
        "source changed: buildspec",
        # Every change to a build project is an administrator's now (the next test): the twin changes nothing.
        update("aws_codebuild_project.deploy", codebuild(build_timeout=60), codebuild(build_timeout=60)),
        id="buildspec-changed",
    ),
    pytest.param(
        update("aws_codebuild_project.deploy", codebuild(), codebuild(variables=("STAGE", "CANVALO_ALLOW_DESTROY"))),
        PIPELINE,
        "environment changed: environment_variable",
        update("aws_codebuild_project.deploy", codebuild(description="a"), codebuild(description="a")),
        id="build-environment-changed",
    ),
    # the registry every stage pulls from: which images stay is an administrator's (its policy denies the rest)
    pytest.param(
        update(
            "aws_ecr_lifecycle_policy.lifecycle",
            {"repository": "canvalo-backend", "policy": '{"rules":[]}'},
            {"repository": "canvalo-backend", "policy": '{"rules":[{"rulePriority":1}]}'},
        ),
        PIPELINE,
        "update of the registry's aws_ecr_lifecycle_policy",
        # Terraform plans no action for an unchanged lifecycle.
        resource("aws_ecr_lifecycle_policy.lifecycle", ["no-op"], {"policy": "{}"}, {"policy": "{}"}),
        id="registry-lifecycle-changed",
    ),
    pytest.param(
        update(
            "aws_ecr_repository.repository",
            {"name": "canvalo-backend", "image_tag_mutability": "IMMUTABLE", "force_delete": False},
            {"name": "canvalo-backend", "image_tag_mutability": "MUTABLE", "force_delete": False},
        ),
        PIPELINE,
        "registry image_tag_mutability changed",
        update(
            "aws_ecr_repository.repository",
            {"name": "canvalo-backend", "image_tag_mutability": "IMMUTABLE", "tags": {}},
            {"name": "canvalo-backend", "image_tag_mutability": "IMMUTABLE", "tags": {"team": "web"}},
        ),
        id="registry-tags-made-mutable",
    ),
]


@pytest.mark.req("R4.4", "R4.6")
@pytest.mark.parametrize(
    ("before", "after"),
    [
        (codebuild(build_timeout=60), codebuild(build_timeout=90)),
        (codebuild(description="a"), codebuild(description="b")),
    ],
    ids=["timeout", "description"],
)
def test_any_change_to_a_build_project_is_an_administrators(before: dict[str, Any], after: dict[str, Any]) -> None:
    """No pipeline role may write a build project or pass its role (it would run as that role), so even a
    timeout stops the self-update for an administrator."""
    found = findings(update("aws_codebuild_project.deploy", before, after))
    assert [(r, d) for r, d in found if r == PIPELINE and "an administrator applies it" in d], found


@pytest.mark.parametrize(("broadening", "reason", "detail", "twin"), CASES)
def test_each_broadening_is_found_and_its_narrowing_or_neutral_twin_is_not(
    broadening: dict[str, Any], reason: str, detail: str, twin: dict[str, Any]
) -> None:
    found = findings(broadening)
    assert any(r == reason and detail in d for r, d in found), found
    assert findings(twin) == []


# Types whose destroy or replace loses data or protection: never on the safe list.
NEVER_REPLACEABLE = [
    "aws_secretsmanager_secret",
    "aws_secretsmanager_secret_version",
    "aws_ssm_parameter",
    "aws_sqs_queue",
    "aws_sns_topic",
    "aws_s3_bucket",
    "aws_dynamodb_table",
    "aws_cloudwatch_log_group",
    "aws_kms_key",
    "aws_ecr_repository",
    "aws_route53_zone",
    "aws_iam_role_policy_attachment",
    "aws_s3_bucket_public_access_block",
    "a_provider_nobody_reviewed_thing",
]


@pytest.mark.parametrize("kind", NEVER_REPLACEABLE)
@pytest.mark.parametrize(
    "actions", [["delete"], ["delete", "create"], ["create", "delete"]], ids=["destroy", "replace", "replace-cbd"]
)
def test_destroying_or_replacing_a_type_off_the_safe_list_broadens(kind: str, actions: list[str]) -> None:
    assert kind not in REPLACEABLE_TYPES
    after = None if actions == ["delete"] else {"name": "x"}
    (first, *_) = findings(resource(f"{kind}.x", actions, {"name": "x"}, after))
    assert first[0] == DESTROY
    assert f"of {kind}, not a type whose replacement" in first[1]


@pytest.mark.parametrize("kind", sorted(REPLACEABLE_TYPES))
def test_destroying_or_replacing_a_type_on_the_safe_list_does_not(kind: str) -> None:
    assert findings(resource(f"{kind}.x", ["delete"], {"name": "x"}, None)) == []
    assert findings(resource(f"{kind}.x", ["delete", "create"], {"name": "x"}, {"name": "y"})) == []


def test_a_destroyed_policy_that_denied_something_grants_more_and_forgetting_a_resource_does_not() -> None:
    denies = {"role": "task", "policy": policy({"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"})}
    found = findings(resource("aws_iam_role_policy.guard", ["delete"], denies, None))
    assert (PERMISSIONS, "no longer denied: Deny s3:DeleteObject on *") in found
    assert findings(resource("aws_iam_role_policy.guard", ["forget"], denies, None)) == [], "forget leaves it in place"


def test_an_update_without_before_is_judged_as_if_everything_it_sets_were_new() -> None:
    found = findings(
        resource("aws_s3_bucket_policy.site", ["update"], None, {"policy": policy(allow("s3:*", Principal="*"))})
    )
    assert found[0][0] == UNREADABLE
    assert any(reason == PUBLIC for reason, _ in found)
    assert findings(update("aws_s3_bucket_policy.site", {"policy": policy()}, {"policy": policy()})) == []


@pytest.mark.req("R4.3")
def test_an_image_tag_only_release_and_a_plan_without_changes_do_not_broaden() -> None:
    release = load_plan("prod", PLANS / "image_tag_only.json")
    assert release.counts() == {"create": 0, "update": 1, "replace": 1, "destroy": 0}
    unchanged = load_plan("gamma", PLANS / "no_changes.json")
    assert broadenings(release) == [] and broadenings(unchanged) == []
    assert not broadens([release, unchanged])
    assert "BROADENING" not in headline([release, unchanged])
    assert BROADENING_TITLE not in render([release, unchanged])


@pytest.mark.req("R4.3")
def test_the_approver_sees_each_broadening_first_and_in_the_headline() -> None:
    opened = stack_plan(
        update(
            "aws_s3_bucket_policy.site",
            {"policy": policy(CLOUDFRONT_READS)},
            {"policy": policy(CLOUDFRONT_READS, allow("s3:GetObject", "arn:aws:s3:::site/*", Principal="*"))},
        ),
        create(
            "aws_vpc_security_group_ingress_rule.ssh",
            {"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_ipv4": "0.0.0.0/0"},
        ),
        stack="prod",
    )
    release = load_plan("gamma", PLANS / "image_tag_only.json")
    assert broadens([release, opened])
    assert broadenings(opened)[0] == Broadening(
        "aws_s3_bucket_policy.site",
        "aws_s3_bucket_policy",
        PUBLIC,
        'Allow s3:GetObject on arn:aws:s3:::site/* to "*" (anyone)',
    )
    line = headline([release, opened])
    assert line.startswith("BROADENING: 2 resource(s) need a person's approval; 1 to create, 2 to update"), line
    assert line.endswith("; WARNING 1 IAM change(s) grant more")
    markdown = render([release, opened])
    assert markdown.index(BROADENING_TITLE) < markdown.index("## gamma")
    assert (
        "- `prod`: `aws_vpc_security_group_ingress_rule.ssh` (aws_vpc_security_group_ingress_rule): "
        "**network**: ingress open to the internet: tcp 22-22 from 0.0.0.0/0" in markdown
    )
    assert "- **IAM grants more**: `aws_s3_bucket_policy.site`" in markdown, "the IAM lines stay"


@pytest.mark.req("R4.3")
def test_destroying_stateful_resources_broadens_besides_being_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([f"prod={PLANS / 'destroys_stateful.json'}"], environ={}) == EXIT_REFUSED
    out = capsys.readouterr().out
    assert "**DATA LOSS**: destroy of stateful `aws_s3_bucket.frontend`" in out
    assert (
        "**destroy**: destroy of aws_s3_bucket, not a type whose replacement is reviewed as losing nothing: its data goes with it"
        in out
    )
    assert out.startswith("# Plan: BROADENING: 2 resource(s)"), "the secret's description update broadens nothing"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"actions": "update", "before": {}, "after": {}}, "unknown change actions"),
        ({"actions": ["create", "forget"], "before": None, "after": {}}, "unknown change actions"),
        ({"actions": ["delete", "delete"], "before": {}, "after": None}, "unknown change actions"),
        ({"actions": ["update"], "before": "x", "after": {}}, "`before` of a.b is str, not an object"),
        ({"actions": ["update"], "before": {}, "after": [1]}, "`after` of a.b is list, not an object"),
        ({"actions": ["create"], "before": None, "after": None}, "the create of a.b has no `after`"),
        ({"actions": ["update"], "after": {}}, "lacks 'before'"),
        ({"actions": ["update"], "before": {}, "after": {}, "after_unknown": "id"}, "`after_unknown` of a.b"),
    ],
    ids=[
        "actions-not-a-list",
        "undocumented-pair",
        "delete-twice",
        "before-text",
        "after-list",
        "create-without-after",
        "no-before",
        "after-unknown-text",
    ],
)
def test_a_change_that_cannot_be_read_fails_closed_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "plan.json"
    readable = {"address": "c.d", "type": "c", "change": {"actions": ["delete"], "before": {}, "after": None}}
    path.write_text(json.dumps({"format_version": "1.2", "resource_changes": [readable]}))
    assert main([f"beta={path}"], environ={}) == 0, "a destroy's null `after` is how Terraform writes it"
    capsys.readouterr()
    path.write_text(
        json.dumps(
            {"format_version": "1.2", "resource_changes": [readable, {"address": "a.b", "type": "a", "change": change}]}
        )
    )
    assert main([f"beta={path}"], environ={}) == EXIT_BAD_INPUT
    assert message in stderr_line(capsys)
    assert capsys.readouterr().out == "", "no half summary on bad input"
