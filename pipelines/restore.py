"""Put a stage back on the release it ran before this Apply, when the release just deployed fails its smoke check.

    python -m pipelines.restore record   --plans DIR --into DIR          # before terraform_stage apply
    python -m pipelines.restore snapshot --bucket B --into DIR           # after it, before deploy_frontend
    python -m pipelines.restore back     --record DIR --plans DIR --outputs DIR --commit SHA [--failure FILE]

Within the Apply (deploy.yml, MODE=apply), which alone holds the stage's deploy role: a failed action ends
its CodePipeline stage, so nothing after the post-deploy tests could restore anything.
- `record` reads, from the saved plans, which ECS services existed before this Apply (`change.before` of
  each `aws_ecs_service`). What each goes back to is the task definition of the stage's last verified
  release, from its release record (`drift previous` copies it into the directory first): a retried Apply
  finds the service on whatever a half-finished earlier attempt left, which was never verified. Only a
  service the record names no task definition for (first deploy, an older record) is recorded as ECS runs it.
- `snapshot` keeps the frontend bucket's live unhashed files (index.html and the like, with their
  Content-Type, Cache-Control and sha256 metadata) and `.deploy/releases.json`: `deploy_frontend` overwrites
  those, while the previous release's content-hashed assets stay in the bucket (it deletes none without
  `--keep-old-assets-days`, which the pipeline does not pass).
- `back` updates each service to the task definition it ran before and waits (bounded) until its rollout
  completes; a revision Terraform deregistered when it replaced it (ECS refuses to update a service to an
  INACTIVE revision) is registered again with the same content first. Then it puts the frontend's unhashed
  files back as they were, deletes those the new release added, restores the release history and invalidates
  the changed paths in one invalidation. It exits 1 with one line: what failed, what was restored, and each
  other change of the applied plans, which it does NOT undo, with the command that does. Once every service
  is back it writes the previous release's record, with the revision the service now runs, into the
  directory (`restored-release.json`), for `drift restored` to write in the pipeline account.

A first deploy has nothing before it: `back` restores nothing and says so. A retried Apply after `back` does
not pass silently: `verify_rollout` fails while the service runs another task definition than the applied one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.deploy_frontend import RELEASES_KEY, invalidation_path, is_hashed
from pipelines.errors import CommandError
from pipelines.plan_summary import COUNTED, PlanError, ResourceChange, load_plan
from pipelines.release import PREVIOUS_FILE, RESTORED_FILE, RecordError, ReleaseRecord, read_record_file
from pipelines.terraform_stage import MANIFEST, PLAN_JSON, stage_environment
from pipelines.verify_rollout import Release, revision, verify

if TYPE_CHECKING:
    from mypy_boto3_cloudfront import CloudFrontClient
    from mypy_boto3_s3 import S3Client

EXIT_BAD_INPUT = 2
SERVICES_FILE = "services.json"
FRONTEND_FILE = "frontend.json"
FRONTEND_FILES = "frontend"
# Resources the restore itself puts back: the task definition a service runs, and nothing else of them.
RESTORED_TYPES = frozenset({"aws_ecs_task_definition"})
# Fields of DescribeTaskDefinition that RegisterTaskDefinition takes back unchanged.
REGISTER_FIELDS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
)
NOT_UNDONE_LISTED = 8


class RestoreError(CommandError):
    """The stage cannot be recorded or restored; one line saying what and what to do."""


# -- record: what runs before this Apply ------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    stack: str
    cluster: str
    name: str
    task_definition: str

    def to_json(self) -> dict[str, str]:
        return {
            "stack": self.stack,
            "cluster": self.cluster,
            "name": self.name,
            "task_definition": self.task_definition,
        }


def _plan_documents(plans_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(plans_dir.glob(f"*/{PLAN_JSON}")):
        try:
            documents.append((path.parent.name, json.loads(path.read_text())))
        except (OSError, ValueError) as error:
            raise RestoreError(f"cannot read {path} ({error}): pass the plans directory the Plan action made") from None
    return documents


def services_before(plans_dir: Path) -> list[tuple[str, Mapping[str, Any]]]:
    """(stack, the service's attributes as its state held them) for every ECS service that existed when planned."""
    found = []
    for stack, document in _plan_documents(plans_dir):
        for change in document.get("resource_changes") or []:
            before = (change.get("change") or {}).get("before")
            if change.get("type") == "aws_ecs_service" and change.get("mode") != "data" and before:
                found.append((stack, before))
    return found


def last_verified(into: Path) -> ReleaseRecord | None:
    try:
        return read_record_file(into / PREVIOUS_FILE)
    except RecordError as error:
        raise RestoreError(str(error)) from None


def record(plans_dir: Path, into: Path, ecs: Any, out: Callable[[str], None] = print) -> list[Service]:
    verified = last_verified(into)
    services = []
    for stack, before in services_before(plans_dir):
        cluster, name = str(before.get("cluster", "")), str(before.get("name", ""))
        live = str(before.get("task_definition", ""))
        try:
            described = ecs.describe_services(cluster=cluster, services=[name]).get("services") or []
        except (BotoCoreError, ClientError) as error:
            raise RestoreError(f"cannot read ECS service {name} in {cluster} before the apply: {error}") from None
        active = [s for s in described if s.get("status") == "ACTIVE"]
        if active:
            live = str(active[0].get("taskDefinition", live))
        if verified is not None and verified.task_definition and verified.runs_on(cluster, name):
            services.append(Service(stack, cluster, name, verified.task_definition))
            earlier = (
                f"; it runs {revision(live)} now, left by an earlier attempt"
                if live != verified.task_definition
                else ""
            )
            out(
                f"before this apply: ECS service {name}'s last verified release runs {revision(verified.task_definition)}{earlier}"
            )
        elif live:
            services.append(Service(stack, cluster, name, live))
            out(f"before this apply: ECS service {name} runs {revision(live)}")
    if not services:
        out("before this apply: no ECS service ran in this stage")
    into.mkdir(parents=True, exist_ok=True)
    (into / SERVICES_FILE).write_text(json.dumps([s.to_json() for s in services], indent=1))
    return services


# -- snapshot: the frontend's live unhashed files ---------------------------------------------------


def snapshot(bucket: str, into: Path, s3: S3Client, out: Callable[[str], None] = print) -> int:
    """Keeps every unhashed object of the bucket and its release history; returns how many files."""
    folder = into / FRONTEND_FILES
    folder.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    releases: str | None = None
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                if is_hashed(key):
                    continue
                body_file = folder / f"{len(files)}"
                answer = s3.get_object(Bucket=bucket, Key=key)
                body = answer["Body"].read()
                if key == RELEASES_KEY:
                    releases = body.decode()
                    continue
                body_file.write_bytes(body)
                files.append(
                    {
                        "key": key,
                        "file": body_file.name,
                        "sha256": hashlib.sha256(body).hexdigest(),
                        "content_type": answer.get("ContentType", "binary/octet-stream"),
                        "cache_control": answer.get("CacheControl"),
                        "metadata": answer.get("Metadata", {}),
                    }
                )
    except (BotoCoreError, ClientError) as error:
        raise RestoreError(f"cannot read the frontend bucket {bucket} before its deploy: {error}") from None
    document = {"bucket": bucket, "files": files, "releases": releases}
    (into / FRONTEND_FILE).write_text(json.dumps(document, indent=1))
    out(
        f"before this deploy: s3://{bucket} serves {len(files)} unhashed file(s)"
        if files
        else f"s3://{bucket} is empty"
    )
    return len(files)


# -- back: restore, then one line ------------------------------------------------------------------


def task_definition_to_run(ecs: Any, arn: str) -> tuple[str, str]:
    """(the ARN to update the service to, a note): the recorded revision, or a copy when it is INACTIVE."""
    described = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    definition: Mapping[str, Any] = described["taskDefinition"]
    if definition.get("status") != "INACTIVE":
        return arn, ""
    request = {field: definition[field] for field in REGISTER_FIELDS if definition.get(field)}
    tags = described.get("tags") or []
    copy = ecs.register_task_definition(**request, **({"tags": tags} if tags else {}))
    copied = copy["taskDefinition"]["taskDefinitionArn"]
    return copied, f" (registered again as {revision(copied)}: Terraform had deregistered it)"


def restore_service(
    service: Service, ecs: Any, *, attempts: int, interval: float, sleep: Callable[[float], None]
) -> tuple[str, str]:
    """(the line, the task definition ARN the service runs once restored)."""
    running = ecs.describe_services(cluster=service.cluster, services=[service.name])["services"]
    current = str(running[0]["taskDefinition"]) if running else ""
    if current == service.task_definition:
        return (
            f"ECS service {service.name} still runs {revision(service.task_definition)} (this apply did not change it)",
            current,
        )
    target, note = task_definition_to_run(ecs, service.task_definition)
    ecs.update_service(cluster=service.cluster, service=service.name, taskDefinition=target)
    release = Release(service.cluster, service.name, target)
    verify(
        release,
        lambda r: ecs.describe_services(cluster=r.cluster, services=[r.service])["services"][0],
        attempts=attempts,
        interval=interval,
        sleep=sleep,
    )
    return f"ECS service {service.name} back to {service.task_definition}{note}, rollout completed", target


def restore_frontend(
    record_dir: Path, bucket: str, distribution_id: str, s3: S3Client, cloudfront: CloudFrontClient
) -> str:
    path = record_dir / FRONTEND_FILE
    if not path.exists():
        return "frontend not deployed by this apply, nothing to restore"
    snapshot_document = json.loads(path.read_text())
    if snapshot_document["bucket"] != bucket:
        raise RestoreError(f"the frontend snapshot is of {snapshot_document['bucket']}, not {bucket}")
    previous: list[dict[str, Any]] = snapshot_document["files"]
    if not previous:
        return f"frontend: nothing before this deploy in s3://{bucket} (first deploy), left as deployed"
    live: dict[str, str | None] = {}
    present: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            present.add(item["Key"])
            if not is_hashed(item["Key"]) and item["Key"] != RELEASES_KEY:
                live[item["Key"]] = None
    for key in live:
        live[key] = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    wanted = {entry["key"]: entry for entry in previous}
    changed = [
        entry
        for key, entry in wanted.items()
        if live.get(key, "absent") != entry["metadata"].get("sha256", entry["sha256"])
    ]
    # Whatever references a file goes up after it: index.html last, as deploy_frontend does.
    for entry in sorted(changed, key=lambda e: (e["key"] == "index.html", e["key"])):
        extra = {"CacheControl": entry["cache_control"]} if entry["cache_control"] else {}
        s3.put_object(
            Bucket=bucket,
            Key=entry["key"],
            Body=(record_dir / FRONTEND_FILES / entry["file"]).read_bytes(),
            ContentType=entry["content_type"],
            Metadata=entry["metadata"],
            **extra,
        )
    added = sorted(set(live) - set(wanted))
    if added:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in added]})
    releases = snapshot_document.get("releases")
    history: list[Mapping[str, Any]] = []
    if releases is not None:
        s3.put_object(
            Bucket=bucket,
            Key=RELEASES_KEY,
            Body=releases.encode(),
            ContentType="application/json",
            CacheControl="no-store",
        )
        history = json.loads(releases).get("releases") or []
    paths = sorted({p for key in [e["key"] for e in changed] + added for p in invalidation_path(key)})
    if paths:
        cloudfront.create_invalidation(
            DistributionId=distribution_id,
            InvalidationBatch={
                "Paths": {"Quantity": len(paths), "Items": paths},
                "CallerReference": f"canvalo-restore-{time.time_ns()}",
            },
        )
    release = f"its release of {history[-1]['deployed_at']}" if history else "its previous files"
    missing = sorted(set(history[-1]["assets"]) - present) if history else []
    gone = f"; {len(missing)} asset(s) that release loads are gone from the bucket ({missing[0]}...)" if missing else ""
    if not changed and not added:
        return f"frontend unchanged by this apply ({release})"
    return (
        f"frontend back to {release} ({len(changed)} file(s) put back, {len(added)} removed, "
        f"{'one invalidation' if paths else 'no invalidation'}){gone}"
    )


def affects_only_task_definition(change: ResourceChange) -> bool:
    if change.type != "aws_ecs_service" or change.action != "update":
        return False
    before, after = change.before or {}, change.after or {}
    unknown = change.after_unknown if isinstance(change.after_unknown, Mapping) else {}
    differing = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    differing |= {k for k, v in unknown.items() if v}
    return differing <= {"task_definition"}


def not_undone(plans_dir: Path, outputs_dir: Path) -> list[str]:
    """Each change of the applied plans the restore does not put back, as `stack: address (action)`."""
    try:
        manifest = json.loads((plans_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        raise RestoreError(f"cannot read {plans_dir / MANIFEST}: pass the plans directory Apply applied") from None
    found: list[str] = []
    for entry in manifest.get("stacks", []):
        stack = entry["stack"]
        if not entry.get("changes"):
            continue
        try:
            plan = load_plan(stack, plans_dir / stack / PLAN_JSON)
        except PlanError as error:
            found.append(f"{stack}: its changes (unreadable plan: {error})")
            continue
        for change in plan.changes:
            if change.action not in COUNTED or change.type in RESTORED_TYPES or affects_only_task_definition(change):
                continue
            found.append(f"{stack}: {change.address} ({change.action})")
    return found


def failure_of(path: Path | None) -> str:
    if path is None or not path.exists():
        return "the smoke check failed"
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return (errors or lines or ["the smoke check failed"])[-1]


def write_restored_record(record_dir: Path, running: Mapping[tuple[str, str], str]) -> None:
    """The last verified release's record, naming the revision its service runs again; nothing on a first deploy."""
    verified = last_verified(record_dir)
    if verified is None:
        return
    task_definition = running.get((verified.cluster or "", verified.service or ""))
    # An older record names no service: with one service restored, that service's revision is the release's.
    if task_definition is None and len(running) == 1 and not verified.task_definition:
        task_definition = next(iter(running.values()))
    restored = verified.restored(task_definition or verified.task_definition or "")
    (record_dir / RESTORED_FILE).write_text(restored.to_json())


def back(
    *,
    record_dir: Path,
    plans_dir: Path,
    outputs_dir: Path,
    commit: str,
    failure: str,
    ecs: Any,
    s3: S3Client,
    cloudfront: CloudFrontClient,
    attempts: int = 20,
    interval: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    out: Callable[[str], None] = print,
) -> str:
    """Restores what `record` and `snapshot` kept; returns the one line that says what happened."""
    try:
        services = [Service(**s) for s in json.loads((record_dir / SERVICES_FILE).read_text())]
    except (OSError, ValueError, TypeError):
        raise RestoreError(f"no record in {record_dir}: `restore record` must run before the apply") from None
    restored: list[str] = []
    running: dict[tuple[str, str], str] = {}
    try:
        for service in services:
            line, running[(service.cluster, service.name)] = restore_service(
                service, ecs, attempts=attempts, interval=interval, sleep=sleep
            )
            restored.append(line)
            out(line)
        write_restored_record(record_dir, running)
        if (record_dir / FRONTEND_FILE).exists():
            environment = stage_environment(outputs_dir)
            restored.append(
                restore_frontend(
                    record_dir, environment["FRONTEND_BUCKET"], environment["FRONTEND_DISTRIBUTION_ID"], s3, cloudfront
                )
            )
            out(restored[-1])
    except (BotoCoreError, ClientError, CommandError) as error:
        done = "; ".join(restored) or "nothing"
        raise RestoreError(
            f"{failure}; the restore FAILED ({error}) after restoring: {done}: restore by hand (README, Roll back)"
        ) from None
    if not services:
        restored.insert(0, "no ECS service ran before this apply (first deploy): nothing to put back")
    others = not_undone(plans_dir, outputs_dir)
    listed = "; ".join(others[:NOT_UNDONE_LISTED]) + (
        f" and {len(others) - NOT_UNDONE_LISTED} more (see the plan summary)" if len(others) > NOT_UNDONE_LISTED else ""
    )
    kept = (
        f"; NOT undone: {listed}: `git revert {commit[:12]}` and push (planned and approved like any change) undoes them"
        if others
        else "; the applied plans changed nothing else"
    )
    return f"{failure}; restored the release that ran before: {'; '.join(restored)}{kept}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.restore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record_command = commands.add_parser("record", help="before the apply: the task definition each service runs")
    record_command.add_argument("--plans", type=Path, required=True, help="the Plan action's plans directory")
    record_command.add_argument("--into", type=Path, required=True, help="a directory of this build")
    snapshot_command = commands.add_parser("snapshot", help="before deploy_frontend: the frontend's unhashed files")
    snapshot_command.add_argument("--bucket", required=True)
    snapshot_command.add_argument("--into", type=Path, required=True)
    back_command = commands.add_parser("back", help="restore what record and snapshot kept; always exits 1")
    back_command.add_argument("--record", type=Path, required=True, help="the --into directory of record")
    back_command.add_argument("--plans", type=Path, required=True)
    back_command.add_argument("--outputs", type=Path, required=True, help="the outputs directory of the apply")
    back_command.add_argument("--commit", required=True, help="the commit applied (CODEBUILD_RESOLVED_SOURCE_VERSION)")
    back_command.add_argument("--failure", type=Path, help="a file holding what failed (the smoke check's error)")
    back_command.add_argument("--attempts", type=int, default=20, help="reads of each service while it rolls back")
    back_command.add_argument("--interval", type=float, default=15.0, help="seconds between those reads")
    args = parser.parse_args(argv)
    session = boto3.session.Session()
    try:
        if args.command == "record":
            record(args.plans, args.into, session.client("ecs"))
            return 0
        if args.command == "snapshot":
            snapshot(args.bucket, args.into, session.client("s3"))
            return 0
        line = back(
            record_dir=args.record,
            plans_dir=args.plans,
            outputs_dir=args.outputs,
            commit=args.commit,
            failure=failure_of(args.failure),
            ecs=session.client("ecs"),
            s3=session.client("s3"),
            cloudfront=session.client("cloudfront"),
            attempts=args.attempts,
            interval=args.interval,
        )
        print(f"error: {line}", file=sys.stderr)
        return 1
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
