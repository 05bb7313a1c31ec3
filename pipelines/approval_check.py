"""Before a stage applies what its approval showed: was the approval given by one of the stage's approvers?

    PIPELINE_NAME=... PIPELINE_EXECUTION_ID=... python -m pipelines.approval_check --approval ProdApproval/Approve \
        --approver-roles canvalo-release-approver,AWSReservedSSO_ReleaseApprover_* \
        --stage prod --plans DIR --manifest-sha256 SHA --dist frontend/dist-prod

CodePipeline lets any principal of the pipeline's account that is allowed `codepipeline:PutApprovalResult`
answer an approval, and no policy inside that account can take the permission from every other principal
(only an organization's SCP can). The pipeline's own roles are denied it by their boundary; people are not.
So the Apply after an approval checks who gave it: CodePipeline records the approver's ARN as the approval
action's `updatedBy` (ListActionExecutions), an STS session ARN `arn:aws:sts::<account>:assumed-role/<role>/
<session>`. The Apply goes on only if that role is in the pipeline's own account and its name matches one of
the stage's `approver_roles` (StageConfig; `*` and `?` as in IAM's ArnLike). Otherwise it exits 1 with one
line naming who approved and who may, and applies nothing: the change must be released again and approved
by an approver. Bad input (not approved) is exit 2.

The approval's stage is skipped when the plans it would show change nothing (PLAN_CHANGES). Then there is no
approval in the execution, and Apply goes on only if the plans' manifest, checked against the SHA-256 the
Plan action exported, records no change, and the frontend build is the one Plan compared with the live
release: an empty plan needs nobody, anything else needs an approver.
"""

from __future__ import annotations

import argparse
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
from pipelines.terraform_stage import StageError, read_plans_manifest

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
SESSION_ARN = re.compile(r"^arn:aws:sts::(\d{12}):assumed-role/([^/]+)/(.+)$")


class ApprovalError(CommandError):
    """The approval cannot be trusted, or not found; one line saying why and what to do."""


@dataclass(frozen=True)
class PlannedRelease:
    """What the skipped approval would have shown: the stage's saved plans and the frontend build."""

    stage: str
    plans: Path
    manifest_sha256: str
    dist: Path


def nothing_to_approve(release: PlannedRelease, approval: str) -> str:
    """Why applying without an approval is safe (the plans change nothing), or ApprovalError."""
    try:
        manifest = read_plans_manifest(release.plans, release.stage, release.manifest_sha256)
        built = dist_sha256(scan_dist(release.dist))
    except (StageError, DeployError) as error:
        raise ApprovalError(f"{approval} did not run and the plans cannot be read ({error})") from None
    if manifest.get("changes") is not False:
        raise ApprovalError(
            f"{approval} did not run in this execution, yet the {release.stage} plans change something: nothing is "
            "applied without an approver; release the change again"
        )
    compared = (manifest.get("frontend") or {}).get("dist_sha256")
    if compared != built:
        raise ApprovalError(
            f"{approval} did not run, and the frontend build is not the one the plan compared with the live site "
            f"(planned {compared}, built {built}): release the change again"
        )
    return f"{approval} was skipped: the {release.stage} plans and frontend build change nothing, so none is needed"


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


def check_approver(approver: str, account_id: str, approver_roles: Sequence[str], approval: str) -> None:
    """Raise unless `approver` is a session of a role in `account_id` whose name matches `approver_roles`."""
    allowed = ", ".join(approver_roles)
    match = SESSION_ARN.match(approver)
    if match is None or match.group(1) != account_id:
        raise ApprovalError(
            f"{approval} was approved by {approver}, not by a role session of account {account_id}: only sessions "
            f"of the roles {allowed} may approve; release the change again and have one of them approve it"
        )
    if not any(fnmatchcase(match.group(2), pattern) for pattern in approver_roles):
        raise ApprovalError(
            f"{approval} was approved by {approver}, whose role {match.group(2)} is not one of the stage's "
            f"approver_roles ({allowed}): release the change again and have one of them approve it"
        )


def main(
    argv: Sequence[str] | None = None,
    *,
    session: boto3.session.Session | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.approval_check", description=__doc__.splitlines()[0])
    parser.add_argument("--approval", required=True, help="the approval action, <Stage>/<Action>")
    parser.add_argument("--approver-roles", required=True, help="comma-separated role name patterns")
    parser.add_argument("--stage", required=True, help="the stage whose plans the approval shows")
    parser.add_argument("--plans", required=True, type=Path, help="the Plan action's artifact")
    parser.add_argument("--manifest-sha256", required=True, help="the SHA-256 of its manifest.json (PLAN_SHA256)")
    parser.add_argument("--dist", required=True, type=Path, help="the stage's frontend build")
    args = parser.parse_args(argv)
    release = PlannedRelease(args.stage, args.plans, args.manifest_sha256, args.dist)
    pipeline, execution_id = environ.get("PIPELINE_NAME"), environ.get("PIPELINE_EXECUTION_ID")
    roles = [name.strip() for name in args.approver_roles.split(",") if name.strip()]
    if not pipeline or not execution_id or not roles:
        print(
            "error: approval_check needs PIPELINE_NAME, PIPELINE_EXECUTION_ID and --approver-roles: "
            "the pipeline's Apply action sets them",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    # This action's own credentials, in the pipeline's account: it runs before the stage's role is selected.
    session = session or boto3.session.Session()
    try:
        account_id = session.client("sts").get_caller_identity()["Account"]
        approver = approver_of(session.client("codepipeline"), pipeline, execution_id, args.approval)
        if approver is None:
            print(nothing_to_approve(release, args.approval))
            return 0
        check_approver(approver, account_id, roles, args.approval)
    except ApprovalError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except (BotoCoreError, ClientError) as error:
        print(
            f"error: cannot read who approved {args.approval} ({error}): the Apply role needs "
            "codepipeline:ListActionExecutions on the pipeline",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    print(f"{args.approval} approved by {approver}, one of the stage's approvers ({', '.join(roles)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
