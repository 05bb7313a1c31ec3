"""Before a stage applies what its approval showed: was the approval given by one of the stage's approvers?

    PIPELINE_NAME=... PIPELINE_EXECUTION_ID=... python -m pipelines.approval_check --approval Prod/Approve \
        --approver-roles canvalo-release-approver,AWSReservedSSO_ReleaseApprover_*

CodePipeline lets any principal of the pipeline's account that is allowed `codepipeline:PutApprovalResult`
answer an approval, and no policy inside that account can take the permission from every other principal
(only an organization's SCP can). The pipeline's own roles are denied it by their boundary; people are not.
So the Apply after an approval checks who gave it: CodePipeline records the approver's ARN as the approval
action's `updatedBy` (ListActionExecutions), an STS session ARN `arn:aws:sts::<account>:assumed-role/<role>/
<session>`. The Apply goes on only if that role is in the pipeline's own account and its name matches one of
the stage's `approver_roles` (StageConfig; `*` and `?` as in IAM's ArnLike). Otherwise it exits 1 with one
line naming who approved and who may, and applies nothing: the change must be released again and approved
by an approver. Bad input (no such action in this execution, not approved) is exit 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.errors import CommandError

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
SESSION_ARN = re.compile(r"^arn:aws:sts::(\d{12}):assumed-role/([^/]+)/(.+)$")


class ApprovalError(CommandError):
    """The approval cannot be trusted, or not found; one line saying why and what to do."""


def approver_of(codepipeline: CodePipelineClient, pipeline: str, execution_id: str, approval: str) -> str:
    """The ARN that approved `approval` (`<Stage>/<Action>`) in this execution."""
    stage, _, action = approval.partition("/")
    details: list[Any] = []
    for page in codepipeline.get_paginator("list_action_executions").paginate(
        pipelineName=pipeline, filter={"pipelineExecutionId": execution_id}
    ):
        details += [
            d for d in page["actionExecutionDetails"] if (d.get("stageName"), d.get("actionName")) == (stage, action)
        ]
    if not details:
        raise ApprovalError(
            f"{approval} has no execution in pipeline execution {execution_id}: this Apply follows no approval",
            exit_status=EXIT_BAD_INPUT,
        )
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
    args = parser.parse_args(argv)
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
