"""Answer a stage's approval when its plan needs no person; leave it to one otherwise.

    PIPELINE_NAME=... PIPELINE_EXECUTION_ID=... python -m pipelines.review --approval Prod/Approve \
        --person-approves changes --stage prod --plans DIR --manifest-sha256 SHA

The pipeline's Review action runs this beside the stage's manual approval (the same run order), as CDK
Pipelines' permissions-broadening check does: a plan that needs nobody is approved at once, by this action's
role, and Apply accepts that role's answer only for such a plan (pipelines/approval_check.py). Who is needed
(`--person-approves`): `changes`, a person for any change of the plans or the frontend build (a stage with
`approval_before_apply`); `broadening`, a person only when the plans broaden what the stage may do.

When a person is needed (or the token never showed), Review mails the pipeline's topic: which stage, which
commit, why, the plan's headline and the link to its summary. The notification rule does not mail every
approval CodePipeline starts (each stage has one, and Review answers most), so this mail is the one that
tells an approver to act. A mail that cannot be sent is a warning: the approval waits in the console either
way, and failing Review would fail the stage under the waiting approval.

CodePipeline hands out an approval's token only once the action is in progress (GetPipelineState's
`actionStates[].latestExecution.token`), and the token answers that request alone
(https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_PutApprovalResult.html), so this waits for
the token of its own execution's approval before answering.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.errors import CommandError
from pipelines.terraform_stage import HEADLINE, StageError, read_plans_manifest

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient
    from mypy_boto3_sns import SNSClient

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
# Who a stage's approval needs, by `--person-approves`: the manifest field that calls for a person.
PERSON_APPROVES = {"changes": "changes", "broadening": "broadens"}
# SNS holds an email subject to 100 characters.
SUBJECT_LIMIT = 100
# How long the token of an approval that started beside this action may take to appear.
TOKEN_WAIT_SECONDS = 300
TOKEN_POLL_SECONDS = 5


class ReviewError(CommandError):
    """The approval cannot be answered; one line saying why and what to do."""


@dataclass(frozen=True, kw_only=True)
class Mail:
    """Where and what to tell the approvers when the approval waits for one of them."""

    sns: SNSClient
    topic_arn: str
    pipeline: str
    commit: str
    headline: str
    summary_url: str


def ask_a_person(mail: Mail, approval: str, reason: str) -> str:
    """Mail the approvers; what happened, in one line (a warning when the mail could not be sent)."""
    stage_name = approval.partition("/")[0]
    subject = f"{mail.pipeline}: {stage_name} waits for your approval"[:SUBJECT_LIMIT]
    message = (
        f"{approval} of {mail.pipeline} waits for one of the stage's approvers: {reason}.\n\n"
        f"Commit: {mail.commit or 'unknown'}\nPlan: {mail.headline or 'see the summary'}\n"
        f"Summary: {mail.summary_url or 'in the Plan action of this execution'}\n\n"
        "Approve or reject it in the CodePipeline console (docs/pipeline.md, Approving): approving applies exactly "
        "this plan."
    )
    try:
        mail.sns.publish(TopicArn=mail.topic_arn, Subject=subject, Message=message)
    except (BotoCoreError, ClientError) as error:
        return f"warning: could not mail the approvers ({error}); the approval waits in the console"
    return f"mailed the approvers ({mail.topic_arn})"


def why_a_person(manifest: Mapping[str, Any], person_approves: str) -> str | None:
    """Why the plan needs a person's approval, or None when it needs none."""
    field = PERSON_APPROVES[person_approves]
    if manifest.get(field) is False:
        return None
    if field == "changes":
        return "the plans or the frontend build change something, and this stage asks a person for any change"
    return "the plans broaden what the stage may do"


def approval_token(
    codepipeline: CodePipelineClient,
    pipeline: str,
    execution_id: str,
    approval: str,
    *,
    wait_seconds: float = TOKEN_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The token of `approval` (`<Stage>/<Action>`) in progress in this execution, once CodePipeline has one."""
    stage_name, _, action_name = approval.partition("/")
    deadline = time.monotonic() + wait_seconds
    while True:
        for stage in codepipeline.get_pipeline_state(name=pipeline).get("stageStates", []):
            current = stage.get("latestExecution")
            if stage.get("stageName") != stage_name or current is None:
                continue
            if current.get("pipelineExecutionId") != execution_id:
                continue
            for action in stage.get("actionStates", []):
                latest = action.get("latestExecution")
                if action.get("actionName") != action_name or latest is None:
                    continue
                if latest.get("status") == "InProgress" and latest.get("token"):
                    return str(latest["token"])
        if time.monotonic() >= deadline:
            raise ReviewError(
                f"{approval} of execution {execution_id} has no approval token after {wait_seconds:.0f} s"
            )
        sleep(TOKEN_POLL_SECONDS)


def review(
    codepipeline: CodePipelineClient,
    *,
    pipeline: str,
    execution_id: str,
    approval: str,
    person_approves: str,
    manifest: Mapping[str, Any],
    mail: Mail | None = None,
    wait_seconds: float = TOKEN_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Approve `approval` when the manifest needs no person, else ask one (`mail`); what was done, in lines."""

    def leave_it_to_a_person(why: str) -> str:
        waits = f"{approval} waits for one of the stage's approvers: {why}"
        return waits if mail is None else f"{waits}\n{ask_a_person(mail, approval, why)}"

    reason = why_a_person(manifest, person_approves)
    if reason is not None:
        return leave_it_to_a_person(reason)
    try:
        token = approval_token(codepipeline, pipeline, execution_id, approval, wait_seconds=wait_seconds, sleep=sleep)
    except ReviewError as error:
        # Failing here would fail the stage while its approval still waits; a person answers it instead.
        return leave_it_to_a_person(str(error))
    stage_name, _, action_name = approval.partition("/")
    summary = (
        "Review: the plans and the frontend build change nothing"
        if person_approves == "changes"
        else "Review: the plans do not broaden what the stage may do"
    )
    codepipeline.put_approval_result(
        pipelineName=pipeline,
        stageName=stage_name,
        actionName=action_name,
        result={"summary": summary, "status": "Approved"},
        token=token,
    )
    return f"{approval} approved by Review: {summary.removeprefix('Review: ')}"


def _mail(session: boto3.session.Session, environ: Mapping[str, str], pipeline: str, plans: Path) -> Mail | None:
    """The mail to the approvers, from the Review project's and action's environment; None without a topic."""
    topic_arn = environ.get("NOTIFICATION_TOPIC_ARN")
    if not topic_arn:
        print("warning: no NOTIFICATION_TOPIC_ARN: nobody is mailed when the approval waits", file=sys.stderr)
        return None
    headline = plans / HEADLINE
    return Mail(
        sns=session.client("sns"),
        topic_arn=topic_arn,
        pipeline=pipeline,
        commit=environ.get("COMMIT_ID", ""),
        headline=headline.read_text().strip() if headline.is_file() else "",
        summary_url=environ.get("PLAN_SUMMARY_URL", ""),
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    session: boto3.session.Session | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.review", description=__doc__.splitlines()[0])
    parser.add_argument("--approval", required=True, help="the approval action, <Stage>/<Action>")
    parser.add_argument("--person-approves", required=True, choices=sorted(PERSON_APPROVES))
    parser.add_argument("--stage", required=True, help="the stage whose plans the approval shows")
    parser.add_argument("--plans", required=True, type=Path, help="the Plan action's artifact")
    parser.add_argument("--manifest-sha256", required=True, help="the SHA-256 of its manifest.json (PLAN_SHA256)")
    args = parser.parse_args(argv)
    pipeline, execution_id = environ.get("PIPELINE_NAME"), environ.get("PIPELINE_EXECUTION_ID")
    if not pipeline or not execution_id:
        print(
            "error: review needs PIPELINE_NAME and PIPELINE_EXECUTION_ID: the pipeline's Review action sets them",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        manifest = read_plans_manifest(args.plans, args.stage, args.manifest_sha256)
        session = session or boto3.session.Session()
        print(
            review(
                session.client("codepipeline"),
                pipeline=pipeline,
                execution_id=execution_id,
                approval=args.approval,
                person_approves=args.person_approves,
                manifest=manifest,
                mail=_mail(session, environ, pipeline, args.plans),
            )
        )
    except (StageError, ReviewError) as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except (BotoCoreError, ClientError) as error:
        print(
            f"error: cannot answer {args.approval} ({error}): the Review role needs codepipeline:GetPipelineState "
            "on the pipeline and codepipeline:PutApprovalResult on the approval; a person may answer it meanwhile",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
