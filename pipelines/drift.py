"""Daily drift check: does the live infrastructure of a stage still match what Terraform last applied?

    python -m pipelines.drift --stage prod --cdktf-out cdktf.out [--topic-arn ARN]

For every `<stage>-*` stack it runs `terraform plan -refresh-only -detailed-exitcode -lock=false`:
- refresh-only, because it compares the real resources with the state, i.e. with the code as it was last
  deployed; a normal plan of the branch would also report commits still on their way to prod (waiting
  for approval) as drift, and would need the image tag prod runs;
- without the state lock, because it writes no state and must neither wait for nor block a deploy.
When any stack drifted it publishes one message to the SNS topic (ARN from --topic-arn or
NOTIFICATION_TOPIC_ARN) naming the stacks and each changed or deleted resource, and exits 3. A check
that cannot run (terraform fails, no stacks) is published too, and exits 1: a silent daily job that
stopped working would look like a clean prod. Exit 0 when everything matches.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.plan_summary import PlanError, ResourceChange, parse_changes
from pipelines.terraform_stage import EXIT_FAILED, StageError, Terraform, stage_stacks

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

EXIT_DRIFT = 3
# What an action in a refresh-only plan's `resource_drift` means for the real resource.
DRIFT_MEANING = {"update": "changed outside Terraform", "destroy": "deleted outside Terraform"}
SNS_SUBJECT_LIMIT = 100


@dataclass(frozen=True)
class StackDrift:
    stack: str
    resources: list[ResourceChange]


def check_stack(terraform: Terraform, stack_dir: Path, plan_file: Path) -> list[ResourceChange] | None:
    """The drifted resources of one stack, or None when it matches."""
    terraform.init(stack_dir)
    if not terraform.plan(stack_dir, plan_file, "-refresh-only", "-lock=false"):
        return None
    document = terraform.show_json(stack_dir, plan_file)
    try:
        return [c for c in parse_changes(document.get("resource_drift") or [], stack_dir.name) if c.action != "no-op"]
    except PlanError as error:
        raise StageError(str(error)) from None


def describe(stage: str, drifted: Sequence[StackDrift]) -> tuple[str, str]:
    """(subject, body) of the drift notification."""
    subject = f"Canvalo {stage}: drift in {', '.join(d.stack for d in drifted)}"
    if len(subject) > SNS_SUBJECT_LIMIT:
        subject = f"Canvalo {stage}: drift in {len(drifted)} stacks"
    lines = [f"The live infrastructure of {stage} no longer matches what Terraform last applied.", ""]
    for drift in drifted:
        lines.append(f"{drift.stack}:")
        if not drift.resources:
            lines.append("  outputs differ from the state (no resource changed)")
        lines += [f"  {c.address}: {DRIFT_MEANING.get(c.action, c.action)}" for c in drift.resources]
        lines.append("")
    lines += [
        "Either undo the manual change, or bring it into the code and deploy it through the pipeline.",
        f"Details: `terraform plan -refresh-only` in cdktf.out/stacks/<stack> with {stage}'s deploy role.",
    ]
    return subject, "\n".join(lines)


def check_stage(
    *,
    terraform: Terraform,
    stage: str,
    cdktf_out: Path,
    work_dir: Path,
    sns: SNSClient,
    topic_arn: str,
    out: Callable[[str], None] = print,
) -> int:
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        drifted = []
        for stack, _ in stage_stacks(cdktf_out, stage):
            resources = check_stack(terraform, cdktf_out / "stacks" / stack, (work_dir / f"{stack}.tfplan").resolve())
            out(f"{stack}: {'drifted' if resources is not None else 'matches'}")
            if resources is not None:
                drifted.append(StackDrift(stack, resources))
    except StageError as error:
        sns.publish(
            TopicArn=topic_arn,
            Subject=f"Canvalo {stage}: the drift check could not run",
            Message=f"The daily drift check of {stage} failed: {error}. Until it runs, drift goes unnoticed.",
        )
        raise
    if not drifted:
        out(f"{stage} matches its Terraform state")
        return 0
    subject, body = describe(stage, drifted)
    sns.publish(TopicArn=topic_arn, Subject=subject, Message=body)
    out(body)
    return EXIT_DRIFT


def main(
    argv: Sequence[str] | None = None,
    *,
    terraform: Terraform | None = None,
    sns: SNSClient | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--cdktf-out", type=Path, required=True)
    parser.add_argument("--topic-arn", default=environ.get("NOTIFICATION_TOPIC_ARN"))
    parser.add_argument("--work-dir", type=Path, default=Path("drift"))
    args = parser.parse_args(argv)
    if not args.topic_arn:
        print("error: no topic to notify: pass --topic-arn or set NOTIFICATION_TOPIC_ARN", file=sys.stderr)
        return 2
    try:
        return check_stage(
            terraform=terraform or Terraform(),
            stage=args.stage,
            cdktf_out=args.cdktf_out,
            work_dir=args.work_dir,
            sns=sns or boto3.session.Session().client("sns"),
            topic_arn=args.topic_arn,
        )
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ClientError, BotoCoreError) as error:
        print(f"error: could not publish to {args.topic_arn}: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
