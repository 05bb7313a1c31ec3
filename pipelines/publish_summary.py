"""Put a stage's plan summary where its approver reads it: an object in the pipeline's artifact bucket.

    python -m pipelines.publish_summary --summary handoff/summary.md --bucket "$ARTIFACT_BUCKET" --stage prod

An approval message holds 500 characters, so it carries the plan's headline and a link; the link used to
open the Plan build's log, where the summary sits among Terraform's output. This writes the whole summary
(counts, replacements, broadening) as one Markdown object, `plan-summaries/<stage>/<build>.md`,
encrypted with the bucket's key like every artifact, and prints the S3 console address of that object,
which the Plan action exports as `PLAN_SUMMARY_URL` for the approval's link. The build id names the
object, so a retried Plan never overwrites the summary an earlier approval showed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from names import PLAN_SUMMARIES_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# Shared with the artifact bucket's lifecycle, which expires the summaries with the artifacts (names.py).
PREFIX = PLAN_SUMMARIES_PREFIX


def summary_key(stage: str, build_id: str) -> str:
    """`plan-summaries/<stage>/<uuid>.md` from CodeBuild's `<project>:<uuid>` build id."""
    return f"{PREFIX}/{stage}/{build_id.rsplit(':', 1)[-1]}.md"


def console_url(bucket: str, key: str, region: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/s3/object/{bucket}"
        f"?region={region}&bucketType=general&prefix={quote(key, safe='')}"
    )


def published_object(url: str) -> tuple[str, str]:
    """(bucket, key) of a summary's console address (`console_url`); ValueError for anything else."""
    parts = urlsplit(url)
    bucket = parts.path.removeprefix("/s3/object/")
    keys = parse_qs(parts.query).get("prefix", [])
    if not parts.netloc.endswith(".console.aws.amazon.com") or bucket == parts.path or len(keys) != 1:
        raise ValueError(f"{url!r} is not the address of a published plan summary")
    if not keys[0].startswith(f"{PREFIX}/"):
        raise ValueError(f"{url!r} names {keys[0]!r}, which is not under {PREFIX}/")
    return bucket, keys[0]


def publish(s3: S3Client, summary: Path, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=summary.read_bytes(), ContentType="text/markdown; charset=utf-8")


def main(
    argv: Sequence[str] | None = None, *, s3: S3Client | None = None, environ: Mapping[str, str] = os.environ
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.publish_summary", description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, required=True, help="the summary.md terraform_stage plan wrote")
    parser.add_argument("--bucket", required=True, help="the pipeline's artifact bucket")
    parser.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    build_id, region = environ.get("CODEBUILD_BUILD_ID"), environ.get("AWS_REGION")
    if not build_id or not region:
        print("error: publish_summary needs CODEBUILD_BUILD_ID and AWS_REGION: CodeBuild sets them", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.summary.is_file():
        print(f"error: {args.summary} does not exist: run `terraform_stage plan` first", file=sys.stderr)
        return EXIT_BAD_INPUT
    key = summary_key(args.stage, build_id)
    try:
        publish(s3 or boto3.session.Session().client("s3", region_name=region), args.summary, args.bucket, key)
    except (BotoCoreError, ClientError) as error:
        print(
            f"error: cannot put s3://{args.bucket}/{key} ({error}): the Plan role writes the artifact bucket",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(console_url(args.bucket, key, region))
    return 0


if __name__ == "__main__":
    sys.exit(main())
