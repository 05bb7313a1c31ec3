"""`python -m pipelines.approval_check`: an approval counts only when one of the stage's approvers gave it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pipelines.approval_check import EXIT_BAD_INPUT, EXIT_REFUSED, main

ACCOUNT = "111111111111"
PIPELINE = "canvalo-beta-pipeline"
EXECUTION = "0b8e6f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
ROLES = "canvalo-release-approver,AWSReservedSSO_ReleaseApprover_*"
ENVIRONMENT = {"PIPELINE_NAME": PIPELINE, "PIPELINE_EXECUTION_ID": EXECUTION}


class StubbedSession(boto3.session.Session):
    """A session whose STS says who the action is and whose CodePipeline answers with `details`."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")
        self.details = details
        self.stubbers: list[Stubber] = []

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = boto3.session.Session.client(self, service_name, region_name="eu-west-1")  # type: ignore[call-overload]
        stubber = Stubber(client)
        if service_name == "sts":
            arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-beta-pipeline-apply-prod/build"
            stubber.add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": arn, "UserId": "AROA:build"})
        else:
            stubber.add_response(
                "list_action_executions",
                {"actionExecutionDetails": self.details},
                {"pipelineName": PIPELINE, "filter": {"pipelineExecutionId": EXECUTION}},
            )
        stubber.activate()
        self.stubbers.append(stubber)
        return client


def approval(updated_by: str, *, status: str = "Succeeded", minute: int = 0, action: str = "Approve") -> dict[str, Any]:
    return {
        "pipelineExecutionId": EXECUTION,
        "actionExecutionId": f"a-{minute}",
        "stageName": "Prod",
        "actionName": action,
        "status": status,
        "updatedBy": updated_by,
        "lastUpdateTime": datetime(2026, 11, 29, 9, minute, tzinfo=UTC),
    }


def run(details: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    argv = ["--approval", "Prod/Approve", "--approver-roles", ROLES]
    status = main(argv, session=StubbedSession(details), environ=ENVIRONMENT)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.req("R4.3")
@pytest.mark.parametrize(
    "approver",
    [
        f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver/alice",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_ReleaseApprover_0123abcd/bob@example.com",
    ],
)
def test_an_approval_by_an_approvers_session_lets_the_apply_go_on(
    capsys: pytest.CaptureFixture[str], approver: str
) -> None:
    status, out, err = run([approval(approver)], capsys)
    assert (status, err) == (0, "")
    assert approver in out


@pytest.mark.req("R4.3")
@pytest.mark.parametrize(
    ("approver", "words"),
    [
        # Anyone else in the account allowed PutApprovalResult: an administrator, a CI user, a pipeline role.
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/Administrator/mallory", "role Administrator is not one of"),
        (f"arn:aws:iam::{ACCOUNT}:user/ci", "not by a role session of account"),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver-old/eve", "is not one of"),
        # The right role name, in another account.
        ("arn:aws:sts::999999999999:assumed-role/canvalo-release-approver/eve", "not by a role session of account"),
    ],
)
def test_an_approval_by_anyone_else_applies_nothing_and_says_who_may(
    capsys: pytest.CaptureFixture[str], approver: str, words: str
) -> None:
    status, out, err = run([approval(approver)], capsys)
    assert status == EXIT_REFUSED and out == ""
    (line,) = err.splitlines()
    assert line.startswith("error: Prod/Approve was approved by " + approver) and words in line
    assert "canvalo-release-approver, AWSReservedSSO_ReleaseApprover_*" in line


@pytest.mark.req("R4.3")
def test_the_latest_answer_of_a_retried_approval_is_the_one_that_counts(capsys: pytest.CaptureFixture[str]) -> None:
    earlier = approval(f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver/alice", minute=1)
    later = approval(f"arn:aws:sts::{ACCOUNT}:assumed-role/Administrator/mallory", minute=5)
    assert run([earlier, later], capsys)[0] == EXIT_REFUSED
    assert run([later, earlier], capsys)[0] == EXIT_REFUSED, "order of the listing does not matter"


@pytest.mark.req("R4.3")
@pytest.mark.parametrize(
    ("details", "words"),
    [
        ([], "has no execution in pipeline execution"),
        ([approval("x", action="Apply")], "has no execution in pipeline execution"),
        (
            [approval(f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver/a", status="Failed")],
            "not approved",
        ),
    ],
)
def test_no_approval_in_this_execution_is_bad_input(
    capsys: pytest.CaptureFixture[str], details: list[dict[str, Any]], words: str
) -> None:
    status, _, err = run(details, capsys)
    assert status == EXIT_BAD_INPUT and words in err and len(err.splitlines()) == 1


def test_without_the_pipelines_variables_it_names_them(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--approval", "Prod/Approve", "--approver-roles", ROLES], session=StubbedSession([]), environ={})
    assert status == EXIT_BAD_INPUT
    assert "PIPELINE_NAME, PIPELINE_EXECUTION_ID" in capsys.readouterr().err
