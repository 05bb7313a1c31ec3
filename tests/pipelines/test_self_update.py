"""`python -m pipelines.self_update` with a fake terraform and botocore's Stubber for CodePipeline and STS (R4.4)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from pipelines.self_update import SOURCE_ACTION, main, role_of
from pipelines.terraform_stage import Terraform
from tests.pipelines.fake_terraform import FakeTerraform, plan_document, synthesized

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient
    from mypy_boto3_sts import STSClient

PIPELINE = "canvalo-beta-pipeline"
EXECUTION = "11111111-2222-3333-4444-555555555555"
NEW_EXECUTION = "99999999-8888-7777-6666-555555555555"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
UPDATE_ROLE = "arn:aws:sts::111111111111:assumed-role/canvalo-beta-pipeline-update-pipeline"
NEW_PROJECT = plan_document(("aws_codebuild_project.lint", "aws_codebuild_project", ["create"]))


def later_drift_check() -> dict[str, Any]:
    """A pipeline change that widens nothing: the drift check's schedule moves an hour."""
    document = plan_document(("aws_cloudwatch_event_rule.drift", "aws_cloudwatch_event_rule", ["update"]))
    change = document["resource_changes"][0]["change"]
    change["before"] = {"schedule_expression": "cron(0 5 * * ? *)"}
    change["after"] = {"schedule_expression": "cron(0 6 * * ? *)"}
    return document


NEW_SCHEDULE = later_drift_check()
ENVIRON = {"PIPELINE_NAME": PIPELINE, "PIPELINE_EXECUTION_ID": EXECUTION}


@dataclass
class Aws:
    codepipeline: CodePipelineClient
    sts: STSClient
    pipeline_stub: Stubber
    sts_stub: Stubber
    # Every AWS call and terraform command, in the order they happened.
    events: list[str] = field(default_factory=list)

    def execution_is(self, trigger_type: str = "Webhook", trigger_detail: str = "push") -> None:
        execution: Any = {
            "pipelineName": PIPELINE,
            "pipelineExecutionId": EXECUTION,
            "status": "InProgress",
            "artifactRevisions": [{"name": SOURCE_ACTION, "revisionId": COMMIT}],
            "trigger": {"triggerType": trigger_type, "triggerDetail": trigger_detail},
        }
        self.pipeline_stub.add_response(
            "get_pipeline_execution",
            {"pipelineExecution": execution},
            {"pipelineName": PIPELINE, "pipelineExecutionId": EXECUTION},
        )
        self.sts_stub.add_response(
            "get_caller_identity",
            {"UserId": "AROA:build", "Account": "111111111111", "Arn": f"{UPDATE_ROLE}/AWSCodeBuild-1234"},
        )

    def restart_is_expected(self) -> None:
        self.pipeline_stub.add_response(
            "start_pipeline_execution",
            {"pipelineExecutionId": NEW_EXECUTION},
            {
                # No sourceRevisions: the branch head, so an older commit is never replayed over newer ones.
                "name": PIPELINE,
                "clientRequestToken": f"self-update-{EXECUTION}",
            },
        )


@pytest.fixture
def aws() -> Iterator[Aws]:
    codepipeline = boto3.client("codepipeline", region_name="eu-west-1")
    sts = boto3.client("sts", region_name="eu-west-1")
    with Stubber(codepipeline) as pipeline_stub, Stubber(sts) as sts_stub:
        env = Aws(codepipeline, sts, pipeline_stub, sts_stub)
        codepipeline.meta.events.register(
            "before-parameter-build.codepipeline", lambda model, **_: env.events.append(model.name)
        )
        yield env


@dataclass
class RecordingTerraform(FakeTerraform):
    events: list[str] = field(default_factory=list)

    def __call__(self, args: Any, cwd: Path, capture: bool) -> Any:
        self.events.append(f"terraform {args[0]}")
        return super().__call__(args, cwd, capture)


def run(aws: Aws, tmp_path: Path, fake: FakeTerraform, environ: dict[str, str] = ENVIRON) -> int:
    cdktf_out = synthesized(tmp_path, {"pipeline": []})
    return main(
        ["--cdktf-out", str(cdktf_out), "--work-dir", str(tmp_path / "work")],
        terraform=Terraform(fake),
        codepipeline=aws.codepipeline,
        sts=aws.sts,
        environ=environ,
    )


@pytest.mark.req("R4.4")
def test_without_changes_the_execution_goes_on_untouched(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTerraform()
    assert run(aws, tmp_path, fake) == 0
    assert fake.commands() == [("pipeline", "init"), ("pipeline", "plan")]
    assert aws.events == [], "no restart, no stop"
    assert "already runs this commit's definition" in capsys.readouterr().out


@pytest.mark.req("R4.4")
def test_changes_are_applied_then_the_branch_head_restarts_and_this_execution_stops(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.execution_is()
    aws.restart_is_expected()
    aws.pipeline_stub.add_response(
        "stop_pipeline_execution",
        {"pipelineExecutionId": EXECUTION},
        {
            "pipelineName": PIPELINE,
            "pipelineExecutionId": EXECUTION,
            "abandon": True,
            "reason": f"the self-update changed the pipeline; execution {NEW_EXECUTION} runs the branch head "
            f"(commit {COMMIT} or newer) on the new definition",
        },
    )
    fake = RecordingTerraform(plans={"pipeline": NEW_SCHEDULE}, events=aws.events)
    assert run(aws, tmp_path, fake) == 0
    assert aws.events == [
        "terraform init",
        "terraform plan",
        "terraform show",
        "GetPipelineExecution",
        "terraform apply",
        "StartPipelineExecution",
        "StopPipelineExecution",
    ]
    assert fake.args_of("pipeline", "apply")[-1] == str((tmp_path / "work" / "pipeline.tfplan").resolve())
    aws.pipeline_stub.assert_no_pending_responses()
    out = capsys.readouterr().out
    assert "| update | `aws_cloudwatch_event_rule.drift` |" in out
    assert f"this execution ({EXECUTION}) is stopped" in out


@pytest.mark.req("R4.4")
def test_when_stopping_fails_the_action_fails_naming_the_new_execution(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.execution_is()
    aws.restart_is_expected()
    aws.pipeline_stub.add_client_error("stop_pipeline_execution", "DuplicatedStopRequestException")
    assert run(aws, tmp_path, FakeTerraform(plans={"pipeline": NEW_SCHEDULE})) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert f"execution {NEW_EXECUTION} runs the branch head (commit {COMMIT} or newer)" in error
    assert "DuplicatedStopRequestException" in error


@pytest.mark.req("R4.4")
@pytest.mark.parametrize(("status", "succeeds"), [("Cancelled", True), ("InProgress", False)])
def test_an_execution_the_update_already_cancelled_needs_no_stop(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str], status: str, succeeds: bool
) -> None:
    """AWS ends the executions in flight when the pipeline changes: if it ended this one before it could stop
    itself, the restart already runs the branch head, and the action succeeds; an execution still running
    that cannot be stopped fails the action, as before."""
    aws.execution_is()
    aws.restart_is_expected()
    aws.pipeline_stub.add_client_error("stop_pipeline_execution", "PipelineExecutionNotStoppableException")
    aws.pipeline_stub.add_response(
        "get_pipeline_execution",
        {"pipelineExecution": {"pipelineName": PIPELINE, "pipelineExecutionId": EXECUTION, "status": status}},
        {"pipelineName": PIPELINE, "pipelineExecutionId": EXECUTION},
    )
    assert run(aws, tmp_path, FakeTerraform(plans={"pipeline": NEW_SCHEDULE})) == (0 if succeeds else 1)
    captured = capsys.readouterr()
    if succeeds:
        assert f"this execution ({EXECUTION}) was already ended by the update (Cancelled)" in captured.out
    else:
        assert "PipelineExecutionNotStoppableException" in captured.err


@pytest.mark.req("R4.4")
def test_a_failed_apply_fails_the_action_and_restarts_nothing(aws: Aws, tmp_path: Path) -> None:
    aws.execution_is()
    fake = FakeTerraform(plans={"pipeline": NEW_SCHEDULE}, failures={("pipeline", "apply"): 1})
    assert run(aws, tmp_path, fake) == 1
    assert aws.events == ["GetPipelineExecution"]


@pytest.mark.req("R4.4")
def test_a_failed_plan_fails_the_action(aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(aws, tmp_path, FakeTerraform(failures={("pipeline", "plan"): 1})) == 1
    assert "terraform plan failed in pipeline (exit status 1)" in capsys.readouterr().err
    assert aws.events == []


@pytest.mark.req("R4.4")
def test_an_execution_the_self_update_started_that_still_plans_changes_fails_instead_of_looping(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.execution_is("StartPipelineExecution", f"{UPDATE_ROLE}/AWSCodeBuild-5678")
    fake = FakeTerraform(plans={"pipeline": NEW_SCHEDULE})
    assert run(aws, tmp_path, fake) == 1
    assert ("pipeline", "apply") not in fake.commands()
    assert "never converges" in capsys.readouterr().err
    assert aws.events == ["GetPipelineExecution"]


def test_a_release_started_by_a_person_is_not_taken_for_a_loop(aws: Aws, tmp_path: Path) -> None:
    aws.execution_is("StartPipelineExecution", "arn:aws:sts::111111111111:assumed-role/Admin/alice")
    aws.restart_is_expected()
    aws.pipeline_stub.add_response("stop_pipeline_execution", {"pipelineExecutionId": EXECUTION})
    assert run(aws, tmp_path, FakeTerraform(plans={"pipeline": NEW_SCHEDULE})) == 0


@pytest.mark.req("R4.4")
def test_a_pipeline_plan_that_destroys_stateful_resources_is_refused(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drops_registry = plan_document(("aws_ecr_repository.backend", "aws_ecr_repository", ["delete"]))
    fake = FakeTerraform(plans={"pipeline": drops_registry})
    assert run(aws, tmp_path, fake) == 1
    assert "destroys stateful pipeline:aws_ecr_repository.backend" in capsys.readouterr().err
    assert ("pipeline", "apply") not in fake.commands()
    assert aws.events == []


def test_without_the_pipeline_variables_it_stops_before_terraform(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTerraform()
    assert run(aws, tmp_path, fake, environ={"PIPELINE_NAME": PIPELINE}) == 2
    assert capsys.readouterr().err == "error: PIPELINE_EXECUTION_ID not set: the UpdatePipeline action passes them\n"
    assert fake.calls == []


def test_roles_compare_without_their_session_names() -> None:
    assert (
        role_of(f"{UPDATE_ROLE}/a")
        == role_of(f"{UPDATE_ROLE}/b")
        == "111111111111:canvalo-beta-pipeline-update-pipeline"
    )
    assert role_of("arn:aws:iam::111111111111:user/alice") == "arn:aws:iam::111111111111:user/alice"


def test_the_source_action_is_the_pipelines() -> None:
    from modules.pipeline import SOURCE_ACTION as PIPELINE_SOURCE_ACTION
    from modules.pipeline import SOURCE_ARTIFACT

    assert SOURCE_ACTION == PIPELINE_SOURCE_ACTION == SOURCE_ARTIFACT


@pytest.mark.req("R4.3", "R4.4")
def test_a_pipeline_change_that_broadens_is_left_to_an_administrator(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new build project would run code with the pipeline's rights: the pipeline may not add it itself."""
    status = run(aws, tmp_path, FakeTerraform(plans={"pipeline": NEW_PROJECT}))
    assert status == 1
    line = capsys.readouterr().err.strip()
    assert "the pipeline plan broadens what the pipeline may do" in line
    assert f"make review-pipeline EXECUTION={EXECUTION}" in line
    assert not [e for e in aws.events if "apply" in e or "start_pipeline_execution" in e], aws.events


@pytest.mark.req("R4.4")
def test_a_pipeline_stack_with_a_provisioner_is_refused_before_terraform_runs(
    aws: Aws, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A provisioner on a new, innocuous resource would run with the update role at apply: not even init."""
    shell = {"resource": {"aws_ssm_parameter": {"p": {"provisioner": [{"local-exec": {"command": "id"}}]}}}}
    cdktf_out = synthesized(tmp_path, {"pipeline": []}, {"pipeline": shell})
    fake = FakeTerraform(plans={"pipeline": NEW_SCHEDULE})
    status = main(
        ["--cdktf-out", str(cdktf_out), "--work-dir", str(tmp_path / "work")],
        terraform=Terraform(fake),
        codepipeline=aws.codepipeline,
        sts=aws.sts,
        environ=ENVIRON,
    )
    assert status == 1
    assert "refusing to run Terraform: 1 policy finding(s) in pipeline" in capsys.readouterr().err
    assert fake.calls == []
