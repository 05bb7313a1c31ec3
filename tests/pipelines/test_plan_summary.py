"""`python -m pipelines.plan_summary` on hand-written plans in Terraform's JSON plan format (R4.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.plan_summary import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    PlanError,
    headline,
    load_plan,
    main,
    render,
)

PLANS = Path(__file__).parent / "plans"


def stderr_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.req("R4.3")
def test_each_action_type_is_counted_under_its_reviewer_name() -> None:
    plan = load_plan("beta-backend", PLANS / "every_action.json")
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
    markdown = render([load_plan("beta-backend", PLANS / "every_action.json")])
    assert "## beta-backend: 1 to create, 1 to update, 2 to replace, 1 to destroy" in markdown
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
    plan = load_plan("beta-network", PLANS / "no_changes.json")
    assert not plan.has_changes
    assert headline([plan]) == "no changes in 1 stack(s)"
    assert "## beta-network: no changes" in render([plan])


@pytest.mark.req("R4.3")
def test_replacing_or_destroying_stateful_resources_is_flagged_and_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main([f"prod-frontend={PLANS / 'destroys_stateful.json'}"], environ={})
    assert status == EXIT_REFUSED
    out = capsys.readouterr()
    assert "**DATA LOSS**: destroy of stateful `aws_s3_bucket.frontend`" in out.out
    assert "**DATA LOSS**: replace of stateful `aws_cloudwatch_log_group.backend`" in out.out
    assert "aws_secretsmanager_secret.backend` (" not in out.out, "an in-place update loses nothing"
    assert "WARNING 2 stateful resource(s) replaced or destroyed, 2 refused" in out.out
    error = out.err.strip()
    assert error.count("\n") == 0
    assert "prod-frontend:aws_s3_bucket.frontend" in error
    assert "--allow-destroy" in error


@pytest.mark.req("R4.3")
def test_a_destroy_named_on_the_command_line_or_in_the_environment_is_allowed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = f"prod-frontend={PLANS / 'destroys_stateful.json'}"
    only_bucket = ["--allow-destroy", "prod-frontend:aws_s3_bucket.frontend"]
    assert main([plan, *only_bucket], environ={}) == EXIT_REFUSED
    assert "prod-frontend:aws_cloudwatch_log_group.backend" in capsys.readouterr().err
    both = {"CANVALO_ALLOW_DESTROY": "aws_cloudwatch_log_group.backend, prod-frontend:aws_s3_bucket.frontend"}
    assert main([plan], environ=both) == 0
    assert main([plan, *only_bucket], environ={"CANVALO_ALLOW_DESTROY": "aws_cloudwatch_log_group.backend"}) == 0
    out = capsys.readouterr()
    assert "DATA LOSS" in out.out, "an allowed destroy is still shown to the reviewer"
    assert out.err == ""


@pytest.mark.req("R4.3")
def test_an_allowance_for_another_stack_does_not_allow_this_one() -> None:
    assert main([f"prod-frontend={PLANS / 'destroys_stateful.json'}"], environ={
        "CANVALO_ALLOW_DESTROY": "gamma-frontend:aws_s3_bucket.frontend,gamma-frontend:aws_cloudwatch_log_group.backend"
    }) == EXIT_REFUSED  # fmt: skip


@pytest.mark.req("R4.3")
def test_iam_changes_that_grant_more_are_flagged_with_the_added_grants() -> None:
    plan = load_plan("beta-backend", PLANS / "iam_changes.json")
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
    status = main(
        [f"beta-backend={PLANS / 'every_action.json'}", f"beta-network={PLANS / 'no_changes.json'}"], environ={}
    )
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith("# Plan: 1 to create, 1 to update, 2 to replace, 1 to destroy in beta-backend\n")
    assert "## beta-backend:" in out and "## beta-network: no changes" in out


def test_the_stack_name_defaults_to_the_plans_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "gamma-network" / "plan.json"
    plan.parent.mkdir()
    plan.write_text((PLANS / "every_action.json").read_text())
    assert main([str(plan)], environ={}) == 0
    assert "## gamma-network: 1 to create" in capsys.readouterr().out


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
    assert main([f"beta-backend={path}"], environ={}) == EXIT_BAD_INPUT
    assert message in stderr_line(capsys)
    assert capsys.readouterr().out == "", "no half summary on bad input"
    with pytest.raises(PlanError):
        load_plan("beta-backend", path)
