"""`python -m pipelines.review`: a stage's approval answered by Review only when its plan needs no person."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipelines.review import EXIT_BAD_INPUT, Mail, ReviewError, approval_token, ask_a_person, main, review

PIPELINE = "canvalo-beta-pipeline"
EXECUTION = "0b8e6f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
TOKEN = "1a2b3c4d-0000-4000-8000-123456789abc"


def client() -> Any:
    return boto3.client(
        "codepipeline", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def state(*, execution: str = EXECUTION, token: str | None = TOKEN, stage: str = "Prod") -> dict[str, Any]:
    """GetPipelineState as CodePipeline answers it while `stage`'s approval is in progress."""
    latest: dict[str, Any] = {"status": "InProgress", **({"token": token} if token else {})}
    return {
        "pipelineName": PIPELINE,
        "stageStates": [
            {
                "stageName": stage,
                "latestExecution": {"pipelineExecutionId": execution, "status": "InProgress"},
                "actionStates": [
                    {"actionName": "Plan", "latestExecution": {"status": "Succeeded"}},
                    {"actionName": "Approve", "latestExecution": latest},
                ],
            }
        ],
    }


def review_prod(codepipeline: Any, person_approves: str, manifest: dict[str, Any], **options: Any) -> str:
    """Review of this execution's Prod/Approve."""
    return review(
        codepipeline,
        pipeline=PIPELINE,
        execution_id=EXECUTION,
        approval="Prod/Approve",
        person_approves=person_approves,
        manifest=manifest,
        **options,
    )


def approved(summary: str) -> dict[str, Any]:
    return {
        "pipelineName": PIPELINE,
        "stageName": "Prod",
        "actionName": "Approve",
        "result": {"summary": summary, "status": "Approved"},
        "token": TOKEN,
    }


@pytest.mark.req("R4.3")
def test_a_plan_that_changes_nothing_is_approved_once_the_approvals_token_appears() -> None:
    codepipeline = client()
    with Stubber(codepipeline) as stub:
        # CodePipeline hands out the token a moment after the action started.
        stub.add_response("get_pipeline_state", state(token=None), {"name": PIPELINE})
        stub.add_response("get_pipeline_state", state(), {"name": PIPELINE})
        stub.add_response(
            "put_approval_result",
            {"approvedAt": "2026-12-07T12:00:00Z"},
            approved("Review: the plans and the frontend build change nothing"),
        )
        line = review_prod(codepipeline, "changes", {"changes": False, "broadens": False}, sleep=lambda _: None)
        stub.assert_no_pending_responses()
    assert line == "Prod/Approve approved by Review: the plans and the frontend build change nothing"


@pytest.mark.req("R4.3")
@pytest.mark.parametrize(
    ("person_approves", "manifest", "why"),
    [
        ("changes", {"changes": True, "broadens": False}, "this stage asks a person for any change"),
        ("broadening", {"changes": True, "broadens": True}, "the plans broaden what the stage may do"),
        # A manifest that does not say is a person's to read.
        ("changes", {"broadens": False}, "this stage asks a person for any change"),
    ],
)
def test_a_plan_that_needs_a_person_is_left_to_one(person_approves: str, manifest: dict[str, Any], why: str) -> None:
    codepipeline = client()
    with Stubber(codepipeline) as stub:
        line = review_prod(codepipeline, person_approves, manifest)
        stub.assert_no_pending_responses()
    assert line.startswith("Prod/Approve waits for one of the stage's approvers") and why in line


@pytest.mark.req("R4.3")
def test_where_a_person_approves_only_broadening_any_other_change_is_approved() -> None:
    codepipeline = client()
    with Stubber(codepipeline) as stub:
        stub.add_response("get_pipeline_state", state(), {"name": PIPELINE})
        stub.add_response(
            "put_approval_result",
            {"approvedAt": "2026-12-07T12:00:00Z"},
            approved("Review: the plans do not broaden what the stage may do"),
        )
        review_prod(codepipeline, "broadening", {"changes": True, "broadens": False})
        stub.assert_no_pending_responses()


@pytest.mark.req("R4.3")
def test_the_token_of_another_executions_approval_is_never_used() -> None:
    codepipeline = client()
    with Stubber(codepipeline) as stub:
        stub.add_response("get_pipeline_state", state(execution="another"), {"name": PIPELINE})
        with pytest.raises(ReviewError, match="has no approval token after 0 s"):
            approval_token(codepipeline, PIPELINE, EXECUTION, "Prod/Approve", wait_seconds=0, sleep=lambda _: None)


@pytest.mark.req("R4.3")
def test_an_approval_whose_token_never_appears_is_left_to_a_person_without_failing_the_stage() -> None:
    codepipeline = client()
    with Stubber(codepipeline) as stub:
        stub.add_response("get_pipeline_state", state(token=None), {"name": PIPELINE})
        line = review_prod(codepipeline, "changes", {"changes": False, "broadens": False}, wait_seconds=0)
        stub.assert_no_pending_responses()
    assert line.startswith("Prod/Approve waits for one of the stage's approvers: ")
    assert line.endswith("has no approval token after 0 s")


def test_without_the_pipelines_variables_it_names_them(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["--approval", "Prod/Approve", "--person-approves", "changes", "--stage", "prod"]
    argv += ["--plans", str(tmp_path), "--manifest-sha256", "0" * 64]
    assert main(argv, environ={}) == EXIT_BAD_INPUT
    assert "PIPELINE_NAME and PIPELINE_EXECUTION_ID" in capsys.readouterr().err


@pytest.mark.req("R4.3")
def test_a_manifest_that_is_not_the_one_plan_made_approves_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"stage": "prod", "changes": False, "broadens": False}))
    recorded = hashlib.sha256(b"what Plan wrote").hexdigest()
    argv = ["--approval", "Prod/Approve", "--person-approves", "changes", "--stage", "prod"]
    argv += ["--plans", str(tmp_path), "--manifest-sha256", recorded]
    status = main(argv, environ={"PIPELINE_NAME": PIPELINE, "PIPELINE_EXECUTION_ID": EXECUTION})
    (line,) = capsys.readouterr().err.splitlines()
    assert status != 0 and "is not the manifest the Plan action made" in line


def sns_client() -> Any:
    return boto3.client("sns", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing")


TOPIC = "arn:aws:sns:eu-west-1:111111111111:canvalo-beta-pipeline-notifications"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SUMMARY_URL = "https://console.aws.amazon.com/s3/object/bucket?prefix=plan-summaries/prod/b.md"


def mail_to(sns: Any) -> Mail:
    return Mail(
        sns=sns,
        topic_arn=TOPIC,
        pipeline=PIPELINE,
        commit=COMMIT,
        headline="prod: 1 to add, 0 to change, 0 to destroy",
        summary_url=SUMMARY_URL,
    )


@pytest.mark.req("R4.3")
def test_an_approval_that_waits_for_a_person_mails_the_approvers_what_to_read() -> None:
    """The one mail that asks an approver to act (the notification rule no longer mails every approval)."""
    codepipeline, sns = client(), sns_client()
    with Stubber(codepipeline) as pipeline_stub, Stubber(sns) as sns_stub:
        sns_stub.add_response(
            "publish",
            {"MessageId": "m-1"},
            {"TopicArn": TOPIC, "Subject": f"{PIPELINE}: Prod waits for your approval", "Message": ANY},
        )
        lines = review_prod(codepipeline, "changes", {"changes": True, "broadens": False}, mail=mail_to(sns))
        sns_stub.assert_no_pending_responses()
        pipeline_stub.assert_no_pending_responses()
    assert lines.splitlines() == [
        "Prod/Approve waits for one of the stage's approvers: the plans or the frontend build change something, "
        "and this stage asks a person for any change",
        f"mailed the approvers ({TOPIC})",
    ]


@pytest.mark.req("R4.3")
def test_the_mail_names_the_commit_the_plan_and_the_summary() -> None:
    sent: list[dict[str, Any]] = []

    class Recorder:
        def publish(self, **request: Any) -> dict[str, Any]:
            sent.append(request)
            return {"MessageId": "m-1"}

    line = ask_a_person(mail_to(Recorder()), "Prod/Approve", "the plans broaden what the stage may do")
    ((request,),) = [sent]
    assert line == f"mailed the approvers ({TOPIC})"
    assert len(request["Subject"]) <= 100
    for expected in (COMMIT, "prod: 1 to add, 0 to change, 0 to destroy", SUMMARY_URL, "the plans broaden"):
        assert expected in request["Message"]


@pytest.mark.req("R4.3")
def test_an_approval_review_answers_mails_nobody() -> None:
    codepipeline, sns = client(), sns_client()
    with Stubber(codepipeline) as stub, Stubber(sns) as sns_stub:
        stub.add_response("get_pipeline_state", state(), {"name": PIPELINE})
        stub.add_response(
            "put_approval_result",
            {"approvedAt": "2026-12-07T12:00:00Z"},
            approved("Review: the plans and the frontend build change nothing"),
        )
        review_prod(codepipeline, "changes", {"changes": False, "broadens": False}, mail=mail_to(sns))
        stub.assert_no_pending_responses()
        sns_stub.assert_no_pending_responses()  # any publish would have raised: no response was queued


@pytest.mark.req("R4.3")
def test_a_mail_that_cannot_be_sent_is_a_warning_and_the_approval_still_waits() -> None:
    codepipeline, sns = client(), sns_client()
    with Stubber(codepipeline) as stub, Stubber(sns) as sns_stub:
        stub.add_response("get_pipeline_state", state(token=None), {"name": PIPELINE})
        sns_stub.add_client_error("publish", "AuthorizationError", "not authorized to perform SNS:Publish")
        lines = review_prod(
            codepipeline, "changes", {"changes": False, "broadens": False}, mail=mail_to(sns), wait_seconds=0
        )
        sns_stub.assert_no_pending_responses()
    waits, warning = lines.splitlines()
    assert "has no approval token after 0 s" in waits
    assert warning.startswith("warning: could not mail the approvers") and "waits in the console" in warning
