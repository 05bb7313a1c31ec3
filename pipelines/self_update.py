"""UpdatePipeline (R4.4): bring the pipeline to this commit's definition before anything else runs.

    PIPELINE_NAME=... PIPELINE_EXECUTION_ID=... python -m pipelines.self_update --cdktf-out cdktf.out

Terraform has no CloudFormation-style self-mutation (SPEC.md, R4.4), so this action plans the `pipeline`
stack from the new commit with `-detailed-exitcode`:
- 0, no changes: the pipeline already is this commit's; the execution goes on.
- 2, changes: it shows the plan summary (refusing, like every stage, to destroy stateful resources, and
  refusing any change that broadens what the pipeline may do: an approval, a buildspec, a role, a policy;
  an administrator reviews and applies those with `make review-pipeline EXECUTION=<id>`, which plans
  this build's JSON with their own toolkit and never runs the commit's code), applies exactly that saved plan, starts a new execution of the branch head (this commit or a newer
  one, never an older commit over a newer), which runs on the new definition, and stops this one
  (abandoning its running actions), so nothing of this commit is deployed by the old definition. The
  pipeline is QUEUED: the new execution starts after the executions already waiting.
- anything else: the action fails.
An execution that this action itself started and that still plans changes would restart forever (a
stack that never converges); it fails instead, naming the problem.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines import policy_check
from pipelines.plan_summary import PlanError, StackPlan, allowed_destroys, broadenings, parse_plan, refused, render
from pipelines.terraform_stage import EXIT_FAILED, StageError, Terraform
from pipelines.terraform_workdir import isolated

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient
    from mypy_boto3_sts import STSClient

PIPELINE_STACK = "pipeline"
# The pipeline's source action and its output artifact (modules/pipeline.py SOURCE_ACTION, SOURCE_ARTIFACT).
SOURCE_ACTION = "Source"
STARTED_BY_API = "StartPipelineExecution"
# StopPipelineExecution's refusal for an execution no longer in progress
# (https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_StopPipelineExecution.html).
NOT_STOPPABLE = "PipelineExecutionNotStoppableException"
# PipelineExecution statuses of an execution that ended; a pipeline update ends those in flight as `Cancelled`
# (https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_PipelineExecution.html).
ENDED = frozenset({"Cancelled", "Stopped", "Failed", "Superseded", "Succeeded"})


class SelfUpdateError(Exception):
    """The self-update cannot go on; one line saying why and what to do."""


def role_of(arn: str) -> str:
    """`arn:aws:sts::1:assumed-role/ROLE/session` -> `1:ROLE`; other ARNs unchanged."""
    prefix, _, resource = arn.partition(":assumed-role/")
    if not resource:
        return arn
    return f"{prefix.rsplit(':', 1)[-1]}:{resource.split('/')[0]}"


def source_revision(codepipeline: CodePipelineClient, pipeline: str, execution_id: str) -> tuple[str, str, str]:
    """(commit, trigger type, trigger detail) of the running execution."""
    execution = codepipeline.get_pipeline_execution(pipelineName=pipeline, pipelineExecutionId=execution_id)[
        "pipelineExecution"
    ]
    revisions = [r for r in execution.get("artifactRevisions", []) if r.get("name") == SOURCE_ACTION]
    if not revisions or not revisions[0].get("revisionId"):
        raise SelfUpdateError(f"execution {execution_id} of {pipeline} has no {SOURCE_ACTION} revision to restart with")
    trigger = execution.get("trigger", {})
    return revisions[0]["revisionId"], trigger.get("triggerType", ""), trigger.get("triggerDetail", "")


def ended_status(codepipeline: CodePipelineClient, pipeline: str, execution_id: str) -> str | None:
    """The status of `execution_id` when it has ended, else None."""
    status = codepipeline.get_pipeline_execution(pipelineName=pipeline, pipelineExecutionId=execution_id)[
        "pipelineExecution"
    ].get("status", "")
    return status if status in ENDED else None


def plan_pipeline_stack(terraform: Terraform, stack_dir: Path, plan_file: Path) -> StackPlan | None:
    """The `pipeline` stack's saved plan in `plan_file`, read; None when it changes nothing."""
    terraform.init(stack_dir)
    if not terraform.plan(stack_dir, plan_file):
        return None
    try:
        return parse_plan(PIPELINE_STACK, terraform.show_json(stack_dir, plan_file), "the pipeline plan")
    except PlanError as error:
        raise SelfUpdateError(str(error)) from None


def self_update(
    *,
    terraform: Terraform,
    cdktf_out: Path,
    work_dir: Path,
    pipeline: str,
    execution_id: str,
    codepipeline: CodePipelineClient,
    sts: STSClient,
    allowed: frozenset[str] = frozenset(),
    out: Callable[[str], None] = print,
) -> int:
    stack_dir = cdktf_out / "stacks" / PIPELINE_STACK
    if not (stack_dir / "cdk.tf.json").exists():
        raise SelfUpdateError(f"{stack_dir}/cdk.tf.json does not exist: run `make synth` before the self-update")
    work_dir.mkdir(parents=True, exist_ok=True)
    plan_file = (work_dir / "pipeline.tfplan").resolve()
    # The update role applies this plan: before its init, the commit's stacks pass the policy check the
    # stages run (no provisioner, foreign provider or remote module runs with the update role's rights).
    policy_check.enforce(cdktf_out, None, out, StageError)
    stack_dir = isolated(stack_dir)
    plan = plan_pipeline_stack(terraform, stack_dir, plan_file)
    if plan is None:
        out(f"{pipeline} already runs this commit's definition: going on")
        return 0
    summary = render([plan], allowed)
    (work_dir / "summary.md").write_text(summary)
    out(summary)
    blocked = refused([plan], allowed)
    if blocked:
        raise SelfUpdateError(
            f"the pipeline plan destroys stateful {', '.join(blocked)}: an administrator applies that on purpose "
            f"(`make review-pipeline EXECUTION={execution_id}`), or set CANVALO_ALLOW_DESTROY on the update-pipeline "
            "project"
        )
    widening = broadenings(plan)
    if widening:
        raise SelfUpdateError(
            f"the pipeline plan broadens what the pipeline may do ({len(widening)} change(s), first "
            f"{widening[0].reason} {widening[0].address}; all in the summary above): the pipeline never widens "
            f"itself; an administrator reviews the plan and applies it with `make review-pipeline EXECUTION={execution_id}`"
        )
    commit, trigger_type, trigger_detail = source_revision(codepipeline, pipeline, execution_id)
    if trigger_type == STARTED_BY_API and role_of(trigger_detail) == role_of(sts.get_caller_identity()["Arn"]):
        raise SelfUpdateError(
            f"the pipeline stack still plans changes in execution {execution_id}, which the self-update started "
            "right after applying it: the stack never converges (a perpetual diff); fix it and push again"
        )
    out(f"applying the new definition of {pipeline}")
    terraform.apply(stack_dir, plan_file)
    started = codepipeline.start_pipeline_execution(
        name=pipeline,
        # No source revision: the new execution takes the branch head when it starts. Replaying this
        # commit would queue it behind newer commits already waiting, and deploy it over them.
        # A retry of this action must not start a second execution.
        clientRequestToken=f"self-update-{execution_id}",
    )["pipelineExecutionId"]
    reason = (
        f"the self-update changed the pipeline; execution {started} runs the branch head "
        f"(commit {commit} or newer) on the new definition"
    )
    try:
        codepipeline.stop_pipeline_execution(
            pipelineName=pipeline, pipelineExecutionId=execution_id, abandon=True, reason=reason
        )
    except ClientError as error:
        code = error.response["Error"]["Code"]
        ended = ended_status(codepipeline, pipeline, execution_id) if code == NOT_STOPPABLE else None
        if ended is None:
            raise SelfUpdateError(
                f"{reason}, but stopping this execution failed ({code}): "
                "failing it so that the old definition deploys nothing"
            ) from None
        # AWS ends the executions in flight on a pipeline update itself (their status `Cancelled`): this one
        # may be ended before it could stop itself, which is what stopping was for.
        out(f"{reason}; this execution ({execution_id}) was already ended by the update ({ended})")
        return 0
    out(f"{reason}; this execution ({execution_id}) is stopped")
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    terraform: Terraform | None = None,
    codepipeline: CodePipelineClient | None = None,
    sts: STSClient | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.self_update", description=__doc__.splitlines()[0])
    parser.add_argument("--cdktf-out", type=Path, required=True, help="the cdktf.out synthesized from this commit")
    parser.add_argument("--work-dir", type=Path, default=Path("self-update"), help="where the saved plan goes")
    args = parser.parse_args(argv)
    missing = [name for name in ("PIPELINE_NAME", "PIPELINE_EXECUTION_ID") if not environ.get(name)]
    if missing:
        print(f"error: {' and '.join(missing)} not set: the UpdatePipeline action passes them", file=sys.stderr)
        return 2
    session = boto3.session.Session()
    try:
        return self_update(
            terraform=terraform or Terraform(),
            cdktf_out=args.cdktf_out,
            work_dir=args.work_dir,
            pipeline=environ["PIPELINE_NAME"],
            execution_id=environ["PIPELINE_EXECUTION_ID"],
            codepipeline=codepipeline or session.client("codepipeline"),
            sts=sts or session.client("sts"),
            allowed=allowed_destroys([], environ),
        )
    except (SelfUpdateError, StageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ClientError, BotoCoreError) as error:
        print(f"error: AWS refused the self-update: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
