"""`python -m pipelines.publish_summary`: the approver reads the whole plan summary without a build log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipelines.publish_summary import EXIT_BAD_INPUT, EXIT_FAILED, console_url, main, published_object, summary_key

BUCKET = "canvalo-beta-pipeline-artifacts-111111111111"
ENVIRONMENT = {
    "CODEBUILD_BUILD_ID": "canvalo-beta-pipeline-plan:6f1c2e3a-0000-4000-8000-000000000001",
    "AWS_REGION": "eu-west-1",
}


@pytest.fixture
def s3() -> Iterator[Any]:
    """moto's S3, holding the pipeline's artifact bucket."""
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield client


@pytest.mark.req("R4.3")
def test_the_summary_becomes_an_object_whose_console_address_the_approval_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3: Any
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# prod plan\n\nBROADENING: 1 resource(s) need a person's approval\n")
    argv = ["--summary", str(summary), "--bucket", BUCKET, "--stage", "prod"]
    assert main(argv, s3=s3, environ=ENVIRONMENT) == 0
    key = "plan-summaries/prod/6f1c2e3a-0000-4000-8000-000000000001.md"
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == summary.read_bytes()
    assert stored["ContentType"].startswith("text/markdown")
    url = capsys.readouterr().out.strip()
    assert url == (
        f"https://eu-west-1.console.aws.amazon.com/s3/object/{BUCKET}?region=eu-west-1&bucketType=general"
        "&prefix=plan-summaries%2Fprod%2F6f1c2e3a-0000-4000-8000-000000000001.md"
    )


@pytest.mark.req("R4.3")
def test_a_bucket_it_cannot_write_fails_the_plan_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3: Any
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("x")
    status = main(["--summary", str(summary), "--bucket", "missing", "--stage", "beta"], s3=s3, environ=ENVIRONMENT)
    (line,) = capsys.readouterr().err.splitlines()
    assert status == EXIT_FAILED and line.startswith("error: cannot put s3://missing/plan-summaries/beta/")


def test_without_a_summary_or_codebuilds_variables_it_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--summary", str(tmp_path / "none.md"), "--bucket", BUCKET, "--stage", "beta"]
    assert main(argv, environ=ENVIRONMENT) == EXIT_BAD_INPUT
    assert "run `terraform_stage plan` first" in capsys.readouterr().err
    assert main(argv, environ={}) == EXIT_BAD_INPUT
    assert "CODEBUILD_BUILD_ID and AWS_REGION" in capsys.readouterr().err


@pytest.mark.req("R4.3")
def test_the_console_address_names_the_object_apply_checks() -> None:
    """Apply reads the summary back from the address the approval linked to (pipelines/approval_check.py)."""
    key = summary_key("prod", "canvalo-beta-pipeline-plan:0b8e6f7a-1c2d")
    url = console_url("canvalo-beta-pipeline-artifacts-111111111111", key, "eu-west-1")
    assert published_object(url) == ("canvalo-beta-pipeline-artifacts-111111111111", key)
    with pytest.raises(ValueError, match="not under plan-summaries/"):
        published_object(console_url("canvalo-beta-pipeline-artifacts-111111111111", "other/x.md", "eu-west-1"))
