"""`make review-pipeline`: an administrator reviews and applies a refused pipeline change from the Build
artifact's JSON, with their own toolkit, never running the commit's code (issue 19 item 7, R4.4)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipelines.self_update import SOURCE_ACTION
from pipelines.terraform_stage import StageError, Terraform
from tests.pipelines.fake_terraform import FakeTerraform, plan_document
from tools.review_pipeline import ReviewError, review_pipeline

PIPELINE = "canvalo-beta-pipeline"
EXECUTION = "11111111-2222-3333-4444-555555555555"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BUCKET, KEY = "canvalo-beta-pipeline-artifacts-111111111111", "canvalo-beta-pipelin/Build/AbCdEf0"
NEW_PROJECT = plan_document(("aws_codebuild_project.lint", "aws_codebuild_project", ["create"]))
PIPELINE_STACK = {"terraform": {"backend": {"s3": {}}}, "resource": {"aws_sns_topic": {"t": {"name": "x"}}}}


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)


def artifact(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def build_output(**extra: bytes) -> bytes:
    """What the Build action uploads: cdktf.out (every stack, and whatever else a commit put there), the frontends."""
    return artifact(
        {
            "cdktf.out/manifest.json": json.dumps({"stacks": {"pipeline": {}, "beta": {}}}).encode(),
            "cdktf.out/stacks/pipeline/cdk.tf.json": json.dumps(PIPELINE_STACK).encode(),
            "cdktf.out/stacks/beta/cdk.tf.json": b"{}",
            "frontend/dist-beta/index.html": b"<html></html>",
            **extra,
        }
    )


def codepipeline_stub(*, build_status: str = "Succeeded") -> tuple[Any, Stubber]:
    client = boto3.client("codepipeline", region_name="eu-west-1")
    stub = Stubber(client)
    stub.add_response(
        "get_pipeline_execution",
        {
            "pipelineExecution": {
                "pipelineName": PIPELINE,
                "pipelineExecutionId": EXECUTION,
                "status": "Failed",
                "artifactRevisions": [{"name": SOURCE_ACTION, "revisionId": COMMIT}],
                "trigger": {"triggerType": "Webhook", "triggerDetail": "push"},
            }
        },
        {"pipelineName": PIPELINE, "pipelineExecutionId": EXECUTION},
    )
    stub.add_response(
        "list_action_executions",
        {
            "actionExecutionDetails": [
                {"actionName": "Test", "status": "Succeeded", "output": {"outputArtifacts": []}},
                {
                    "actionName": "Build",
                    "status": build_status,
                    "output": {"outputArtifacts": [{"name": "Build", "s3location": {"bucket": BUCKET, "key": KEY}}]},
                },
            ]
        },
        {"pipelineName": PIPELINE, "filter": {"pipelineExecutionId": EXECUTION}},
    )
    stub.activate()
    return client, stub


def review(tmp_path: Path, fake: FakeTerraform, body: bytes, answer: str, **options: Any) -> tuple[int, list[str]]:
    lines: list[str] = []

    def confirm(question: str) -> str:
        lines.append(question)
        return answer

    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
        codepipeline, stub = options.pop("codepipeline", None) or codepipeline_stub()
        status = review_pipeline(
            codepipeline=codepipeline,
            s3=s3,
            terraform=Terraform(fake),
            pipeline=PIPELINE,
            execution_id=EXECUTION,
            work_dir=tmp_path / "work",
            confirm=confirm,
            out=lines.append,
        )
        stub.assert_no_pending_responses()
    return status, lines


@pytest.mark.req("R4.4")
def test_the_refused_change_is_planned_from_the_build_artifact_and_applied_only_after_yes(tmp_path: Path) -> None:
    fake = FakeTerraform(plans={"pipeline": NEW_PROJECT})
    status, lines = review(tmp_path, fake, build_output(), "yes")
    assert status == 0
    assert fake.commands() == [("pipeline", "init"), ("pipeline", "plan"), ("pipeline", "show"), ("pipeline", "apply")]
    # Terraform ran on a fresh copy of the artifact's one stack, nothing else of it.
    workdir = fake.directories["pipeline"]
    assert json.loads((workdir / "cdk.tf.json").read_text()) == PIPELINE_STACK
    assert not (tmp_path / "work" / "cdktf.out" / "stacks" / "beta").exists()
    assert not (tmp_path / "work" / "frontend").exists()
    assert any(COMMIT in line and f"s3://{BUCKET}/{KEY}" in line for line in lines)
    assert any("aws_codebuild_project.lint" in line for line in lines), "the summary shows the change"
    assert any(line.startswith("Apply exactly this plan of commit") for line in lines)


@pytest.mark.req("R4.4")
@pytest.mark.parametrize("answer", ["no", "", "y", "YES please"])
def test_anything_but_yes_applies_nothing(tmp_path: Path, answer: str) -> None:
    fake = FakeTerraform(plans={"pipeline": NEW_PROJECT})
    status, lines = review(tmp_path, fake, build_output(), answer)
    assert status != 0
    assert ("pipeline", "apply") not in fake.commands()
    assert lines[-1] == "not applied: nothing changed"


@pytest.mark.req("R4.4", "R4.6")
def test_only_the_stacks_json_is_taken_and_a_json_asking_for_a_module_is_refused_before_any_init(
    tmp_path: Path,
) -> None:
    """The artifact is the commit's: a plugin mirror beside the stack is refused, not loaded."""
    body = build_output(
        **{"cdktf.out/stacks/pipeline/terraform.d/plugins/registry.terraform.io/hashicorp/aws/9.9.9/x": b"binary"}
    )
    # Only the stack's JSON is taken, so the mirror never reaches the disk the toolkit reads ...
    fake = FakeTerraform(plans={"pipeline": NEW_PROJECT})
    status, _ = review(tmp_path, fake, body, "yes")
    assert status == 0 and not list((tmp_path / "work").rglob("terraform.d"))
    # ... and a stack whose JSON asks for a module or a provisioner is refused by the policy check.
    evil = {**PIPELINE_STACK, "module": {"m": {"source": "./local"}}}
    fake = FakeTerraform(plans={"pipeline": NEW_PROJECT})
    with pytest.raises(StageError, match="refusing to run Terraform: 1 policy finding"):
        review(
            tmp_path / "evil",
            fake,
            build_output(**{"cdktf.out/stacks/pipeline/cdk.tf.json": json.dumps(evil).encode()}),
            "yes",
        )
    assert fake.commands() == []


@pytest.mark.req("R4.4")
def test_an_execution_without_a_build_artifact_names_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ReviewError, match="has no succeeded Build action"):
        review(tmp_path, FakeTerraform(), build_output(), "yes", codepipeline=codepipeline_stub(build_status="Failed"))


@pytest.mark.req("R4.4")
def test_an_artifact_without_the_pipeline_stack_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReviewError, match=r"holds no cdktf\.out/stacks/pipeline/cdk\.tf\.json"):
        review(tmp_path, FakeTerraform(), artifact({"cdktf.out/manifest.json": b"{}"}), "yes")
