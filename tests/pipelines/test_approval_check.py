"""`python -m pipelines.approval_check`: an approval counts only when one of the stage's approvers gave it, or
Review for a plan that needs no person."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from pipelines.approval_check import EXIT_BAD_INPUT, EXIT_REFUSED, main
from pipelines.deploy_frontend import dist_sha256, scan_dist
from pipelines.publish_summary import console_url

ACCOUNT = "111111111111"
PIPELINE = "canvalo-beta-pipeline"
EXECUTION = "0b8e6f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
ROLES = "canvalo-release-approver,AWSReservedSSO_ReleaseApprover_*"
ENVIRONMENT = {"PIPELINE_NAME": PIPELINE, "PIPELINE_EXECUTION_ID": EXECUTION}
REVIEW_ROLE = "canvalo-beta-pipeline-review"
REVIEW = f"arn:aws:sts::{ACCOUNT}:assumed-role/{REVIEW_ROLE}/build"
SUMMARY_BUCKET, SUMMARY_KEY = "canvalo-beta-pipeline-artifacts-111111111111", "plan-summaries/prod/b-1.md"
SUMMARY_URL = console_url(SUMMARY_BUCKET, SUMMARY_KEY, "eu-west-1")
SUMMARY = b"# prod\n\n1 to change.\n"


class StubbedSession(boto3.session.Session):
    """A session whose STS says who the action is and whose CodePipeline answers with `details`."""

    def __init__(self, details: list[dict[str, Any]], published: bytes = SUMMARY) -> None:
        super().__init__(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")
        self.details = details
        # The summary object as S3 holds it when Apply reads it.
        self.published = published
        self.stubbers: list[Stubber] = []

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = boto3.session.Session.client(self, service_name, region_name="eu-west-1")  # type: ignore[call-overload]
        stubber = Stubber(client)
        if service_name == "sts":
            arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-beta-pipeline-apply-prod/build"
            stubber.add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": arn, "UserId": "AROA:build"})
        elif service_name == "s3":
            body = StreamingBody(io.BytesIO(self.published), len(self.published))
            stubber.add_response("get_object", {"Body": body}, {"Bucket": SUMMARY_BUCKET, "Key": SUMMARY_KEY})
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


@pytest.fixture
def planned(tmp_path: Path) -> Path:
    """A Plan artifact of prod whose manifest records no change, and the frontend build it compared."""
    dist = tmp_path / "dist-prod"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>Canvalo</title>")
    write_manifest(tmp_path / "plans", changes=False, dist_digest=dist_sha256(scan_dist(dist)))
    return tmp_path


def write_manifest(plans: Path, *, changes: bool, dist_digest: str, broadens: bool = False) -> None:
    plans.mkdir(exist_ok=True)
    manifest: dict[str, Any] = {"stage": "prod", "broadens": broadens, "changes": changes, "stacks": []}
    manifest["summary_sha256"] = hashlib.sha256(SUMMARY).hexdigest()
    manifest["frontend"] = {"dist_sha256": dist_digest, "changes": False, "detail": "the live release is this build"}
    (plans / "manifest.json").write_text(json.dumps(manifest))


def run(
    details: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    planned: Path,
    manifest_sha256: str | None = None,
    person_approves: str = "changes",
    published: bytes = SUMMARY,
    summary_url: str = SUMMARY_URL,
) -> tuple[int, str, str]:
    plans = planned / "plans"
    digest = manifest_sha256 or hashlib.sha256((plans / "manifest.json").read_bytes()).hexdigest()
    argv = ["--approval", "Prod/Approve", "--approver-roles", ROLES, "--stage", "prod"]
    argv += ["--review-role", REVIEW_ROLE, "--person-approves", person_approves]
    argv += ["--plans", str(plans), "--manifest-sha256", digest, "--dist", str(planned / "dist-prod")]
    argv += ["--summary-url", summary_url]
    status = main(argv, session=StubbedSession(details, published), environ=ENVIRONMENT)
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
    capsys: pytest.CaptureFixture[str], approver: str, planned: Path
) -> None:
    status, out, err = run([approval(approver)], capsys, planned)
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
    capsys: pytest.CaptureFixture[str], approver: str, words: str, planned: Path
) -> None:
    status, out, err = run([approval(approver)], capsys, planned)
    assert status == EXIT_REFUSED and out == ""
    (line,) = err.splitlines()
    assert line.startswith("error: Prod/Approve was approved by " + approver) and words in line
    assert "canvalo-release-approver, AWSReservedSSO_ReleaseApprover_*" in line


@pytest.mark.req("R4.3")
def test_the_latest_answer_of_a_retried_approval_is_the_one_that_counts(
    capsys: pytest.CaptureFixture[str], planned: Path
) -> None:
    earlier = approval(f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver/alice", minute=1)
    later = approval(f"arn:aws:sts::{ACCOUNT}:assumed-role/Administrator/mallory", minute=5)
    assert run([earlier, later], capsys, planned)[0] == EXIT_REFUSED
    assert run([later, earlier], capsys, planned)[0] == EXIT_REFUSED, "order of the listing does not matter"


@pytest.mark.req("R4.3")
def test_a_failed_approval_is_bad_input(capsys: pytest.CaptureFixture[str], planned: Path) -> None:
    failed = approval(f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver/a", status="Failed")
    status, _, err = run([failed], capsys, planned)
    assert status == EXIT_BAD_INPUT and "not approved" in err and len(err.splitlines()) == 1


@pytest.mark.req("R4.3")
@pytest.mark.parametrize("details", [[], [approval("x", action="Apply")]], ids=["nothing ran", "another action ran"])
def test_an_approval_that_did_not_run_applies_nothing(
    capsys: pytest.CaptureFixture[str], planned: Path, details: list[dict[str, Any]]
) -> None:
    status, out, err = run(details, capsys, planned)
    assert status == EXIT_BAD_INPUT and out == ""
    assert "Prod/Approve did not run in this execution: nothing is applied without it" in err


@pytest.mark.req("R4.3")
def test_reviews_approval_lets_a_prod_plan_that_changes_nothing_through(
    capsys: pytest.CaptureFixture[str], planned: Path
) -> None:
    status, out, err = run([approval(REVIEW)], capsys, planned)
    assert (status, err) == (0, "")
    assert "Prod/Approve was approved by Review: the prod plans need no person" in out


@pytest.mark.req("R4.3")
def test_reviews_approval_never_lets_a_prod_change_through(capsys: pytest.CaptureFixture[str], planned: Path) -> None:
    built = dist_sha256(scan_dist(planned / "dist-prod"))
    write_manifest(planned / "plans", changes=True, dist_digest=built)
    status, out, err = run([approval(REVIEW)], capsys, planned)
    assert status == EXIT_REFUSED and out == ""
    assert "was approved by the Review role, yet the plans or the frontend build change something" in err
    # The same plan approved by a person goes on.
    person = f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver/alice"
    assert run([approval(person)], capsys, planned)[0] == 0


@pytest.mark.req("R4.3")
@pytest.mark.parametrize(("broadens", "expected"), [(False, 0), (True, EXIT_REFUSED)])
def test_where_a_person_approves_only_broadening_reviews_approval_lets_any_other_change_through(
    capsys: pytest.CaptureFixture[str], planned: Path, broadens: bool, expected: int
) -> None:
    built = dist_sha256(scan_dist(planned / "dist-prod"))
    write_manifest(planned / "plans", changes=True, dist_digest=built, broadens=broadens)
    status, _, err = run([approval(REVIEW)], capsys, planned, person_approves="broadening")
    assert status == expected
    assert ("the plans broaden what the stage may do" in err) is broadens


@pytest.mark.req("R4.3")
def test_the_review_role_of_another_account_is_anyone(capsys: pytest.CaptureFixture[str], planned: Path) -> None:
    status, _, err = run([approval(f"arn:aws:sts::999999999999:assumed-role/{REVIEW_ROLE}/x")], capsys, planned)
    assert status == EXIT_REFUSED and "not by a role session of account 111111111111" in err


@pytest.mark.req("R4.3")
def test_any_approval_refuses_a_rewritten_manifest(capsys: pytest.CaptureFixture[str], planned: Path) -> None:
    """An artifact writer who flips `changes` to false cannot match the SHA-256 CodePipeline holds."""
    recorded = hashlib.sha256((planned / "plans" / "manifest.json").read_bytes()).hexdigest()
    write_manifest(planned / "plans", changes=False, dist_digest="0" * 64)
    status, _, err = run([approval(REVIEW)], capsys, planned, manifest_sha256=recorded)
    assert status == EXIT_REFUSED and "cannot be read" in err and "not the manifest" in err


@pytest.mark.req("R4.3")
@pytest.mark.parametrize("approver", [REVIEW, f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver/alice"])
def test_any_approval_refuses_another_frontend_build(
    capsys: pytest.CaptureFixture[str], planned: Path, approver: str
) -> None:
    (planned / "dist-prod" / "index.html").write_text("<!doctype html><title>Something else</title>")
    status, _, err = run([approval(approver)], capsys, planned)
    assert status == EXIT_REFUSED and "the frontend build is not the one the plan Prod/Approve showed compared" in err


def test_without_the_pipelines_variables_it_names_them(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--approval", "Prod/Approve", "--approver-roles", ROLES, "--stage", "prod"]
    argv += ["--review-role", REVIEW_ROLE, "--person-approves", "changes"]
    argv += ["--plans", "plans", "--manifest-sha256", "0" * 64, "--dist", "dist", "--summary-url", SUMMARY_URL]
    status = main(argv, session=StubbedSession([]), environ={})
    assert status == EXIT_BAD_INPUT
    assert "PIPELINE_NAME, PIPELINE_EXECUTION_ID" in capsys.readouterr().err


@pytest.mark.req("R4.3")
@pytest.mark.parametrize("approver", [REVIEW, f"arn:aws:sts::{ACCOUNT}:assumed-role/canvalo-release-approver/alice"])
def test_any_approval_refuses_a_summary_rewritten_while_it_waited(
    capsys: pytest.CaptureFixture[str], planned: Path, approver: str
) -> None:
    """Whoever may write the artifact bucket could change what the approver reads: its hash is in the manifest."""
    rewritten = b"# prod\n\nnothing to see here.\n"
    status, _, err = run([approval(approver)], capsys, planned, published=rewritten)
    assert status == EXIT_REFUSED
    assert f"the summary Prod/Approve linked to (s3://{SUMMARY_BUCKET}/{SUMMARY_KEY}" in err
    assert "is not the one Plan wrote" in err


@pytest.mark.req("R4.3")
def test_a_summary_address_that_is_not_a_published_summary_is_bad_input(
    capsys: pytest.CaptureFixture[str], planned: Path
) -> None:
    status, _, err = run([approval(REVIEW)], capsys, planned, summary_url="https://example.com/evil.md")
    assert status == EXIT_BAD_INPUT and "is not the address of a published plan summary" in err
