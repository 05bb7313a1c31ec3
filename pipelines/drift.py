"""Daily drift check: does the live infrastructure of a stage still match what Terraform last applied?

    python -m pipelines.drift --stage prod [--commit SHA] [--topic-arn ARN] [--work-dir DIR]
    python -m pipelines.drift store-applied --stage S --stack-json PATH --commit SHA   # after an Apply succeeded
    python -m pipelines.drift record --stage S --commit SHA [--image IMAGE] [--execution-id ID] [--outputs DIR]
    python -m pipelines.drift previous --stage S --into DIR      # before an Apply: the last verified release
    python -m pipelines.drift restored --stage S --record DIR    # after a restore: the release it put back
    python -m pipelines.drift deployed-commit --stage prod

The check plans the stack JSON the stage's last successful Apply applied, not the branch head, and runs
no code of any commit: it never checks a commit out or synthesizes one (a commit's `make synth` would run
that commit's code with the pipeline's plan role). After a stage's Apply succeeds (applied, rollout
verified, smoke check passed) the deploy action runs `store-applied`, which puts the `cdk.tf.json` that
Apply applied (the Build artifact's copy, whose SHA-256 the approved manifest holds) into the pipeline's
artifact bucket as `applied/<stage>/cdk.tf.json`, with the commit id as the object's `commit` metadata,
and then `record`, which writes the commit id to the SSM String parameter `/<app>/<stage>/deployed-commit`
in the pipeline account (the `pipeline` stack creates it with the placeholder `never-deployed`). The
bucket's policy lets only that stage's Apply role write `applied/<stage>/`. The drift buildspec reads
the parameter with `deployed-commit`, which prints the commit, or nothing (exit 0) while the stage was
never deployed; the check then fetches `applied/<stage>/cdk.tf.json` into a fresh directory of its work
directory, laid out as a `cdktf.out` of that one stack. A stage deployed before Applies stored what they
applied (no such object), an object that is not a JSON stack, or one of another commit than the parameter
names, is a check that cannot run: one line says what is wrong and that the stage's next Apply records
it. The same `record` also writes the stage's release record (`pipelines/release.py`: commit, image,
execution, time) to `/<app>/<stage>/release`, which `make status` reads. `previous` copies that record
into a restore's directory before the Apply; `restored` writes, after a restore, the record of the
release it put back (whose stack JSON is still the stored one: only a successful Apply stores).

The recorded JSON is the commit's data, so it passes the same checks as Plan's (`policy_check`, then
Terraform on a copy of `cdk.tf.json` alone, `terraform_workdir.isolated`). For the stage's stack
(`<stage>`) it runs `terraform plan -refresh-only -detailed-exitcode -lock=false`: refresh-only, because
it compares the real resources with the state; without the state lock, because it writes no state and
must neither wait for nor block a deploy. Only real drift counts, from the plan's `resource_drift`:
- a deleted resource is drift;
- an update is drift unless every attribute that differs is in that resource's `lifecycle.ignore_changes`
  in the stack's `cdk.tf.json` (the ECS service ignores `desired_count`, which auto scaling moves). Attributes
  are compared at the top level of `change.before`/`change.after`: an ignore_changes entry that names a
  nested path (`tags["x"]`) does not ignore its whole top-level attribute, so such a change is reported;
- output changes alone are not drift.

When any stack drifted it publishes one message to the SNS topic (ARN from --topic-arn or
NOTIFICATION_TOPIC_ARN) naming the stacks and each changed or deleted resource, and exits 3. A check that
cannot run (no recorded stack, terraform fails) is published too, and exits 1: a silent daily job that
stopped working would look like a clean prod. Exit 0 when everything matches. Each message is mailed once: the
SHA-256 digest of what it reports (sorted stack, address and action; or the failure's text) is kept in the
SSM String parameter `/<app>/<stage>/drift-digest`, and a report whose digest is the stored one is not
published again (the exit status is the same either way). A clean check resets the digest to `none`, and
if something had been mailed before, publishes one short "clean again" message, so the next drift mails.
Whenever it got that far, it touches `<work-dir>/reported`: the buildspec's post_build publishes a
failure only when that marker is missing (the build failed before this script could report).

The application's name, the pipeline account's region, its artifact bucket and the stage's plan role come
from the action's environment (`APP_NAME`, `PIPELINE_REGION`, `ARTIFACT_BUCKET`, `<STAGE>_*`), which the
pipeline stack synthesizes (pipelines/run_env.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from names import (
    NEVER_DEPLOYED,
    NOTHING_PUBLISHED,
    applied_stack_key,
    deployed_commit_parameter,
    drift_digest_parameter,
    release_parameter,
)
from pipelines import policy_check
from pipelines.plan_summary import PlanError, ResourceChange, parse_changes
from pipelines.release import PREVIOUS_FILE, RESTORED_FILE, RecordError, ReleaseRecord, read_record_file
from pipelines.run_env import RunEnvironmentError, StageRun, artifact_bucket, pipeline_region, stage_run
from pipelines.stage_credentials import write_profile
from pipelines.terraform_stage import EXIT_FAILED, StageError, Terraform, running_with, stage_stacks
from pipelines.terraform_workdir import STACK_FILE, isolated
from pipelines.verify_rollout import RolloutError, read_release

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

# The stage role the check plans with: the read-only one, like every Plan.
DRIFT_ROLE = "plan"
EXIT_DRIFT = 3
EXIT_BAD_INPUT = 2
# What an action in a refresh-only plan's `resource_drift` means for the real resource.
DRIFT_MEANING = {"update": "changed outside Terraform", "destroy": "deleted outside Terraform"}
SNS_SUBJECT_LIMIT = 100
# Touched in the work directory once this script has reported; drift.yml's post_build reads it.
REPORTED_MARKER = "reported"
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# `aws_ecs_service.backend[0]` and `aws_x.y["key"]` are instances of the resource `aws_ecs_service.backend`.
INSTANCE_KEY = re.compile(r"\[[^\]]*\]$")
# An ignore_changes of "all" ignores every attribute.
ALL_ATTRIBUTES = "all"
# The applied stack's S3 user metadata naming the commit it was synthesized from (`x-amz-meta-commit`).
COMMIT_METADATA = "commit"
# Where, in the work directory, the check lays the fetched stack out as a cdktf.out of that one stack.
APPLIED_OUT = "applied-cdktf.out"
# S3's error codes for an object that is not there (GetObject; HeadObject answers a bare 404).
MISSING_OBJECT = frozenset({"NoSuchKey", "404"})


class SSMClient(Protocol):
    """The two SSM Parameter Store calls this script makes (boto3's `ssm` client has them)."""

    def get_parameter(self, *, Name: str) -> Mapping[str, Any]: ...  # noqa: N803 (boto3's names)

    def put_parameter(self, *, Name: str, Value: str, Type: str, Overwrite: bool) -> Mapping[str, Any]: ...  # noqa: N803


@dataclass(frozen=True)
class StackDrift:
    stack: str
    resources: list[ResourceChange]


# -- what counts as drift -------------------------------------------------------------------------


def ignored_attributes(document: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """`type.name` -> the top-level attributes its `lifecycle.ignore_changes` names (`{"all"}` for all)."""
    ignored: dict[str, frozenset[str]] = {}
    for kind, by_name in (document.get("resource") or {}).items():
        for name, body in (by_name or {}).items():
            rule = ((body or {}).get("lifecycle") or {}).get("ignore_changes")
            if rule == ALL_ATTRIBUTES:
                ignored[f"{kind}.{name}"] = frozenset({ALL_ATTRIBUTES})
            elif isinstance(rule, list):
                # Only a whole top-level attribute is ignored; `tags["x"]` ignores one key of `tags`.
                ignored[f"{kind}.{name}"] = frozenset(str(a) for a in rule if re.fullmatch(r"[A-Za-z0-9_-]+", str(a)))
    return ignored


def load_ignored(stack_dir: Path) -> dict[str, frozenset[str]]:
    path = stack_dir / "cdk.tf.json"
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise StageError(f"cannot read {path}: {error.strerror}: the check plans the stack its stage applied") from None
    except json.JSONDecodeError as error:
        raise StageError(f"{path} is not JSON ({error.msg}): the check plans the stack its stage applied") from None
    return ignored_attributes(document if isinstance(document, Mapping) else {})


def changed_attributes(change: ResourceChange) -> frozenset[str] | None:
    """The top-level attributes whose value differs between before and after; None when not comparable."""
    before, after = change.before, change.after
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return None
    return frozenset(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def is_real_drift(change: ResourceChange, ignored: Mapping[str, frozenset[str]]) -> bool:
    """A deletion always; an update when an attribute outside the resource's ignore_changes differs."""
    if change.action == "no-op":
        return False
    if change.action != "update":
        return True
    rule = ignored.get(INSTANCE_KEY.sub("", change.address), frozenset())
    if ALL_ATTRIBUTES in rule:
        return False
    changed = changed_attributes(change)
    return changed is None or bool(changed - rule)


def check_stack(terraform: Terraform, stack_dir: Path, plan_file: Path) -> list[ResourceChange]:
    """The really drifted resources of one stack; empty when it matches (output changes alone included)."""
    ignored = load_ignored(stack_dir)
    stack_dir = isolated(stack_dir)
    terraform.init(stack_dir)
    if not terraform.plan(stack_dir, plan_file, "-refresh-only", "-lock=false"):
        return []
    document = terraform.show_json(stack_dir, plan_file)
    try:
        changes = parse_changes(document.get("resource_drift") or [], stack_dir.name)
    except PlanError as error:
        raise StageError(str(error)) from None
    return [c for c in changes if is_real_drift(c, ignored)]


# -- the stack the stage applied ------------------------------------------------------------------


def parse_stack(body: bytes, where: str, fix: str) -> dict[str, Any]:
    """`body` as a stack's JSON object, else a StageError naming `where` and the `fix`."""
    try:
        document = json.loads(body)
    except UnicodeDecodeError as error:
        raise StageError(f"{where} is not UTF-8 JSON ({error.reason}): {fix}") from None
    except json.JSONDecodeError as error:
        raise StageError(f"{where} is not JSON ({error.msg} at line {error.lineno}): {fix}") from None
    if not isinstance(document, dict):
        raise StageError(f"{where} holds a JSON {type(document).__name__}, not a stack's object: {fix}")
    return document


@dataclass(frozen=True)
class AppliedStacks:
    """The stack JSON each stage's last successful Apply applied, kept in the pipeline's artifact bucket."""

    s3: S3Client
    bucket: str

    def where(self, stage: str) -> str:
        return f"s3://{self.bucket}/{applied_stack_key(stage)}"

    def store(self, stage: str, body: bytes, commit: str) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=applied_stack_key(stage),
            Body=body,
            ContentType="application/json",
            Metadata={COMMIT_METADATA: commit},
        )

    def fetch(self, stage: str, into: Path, commit: str | None) -> Path:
        """A fresh `into`, laid out as a cdktf.out of the stage's one stack: the recorded JSON, byte for byte.
        `commit`, when given, is the one the stage last applied (its deployed-commit record): a stack
        recorded for another commit is refused, so the check never plans a configuration the stage left."""
        where, fix = self.where(stage), f"the next successful Apply of {stage} records it again"
        try:
            found = self.s3.get_object(Bucket=self.bucket, Key=applied_stack_key(stage))
            body = found["Body"].read()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in MISSING_OBJECT:
                raise StageError(
                    f"no stack JSON recorded at {where}: {stage} was last applied before its Apply recorded what it "
                    f"applied; the next successful Apply of {stage} records it"
                ) from None
            raise StageError(f"cannot read {where} ({error}): the drift check's role reads it") from None
        except BotoCoreError as error:
            raise StageError(f"cannot read {where} ({error}): the drift check's role reads it") from None
        parse_stack(body, where, fix)
        recorded = found.get("Metadata", {}).get(COMMIT_METADATA)
        if commit is not None and recorded != commit:
            raise StageError(
                f"{where} is the stack of commit {recorded or 'unknown'}, not of {commit}, which {stage} "
                f"last applied: {fix}"
            )
        if into.exists():
            shutil.rmtree(into)
        (into / "stacks" / stage).mkdir(parents=True)
        (into / "stacks" / stage / STACK_FILE).write_bytes(body)
        manifest = {"stacks": {stage: {"name": stage, "synthesizedStackPath": f"stacks/{stage}/{STACK_FILE}"}}}
        (into / "manifest.json").write_text(json.dumps(manifest, indent=1))
        return into


# -- what is mailed, and only once ----------------------------------------------------------------


def drift_digest(drifted: Sequence[StackDrift]) -> str:
    """Stable whatever the order of stacks and plan entries: the sorted (stack, address, action) lines."""
    lines = sorted(f"{d.stack} {c.address} {c.action}" for d in drifted for c in d.resources)
    return hashlib.sha256("\n".join(["drift", *lines]).encode()).hexdigest()


def failure_digest(message: str) -> str:
    return hashlib.sha256(f"failure\n{message}".encode()).hexdigest()


def describe(stage: str, drifted: Sequence[StackDrift], commit: str | None = None) -> tuple[str, str]:
    """(subject, body) of the drift notification."""
    subject = f"Canvalo {stage}: drift in {', '.join(d.stack for d in drifted)}"
    if len(subject) > SNS_SUBJECT_LIMIT:
        subject = f"Canvalo {stage}: drift in {len(drifted)} stacks"
    applied = f" (commit {commit})" if commit else ""
    lines = [f"The live infrastructure of {stage} no longer matches what Terraform last applied{applied}.", ""]
    for drift in drifted:
        lines.append(f"{drift.stack}:")
        lines += [f"  {c.address}: {DRIFT_MEANING.get(c.action, c.action)}" for c in drift.resources]
        lines.append("")
    lines += [
        "Either undo the manual change, or bring it into the code and deploy it through the pipeline.",
        f"Details: `terraform plan -refresh-only` in cdktf.out/stacks/<stack> with {stage}'s deploy role.",
        "This drift is mailed once; the next mail comes when it changes or is resolved.",
    ]
    return subject, "\n".join(lines)


@dataclass(frozen=True)
class Notifier:
    """Publishes to the topic only what differs from the last thing published (its digest in SSM)."""

    sns: SNSClient
    topic_arn: str
    ssm: SSMClient
    digest_parameter: str
    err: Callable[[str], None]

    def last_digest(self) -> str | None:
        try:
            return str(self.ssm.get_parameter(Name=self.digest_parameter)["Parameter"]["Value"])
        except (ClientError, BotoCoreError) as error:
            # Better mailed twice than not at all: without the stored digest, publish.
            self.err(f"warning: cannot read {self.digest_parameter} ({error}): publishing without deduplication")
            return None

    def store(self, digest: str) -> None:
        try:
            self.ssm.put_parameter(Name=self.digest_parameter, Value=digest, Type="String", Overwrite=True)
        except (ClientError, BotoCoreError) as error:
            self.err(f"warning: cannot write {self.digest_parameter} ({error}): the next run may mail this again")

    def publish_once(self, digest: str, subject: str, message: str) -> bool:
        """Publish unless the last published message had this digest; True when it was published."""
        if self.last_digest() == digest:
            return False
        self.sns.publish(TopicArn=self.topic_arn, Subject=subject, Message=message)
        self.store(digest)
        return True

    def reset(self, subject: str, message: str) -> bool:
        """Nothing to report: if something was mailed before, say so once and forget it."""
        last = self.last_digest()
        if last == NOTHING_PUBLISHED:
            return False
        if last is not None:
            self.sns.publish(TopicArn=self.topic_arn, Subject=subject, Message=message)
        self.store(NOTHING_PUBLISHED)
        return last is not None


def check_stage(
    *,
    terraform: Terraform,
    stage: str,
    applied: AppliedStacks,
    work_dir: Path,
    notifier: Notifier,
    commit: str | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """`commit`: the one the stage last applied, which the recorded stack must be of, and which the mail names."""
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Inside the try: a stage with no (or a broken) record is a check that cannot run, and is mailed so.
        cdktf_out = applied.fetch(stage, work_dir / APPLIED_OUT, commit)
        # The applied stack is the commit's data: the same check as Plan's first.
        policy_check.enforce(cdktf_out, stage, out, StageError)
        drifted = []
        for stack in stage_stacks(cdktf_out, stage):
            resources = check_stack(terraform, cdktf_out / "stacks" / stack, (work_dir / f"{stack}.tfplan").resolve())
            out(f"{stack}: {'drifted' if resources else 'matches'}")
            if resources:
                drifted.append(StackDrift(stack, resources))
    except StageError as error:
        message = f"The daily drift check of {stage} failed: {error}. Until it runs, drift goes unnoticed."
        if not notifier.publish_once(
            failure_digest(message), f"Canvalo {stage}: the drift check could not run", message
        ):
            out("the same failure was mailed before: not published again")
        (work_dir / REPORTED_MARKER).touch()
        raise
    if not drifted:
        out(f"{stage} matches its Terraform state")
        if notifier.reset(
            f"Canvalo {stage}: no drift",
            f"The daily drift check of {stage} ran and found no drift: what was mailed before is resolved.",
        ):
            out("published that the drift (or failure) mailed before is resolved")
        (work_dir / REPORTED_MARKER).touch()
        return 0
    subject, body = describe(stage, drifted, commit)
    if not notifier.publish_once(drift_digest(drifted), subject, body):
        out("this drift was mailed before: not published again")
    (work_dir / REPORTED_MARKER).touch()
    out(body)
    return EXIT_DRIFT


# -- the commit the stage runs --------------------------------------------------------------------


def record(ssm: SSMClient, parameter: str, value: str) -> None:
    ssm.put_parameter(Name=parameter, Value=value, Type="String", Overwrite=True)


def deployed_commit(ssm: SSMClient, parameter: str) -> str | None:
    """The commit the stage last applied, or None while it holds the pipeline stack's placeholder."""
    value = str(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
    if value == NEVER_DEPLOYED:
        return None
    if not COMMIT.fullmatch(value):
        raise StageError(f"{parameter} holds {value!r}, not a commit id: the deploy action writes it after an Apply")
    return value


# -- command line ---------------------------------------------------------------------------------


def _ssm(environ: Mapping[str, str]) -> SSMClient:
    # The parameters live in the pipeline account, in its region.
    return cast(SSMClient, boto3.session.Session().client("ssm", region_name=pipeline_region(environ)))


def is_commit(commit: str) -> bool:
    """Whether `commit` is a full commit id; if not, says so in one line on stderr."""
    if COMMIT.fullmatch(commit):
        return True
    print(
        f"error: --commit {commit!r} is not a full commit id: pass $CODEBUILD_RESOLVED_SOURCE_VERSION", file=sys.stderr
    )
    return False


def _applied_stacks(s3: S3Client | None, environ: Mapping[str, str]) -> AppliedStacks:
    # The artifact bucket lives in the pipeline account, in its region, like the parameters.
    client = s3 or boto3.session.Session().client("s3", region_name=pipeline_region(environ))
    return AppliedStacks(client, artifact_bucket(environ))


def after_an_apply(command: str, description: str) -> argparse.ArgumentParser:
    """The parser of a command the Apply runs once it succeeded: the stage and the commit it applied."""
    parser = argparse.ArgumentParser(
        prog=f"python -m pipelines.drift {command}",
        description=f"After a stage's Apply succeeded (rollout verified, smoke check passed): {description}.",
    )
    parser.add_argument("--stage", required=True)
    parser.add_argument("--commit", required=True, help="the applied commit ($CODEBUILD_RESOLVED_SOURCE_VERSION)")
    return parser


def main_store_applied(argv: Sequence[str], *, s3: S3Client | None, environ: Mapping[str, str]) -> int:
    parser = after_an_apply(
        "store-applied",
        "keep the stack JSON it applied in the artifact bucket, which the drift check plans instead of synthesizing "
        "a commit",
    )
    parser.add_argument(
        "--stack-json", type=Path, required=True, help="the cdk.tf.json the Apply applied (the Build artifact's)"
    )
    args = parser.parse_args(argv)
    if not is_commit(args.commit):
        return EXIT_BAD_INPUT
    stage = stage_run(environ, args.stage)
    applied = _applied_stacks(s3, environ)
    fix = "pass the cdk.tf.json the Apply applied: $CODEBUILD_SRC_DIR_Build/cdktf.out/stacks/<stage>/cdk.tf.json"
    try:
        body = args.stack_json.read_bytes()
        # What the drift check would refuse is refused here, where the Apply that made it can still be retried.
        parse_stack(body, str(args.stack_json), fix)
    except OSError as error:
        print(f"error: cannot read {args.stack_json}: {error.strerror}: {fix}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        applied.store(stage.name, body, args.commit)
    except (ClientError, BotoCoreError) as error:
        print(
            f"error: could not store what {stage.name} applied in {applied.where(stage.name)}: {error}; retry the "
            "Apply (the drift check plans that object)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"{stage.name} applied commit {args.commit}: its stack JSON is {applied.where(stage.name)}")
    return 0


def main_record(argv: Sequence[str], *, ssm: SSMClient | None, environ: Mapping[str, str]) -> int:
    parser = after_an_apply(
        "record",
        "remember which commit it applied, for the drift check, and what it deployed, for `make status` and the "
        "next Apply",
    )
    parser.add_argument("--image", default="", help="the image the stage runs (python -m pipelines.release image)")
    parser.add_argument("--execution-id", default="", help="the pipeline execution ($PIPELINE_EXECUTION_ID)")
    parser.add_argument("--outputs", type=Path, help="the outputs directory of the apply: the service it runs")
    args = parser.parse_args(argv)
    if not is_commit(args.commit):
        return EXIT_BAD_INPUT
    running = None
    if args.outputs is not None:
        try:
            running = read_release(args.outputs)
        except RolloutError as error:
            # The release is verified either way; only the next restore's starting point is less precise.
            print(f"warning: the record names no task definition: {error}", file=sys.stderr)
    stage = stage_run(environ, args.stage)
    release = ReleaseRecord.now(commit=args.commit, image=args.image, execution_id=args.execution_id, running=running)
    return write_release(ssm or _ssm(environ), stage, release, "runs")


def write_release(ssm: SSMClient, stage: StageRun, release: ReleaseRecord, verb: str) -> int:
    """Both parameters, the commit first: drift reads one, `make status` and the next Apply the other."""
    parameter = deployed_commit_parameter(stage.app_name, stage.name)
    try:
        record(ssm, parameter, release.commit)
        record(ssm, release_parameter(stage.app_name, stage.name), release.to_json())
    except (ClientError, BotoCoreError) as error:
        print(f"error: could not record what {stage.name} {verb} in {parameter}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{stage.name} {verb} {release.commit} (recorded in {parameter}), image {release.image or 'unknown'}")
    return 0


def main_previous(argv: Sequence[str], *, ssm: SSMClient | None, environ: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.drift previous",
        description="Before a stage's Apply: copy its release record (the last verified release) into DIR, "
        "for `pipelines.restore record`.",
    )
    parser.add_argument("--stage", required=True)
    parser.add_argument("--into", type=Path, required=True, help="the restore directory of this build")
    args = parser.parse_args(argv)
    stage = stage_run(environ, args.stage)
    parameter = release_parameter(stage.app_name, stage.name)
    try:
        value = str((ssm or _ssm(environ)).get_parameter(Name=parameter)["Parameter"]["Value"])
        previous = ReleaseRecord.parse(parameter, value)
    except (ClientError, BotoCoreError) as error:
        # Without it a restore could put back what a half-finished attempt left, not the verified release.
        print(f"error: cannot read {parameter} before the apply: {error}; retry the action", file=sys.stderr)
        return EXIT_FAILED
    except RecordError as error:
        print(
            f"error: {error}; to go on, record what {stage.name} runs: python -m pipelines.drift record --stage "
            f"{stage.name} --commit <its commit> (pipeline account), then retry the Apply",
            file=sys.stderr,
        )
        return EXIT_FAILED
    args.into.mkdir(parents=True, exist_ok=True)
    (args.into / PREVIOUS_FILE).write_text(value)
    print(
        f"{stage.name}'s last verified release: {previous.commit}, {previous.task_definition or 'no task definition'}"
        if previous
        else f"{stage.name} has no verified release yet ({parameter} holds {NEVER_DEPLOYED})"
    )
    return 0


def main_restored(argv: Sequence[str], *, ssm: SSMClient | None, environ: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.drift restored",
        description="After `pipelines.restore back`: record the release it put back, so that `make status` and "
        "the drift check describe what runs.",
    )
    parser.add_argument("--stage", required=True)
    parser.add_argument("--record", type=Path, required=True, help="the restore directory `restore back` used")
    args = parser.parse_args(argv)
    stage = stage_run(environ, args.stage)
    try:
        restored = read_record_file(args.record / RESTORED_FILE)
    except RecordError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    if restored is None:
        # A first deploy has no release to go back to, and a restore that failed put back nothing certain:
        # the record keeps naming the last verified release, which nothing after it replaced.
        print(
            f"{stage.name}: no restored release to record (first deploy, or the restore failed): "
            f"{release_parameter(stage.app_name, stage.name)} is left as it was",
            file=sys.stderr,
        )
        return 0
    return write_release(ssm or _ssm(environ), stage, restored, "is back on")


def main_deployed_commit(argv: Sequence[str], *, ssm: SSMClient | None, environ: Mapping[str, str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.drift deployed-commit",
        description="Print the commit the stage last applied; nothing while it was never deployed.",
    )
    parser.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    stage = stage_run(environ, args.stage)
    parameter = deployed_commit_parameter(stage.app_name, stage.name)
    try:
        commit = deployed_commit(ssm or _ssm(environ), parameter)
    except (ClientError, BotoCoreError) as error:
        print(f"error: cannot read {parameter}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    if commit is None:
        print(
            f"{stage.name} was never deployed ({parameter} holds {NEVER_DEPLOYED}): nothing to check", file=sys.stderr
        )
    else:
        print(commit)
    return 0


def main_check(
    argv: Sequence[str],
    *,
    terraform: Terraform | None,
    sns: SNSClient | None,
    ssm: SSMClient | None,
    s3: S3Client | None,
    environ: Mapping[str, str],
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--topic-arn", default=environ.get("NOTIFICATION_TOPIC_ARN"))
    parser.add_argument("--work-dir", type=Path, default=Path("drift"))
    parser.add_argument(
        "--commit",
        help="the commit the stage last applied (deployed-commit): the stored stack must be its; the mail names it",
    )
    args = parser.parse_args(argv)
    if not args.topic_arn:
        print("error: no topic to notify: pass --topic-arn or set NOTIFICATION_TOPIC_ARN", file=sys.stderr)
        return EXIT_BAD_INPUT
    stage = stage_run(environ, args.stage)
    notifier = Notifier(
        sns=sns or boto3.session.Session().client("sns"),
        topic_arn=args.topic_arn,
        ssm=ssm or _ssm(environ),
        digest_parameter=drift_digest_parameter(stage.app_name, stage.name),
        err=lambda line: print(line, file=sys.stderr),
    )
    applied = _applied_stacks(s3, environ)
    try:
        # Terraform works in the stage as its role (the stacks' JSON names none the pipeline uses); the
        # notifier and the read of the recorded stack stay with this build's own credentials, in the pipeline account.
        stage_profile = write_profile(stage, args.work_dir / "aws-config", None, role=DRIFT_ROLE)
        return check_stage(
            terraform=terraform or Terraform(running_with(stage_profile)),
            stage=stage.name,
            applied=applied,
            work_dir=args.work_dir,
            notifier=notifier,
            commit=args.commit,
        )
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (ClientError, BotoCoreError) as error:
        print(f"error: could not publish to {args.topic_arn}: {error}", file=sys.stderr)
        return EXIT_FAILED


def main(
    argv: Sequence[str] | None = None,
    *,
    terraform: Terraform | None = None,
    sns: SNSClient | None = None,
    ssm: SSMClient | None = None,
    s3: S3Client | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] == ["store-applied"]:
            return main_store_applied(arguments[1:], s3=s3, environ=environ)
        if arguments[:1] == ["record"]:
            return main_record(arguments[1:], ssm=ssm, environ=environ)
        if arguments[:1] == ["previous"]:
            return main_previous(arguments[1:], ssm=ssm, environ=environ)
        if arguments[:1] == ["restored"]:
            return main_restored(arguments[1:], ssm=ssm, environ=environ)
        if arguments[:1] == ["deployed-commit"]:
            return main_deployed_commit(arguments[1:], ssm=ssm, environ=environ)
        return main_check(arguments, terraform=terraform, sns=sns, ssm=ssm, s3=s3, environ=environ)
    except RunEnvironmentError as error:
        # A variable the pipeline stack synthesizes is missing, or the stage is unknown.
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
