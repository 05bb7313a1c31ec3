"""Review a pipeline change UpdatePipeline refused, and apply it, without running the commit's code.

    make review-pipeline EXECUTION=<pipeline execution id>      # with beta (pipeline account) administrator credentials

UpdatePipeline applies a change of the `pipeline` stack itself only when it widens nothing; it refuses one
that broadens what the pipeline may do, that changes the pinned toolkit or a build project: those are an
administrator's. Running `cdktn deploy pipeline` from that commit would run its synthesis code (main.py,
stacks/, modules/ and its dependencies) with the administrator's credentials. This takes the commit's
synthesis instead, as data: the `pipeline` stack's `cdk.tf.json` from the Build action's output artifact of
that execution (ListActionExecutions names its S3 location). Your own checkout's toolkit checks it
(pipelines/policy_check.py), plans it in a fresh directory (pipelines/terraform_workdir.py), shows the plan
summary UpdatePipeline showed, and applies exactly that saved plan once you answer `yes`. Then release the
change again (CodePipeline, Release change): UpdatePipeline finds nothing left to change.

A change of the toolkit (pipelines/, names.py) is code that later runs with the pipeline's rights: read its
diff (`git diff <the pipeline's commit> <this commit> -- pipelines names.py`) before you answer.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines import policy_check
from pipelines.plan_summary import allowed_destroys, refused, render
from pipelines.self_update import PIPELINE_STACK, SelfUpdateError, plan_pipeline_stack, source_revision
from pipelines.terraform_stage import StageError, Terraform
from pipelines.terraform_workdir import STACK_FILE, isolated
from stacks.config import ConfigError, load_from_environment
from tools.requirements import PROJECT_ROOT

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient
    from mypy_boto3_s3 import S3Client

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# The Build action and its output artifact (modules/pipeline.py BUILD_ARTIFACT).
BUILD_ACTION = "Build"
BUILD_ARTIFACT = "Build"
# What is taken from that artifact: the manifest the policy check reads and the one stack, nothing else.
TAKEN = ("cdktf.out/manifest.json", f"cdktf.out/stacks/{PIPELINE_STACK}/{STACK_FILE}")


class ReviewError(Exception):
    """The change cannot be reviewed; one line saying why and what to do."""


def build_artifact(codepipeline: CodePipelineClient, pipeline: str, execution_id: str) -> tuple[str, str]:
    """(bucket, key) of the Build action's output artifact in `execution_id`."""
    pages = codepipeline.get_paginator("list_action_executions").paginate(
        pipelineName=pipeline, filter={"pipelineExecutionId": execution_id}
    )
    for page in pages:
        for action in page.get("actionExecutionDetails", []):
            if action.get("actionName") != BUILD_ACTION or action.get("status") != "Succeeded":
                continue
            for artifact in action.get("output", {}).get("outputArtifacts", []):
                location = artifact.get("s3location", {})
                if artifact.get("name") == BUILD_ARTIFACT and location.get("bucket") and location.get("key"):
                    return location["bucket"], location["key"]
    raise ReviewError(
        f"execution {execution_id} of {pipeline} has no succeeded {BUILD_ACTION} action with a {BUILD_ARTIFACT} "
        "artifact: pass the id of the execution whose UpdatePipeline refused the change (the console shows it)"
    )


def take_synthesis(s3: S3Client, bucket: str, key: str, into: Path) -> Path:
    """Extract TAKEN from the artifact into `into`; the cdktf.out directory they form."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except zipfile.BadZipFile:
        raise ReviewError(f"s3://{bucket}/{key} is not a zip archive: is it the Build action's artifact?") from None
    with archive:
        names = set(archive.namelist())
        for name in TAKEN:
            if name not in names:
                raise ReviewError(f"s3://{bucket}/{key} holds no {name}: the Build action of that execution failed")
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
    return into / "cdktf.out"


def review_pipeline(
    *,
    codepipeline: CodePipelineClient,
    s3: S3Client,
    terraform: Terraform,
    pipeline: str,
    execution_id: str,
    work_dir: Path,
    confirm: Callable[[str], str],
    allowed: frozenset[str] = frozenset(),
    out: Callable[[str], None] = print,
) -> int:
    commit = source_revision(codepipeline, pipeline, execution_id)[0]
    bucket, key = build_artifact(codepipeline, pipeline, execution_id)
    out(f"{pipeline} execution {execution_id}, commit {commit}: the pipeline stack from s3://{bucket}/{key}")
    cdktf_out = take_synthesis(s3, bucket, key, work_dir)
    policy_check.enforce(cdktf_out, PIPELINE_STACK, out, StageError)
    stack_dir = isolated(cdktf_out / "stacks" / PIPELINE_STACK)
    plan_file = (work_dir / "pipeline.tfplan").resolve()
    plan = plan_pipeline_stack(terraform, stack_dir, plan_file)
    if plan is None:
        out(f"{pipeline} already runs this definition: nothing to apply; release the change again")
        return 0
    out(render([plan], allowed))
    blocked = refused([plan], allowed)
    if blocked:
        raise ReviewError(
            f"the plan destroys stateful {', '.join(blocked)}: if you mean it, run again with "
            f"CANVALO_ALLOW_DESTROY={','.join(blocked)}"
        )
    answer = confirm(f"Apply exactly this plan of commit {commit} to {pipeline}? Only 'yes' applies: ")
    if answer.strip() != "yes":
        out("not applied: nothing changed")
        return EXIT_FAILED
    terraform.apply(stack_dir, plan_file)
    out(f"applied; release the change again (CodePipeline, Release change) so that {commit} runs on it")
    return 0


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.review_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--execution", required=True, help="the pipeline execution whose UpdatePipeline refused")
    parser.add_argument("--work-dir", type=Path, default=Path("review-pipeline"))
    args = parser.parse_args(argv)
    try:
        project = load_from_environment(environ, PROJECT_ROOT)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    session = boto3.session.Session(region_name=project.pipeline_stage.region)
    work_dir = args.work_dir / args.execution
    try:
        return review_pipeline(
            codepipeline=session.client("codepipeline"),
            s3=session.client("s3"),
            terraform=Terraform(),
            pipeline=project.pipeline_name,
            execution_id=args.execution,
            work_dir=work_dir,
            confirm=input,
            allowed=allowed_destroys([], environ),
        )
    except (ReviewError, SelfUpdateError, StageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ClientError, BotoCoreError) as error:
        print(
            f"error: AWS refused ({error}): run with the pipeline account's administrator credentials", file=sys.stderr
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
