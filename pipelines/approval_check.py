"""Before a stage applies what its approval showed: was the approval given by someone allowed to give it?

    PIPELINE_NAME=... PIPELINE_EXECUTION_ID=... python -m pipelines.approval_check --approval Prod/Approve \
        --approver-roles canvalo-release-approver,AWSReservedSSO_ReleaseApprover_* \
        --review-role canvalo-beta-pipeline-review --person-approves changes \
        --stage prod --plans DIR --manifest-sha256 SHA --dist frontend/dist-prod

CodePipeline lets any principal of the pipeline's account that is allowed `codepipeline:PutApprovalResult`
answer an approval, and no policy inside that account can take the permission from every other principal
(only an organization's SCP can). So the Apply after an approval checks who gave it: CodePipeline records the
approver's ARN as the approval action's `updatedBy` (ListActionExecutions), an STS session ARN
`arn:aws:sts::<account>:assumed-role/<role>/<session>`, in the pipeline's own account.

Two answers count. The Review role's (pipelines/review.py), only when the plans, checked against the SHA-256
the Plan action exported, need no person (`--person-approves`: `changes`, any change needs one; `broadening`,
only a broadening one). A person's, only from a role whose name matches one of the stage's `approver_roles`
(StageConfig; `*` and `?` as in IAM's ArnLike). Either way the frontend build must be the one Plan compared
with the live release, and the summary the approval linked to (`--summary-url`, the object
pipelines/publish_summary.py wrote) must still be the one Plan wrote: its SHA-256 is in the verified
manifest, so a summary rewritten while the approval waited (anyone who may write the artifact bucket could)
is refused, and so is a rewritten configuration (terraform_stage apply). Otherwise this exits 1 with one line naming who approved and who may, and nothing is
applied: the change must be released again. Bad input (not approved) is exit 2.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.deploy_frontend import DeployError, dist_sha256, scan_dist
from pipelines.errors import CommandError
from pipelines.publish_summary import published_object
from pipelines.review import PERSON_APPROVES, why_a_person
from pipelines.terraform_stage import StageError, read_plans_manifest

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient
    from mypy_boto3_s3 import S3Client

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
SESSION_ARN = re.compile(r"^arn:aws:sts::(\d{12}):assumed-role/([^/]+)/(.+)$")


class ApprovalError(CommandError):
    """The approval cannot be trusted, or not found; one line saying why and what to do."""


@dataclass(frozen=True)
class PlannedRelease:
    """What the approval showed: the stage's saved plans and the frontend build."""

    stage: str
    plans: Path
    manifest_sha256: str
    dist: Path


def planned_manifest(release: PlannedRelease, approval: str) -> dict[str, Any]:
    """The verified manifest of the plans the approval showed, or ApprovalError when it or the build differs."""
    try:
        manifest = read_plans_manifest(release.plans, release.stage, release.manifest_sha256)
        built = dist_sha256(scan_dist(release.dist))
    except (StageError, DeployError) as error:
        raise ApprovalError(f"the plans {approval} showed cannot be read ({error})") from None
    compared = (manifest.get("frontend") or {}).get("dist_sha256")
    if compared != built:
        raise ApprovalError(
            f"the frontend build is not the one the plan {approval} showed compared with the live site "
            f"(planned {compared}, built {built}): release the change again"
        )
    return manifest


def check_summary(s3: S3Client, summary_url: str, manifest: Mapping[str, Any], approval: str) -> None:
    """ApprovalError unless the published summary the approval linked to is the one the manifest names."""
    try:
        bucket, key = published_object(summary_url)
    except ValueError as error:
        raise ApprovalError(
            f"{error}: the Apply action passes the Plan's PLAN_SUMMARY_URL", exit_status=EXIT_BAD_INPUT
        ) from None
    read = hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
    if read != manifest.get("summary_sha256"):
        raise ApprovalError(
            f"the summary {approval} linked to (s3://{bucket}/{key}, SHA-256 {read}) is not the one Plan wrote "
            f"({manifest.get('summary_sha256')}): what the approver read was changed; release the change again"
        )


def check_review(manifest: Mapping[str, Any], person_approves: str, stage: str, approval: str) -> str:
    """Why Review's approval counts (the plans need no person), or ApprovalError."""
    reason = why_a_person(manifest, person_approves)
    if reason is not None:
        raise ApprovalError(
            f"{approval} was approved by the Review role, yet {reason}: only one of the stage's approvers may "
            f"approve this {stage} plan; release the change again"
        )
    return f"{approval} was approved by Review: the {stage} plans need no person"


def approver_of(codepipeline: CodePipelineClient, pipeline: str, execution_id: str, approval: str) -> str | None:
    """The ARN that approved `approval` (`<Stage>/<Action>`) in this execution; None when it did not run."""
    stage, _, action = approval.partition("/")
    details: list[Any] = []
    for page in codepipeline.get_paginator("list_action_executions").paginate(
        pipelineName=pipeline, filter={"pipelineExecutionId": execution_id}
    ):
        details += [
            d for d in page["actionExecutionDetails"] if (d.get("stageName"), d.get("actionName")) == (stage, action)
        ]
    if not details:
        return None
    latest = max(details, key=lambda d: d["lastUpdateTime"])
    if latest.get("status") != "Succeeded" or not latest.get("updatedBy"):
        raise ApprovalError(
            f"{approval} was not approved in this execution ({latest.get('status')})", exit_status=EXIT_BAD_INPUT
        )
    return str(latest["updatedBy"])


def approving_role(approver: str, account_id: str, approver_roles: Sequence[str], approval: str) -> str:
    """The role of `approver`, a session of a role in `account_id`; ApprovalError for anyone else."""
    match = SESSION_ARN.match(approver)
    if match is None or match.group(1) != account_id:
        raise ApprovalError(
            f"{approval} was approved by {approver}, not by a role session of account {account_id}: only sessions "
            f"of the roles {', '.join(approver_roles)} may approve; release the change again and have one of them "
            "approve it"
        )
    return match.group(2)


def check_approver(approver: str, account_id: str, approver_roles: Sequence[str], approval: str) -> None:
    """Raise unless `approver` is a session of a role in `account_id` whose name matches `approver_roles`."""
    role = approving_role(approver, account_id, approver_roles, approval)
    if not any(fnmatchcase(role, pattern) for pattern in approver_roles):
        raise ApprovalError(
            f"{approval} was approved by {approver}, whose role {role} is not one of the stage's "
            f"approver_roles ({', '.join(approver_roles)}): release the change again and have one of them approve it"
        )


def check_approval(
    approver: str | None,
    *,
    account_id: str,
    approver_roles: Sequence[str],
    review_role: str,
    person_approves: str,
    manifest: Mapping[str, Any],
    stage: str,
    approval: str,
) -> str:
    """Why the approval counts, in one line; ApprovalError when it does not."""
    if approver is None:
        raise ApprovalError(
            f"{approval} did not run in this execution: nothing is applied without it", exit_status=EXIT_BAD_INPUT
        )
    if approving_role(approver, account_id, approver_roles, approval) == review_role:
        return check_review(manifest, person_approves, stage, approval)
    check_approver(approver, account_id, approver_roles, approval)
    return f"{approval} approved by {approver}, one of the stage's approvers ({', '.join(approver_roles)})"


def main(
    argv: Sequence[str] | None = None,
    *,
    session: boto3.session.Session | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.approval_check", description=__doc__.splitlines()[0])
    parser.add_argument("--approval", required=True, help="the approval action, <Stage>/<Action>")
    parser.add_argument("--approver-roles", required=True, help="comma-separated role name patterns")
    parser.add_argument("--review-role", required=True, help="the Review action's role name")
    parser.add_argument("--person-approves", required=True, choices=sorted(PERSON_APPROVES))
    parser.add_argument("--stage", required=True, help="the stage whose plans the approval shows")
    parser.add_argument("--plans", required=True, type=Path, help="the Plan action's artifact")
    parser.add_argument("--manifest-sha256", required=True, help="the SHA-256 of its manifest.json (PLAN_SHA256)")
    parser.add_argument("--dist", required=True, type=Path, help="the stage's frontend build")
    parser.add_argument("--summary-url", required=True, help="the summary the approval linked to (PLAN_SUMMARY_URL)")
    args = parser.parse_args(argv)
    release = PlannedRelease(args.stage, args.plans, args.manifest_sha256, args.dist)
    pipeline, execution_id = environ.get("PIPELINE_NAME"), environ.get("PIPELINE_EXECUTION_ID")
    roles = [name.strip() for name in args.approver_roles.split(",") if name.strip()]
    if not pipeline or not execution_id or not roles:
        print(
            "error: approval_check needs PIPELINE_NAME, PIPELINE_EXECUTION_ID and --approver-roles: "
            "the Apply project and action set them",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    # This action's own credentials, in the pipeline's account: it runs before the stage's role is selected.
    session = session or boto3.session.Session()
    try:
        manifest = planned_manifest(release, args.approval)
        check_summary(session.client("s3"), args.summary_url, manifest, args.approval)
        account_id = session.client("sts").get_caller_identity()["Account"]
        approver = approver_of(session.client("codepipeline"), pipeline, execution_id, args.approval)
        print(
            check_approval(
                approver,
                account_id=account_id,
                approver_roles=roles,
                review_role=args.review_role,
                person_approves=args.person_approves,
                manifest=manifest,
                stage=args.stage,
                approval=args.approval,
            )
        )
    except ApprovalError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except (BotoCoreError, ClientError) as error:
        print(
            f"error: cannot read who approved {args.approval} or what it showed ({error}): the Apply role needs "
            "codepipeline:ListActionExecutions on the pipeline and s3:GetObject on the plan summaries",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
