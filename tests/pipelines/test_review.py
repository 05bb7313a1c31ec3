"""`python -m pipelines.review`: a stage's approval answered by Review only when its plan needs no person."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pipelines.review import EXIT_BAD_INPUT, ReviewError, approval_token, main, review

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
        line = review(
            codepipeline,
            pipeline=PIPELINE,
            execution_id=EXECUTION,
            approval="Prod/Approve",
            person_approves="changes",
            manifest={"changes": False, "broadens": False},
            sleep=lambda _: None,
        )
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
        line = review(
            codepipeline,
            pipeline=PIPELINE,
            execution_id=EXECUTION,
            approval="Prod/Approve",
            person_approves=person_approves,
            manifest=manifest,
        )
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
        review(
            codepipeline,
            pipeline=PIPELINE,
            execution_id=EXECUTION,
            approval="Prod/Approve",
            person_approves="broadening",
            manifest={"changes": True, "broadens": False},
        )
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
        line = review(
            codepipeline,
            pipeline=PIPELINE,
            execution_id=EXECUTION,
            approval="Prod/Approve",
            person_approves="changes",
            manifest={"changes": False, "broadens": False},
            wait_seconds=0,
        )
        stub.assert_no_pending_responses()
    assert line.endswith("has no approval token after 0 s; the approval waits for one of the stage's approvers")


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
