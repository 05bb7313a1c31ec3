"""`python -m pipelines.restore`: a release that fails its smoke check is put back, in moto (ECS, S3, CloudFront)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from names import NEVER_DEPLOYED
from pipelines import drift, verify_rollout
from pipelines.deploy_frontend import RELEASES_KEY, deploy
from pipelines.release import ReleaseRecord
from pipelines.restore import back, main, record, snapshot
from tests.pipelines.test_deploy_frontend import REGION, create_distribution, write_build
from tests.support.config import action_environment

STAGE = "prod"
CLUSTER = SERVICE = "canvalo-prod-backend"
BUCKET = "canvalo-prod-frontend-333333333333"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLD_JS, NEW_JS = "assets/index-AAAAaaaa.js", "assets/index-BBBBbbbb.js"
RULE = "aws_vpc_security_group_ingress_rule.from-load-balancer"


@dataclass
class Stage:
    ecs: Any
    s3: Any
    cloudfront: Any
    distribution_id: str
    root: Path

    def task_definition(self, version: str) -> str:
        definition = self.ecs.register_task_definition(
            family=SERVICE,
            containerDefinitions=[
                {
                    "name": "api",
                    "image": f"333333333333.dkr.ecr.eu-west-1.amazonaws.com/canvalo:{version}",
                    "memory": 512,
                    "environment": [{"name": "APP_VERSION", "value": version}],
                }
            ],
        )
        arn: str = definition["taskDefinition"]["taskDefinitionArn"]
        return arn

    def running(self) -> str:
        arn: str = self.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["taskDefinition"]
        return arn

    def version_running(self) -> str:
        definition = self.ecs.describe_task_definition(taskDefinition=self.running())["taskDefinition"]
        return str(definition["containerDefinitions"][0]["environment"][0]["value"])

    def frontend(self, name: str, files: dict[str, str]) -> None:
        dist = write_build(self.root / f"dist-{name}", files)
        deploy(
            dist=dist, bucket=BUCKET, distribution_id=self.distribution_id, s3=self.s3, cloudfront=self.cloudfront,
            out=StringIO(),
        )  # fmt: skip

    def objects(self) -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}

    def invalidations(self) -> int:
        found = self.cloudfront.list_invalidations(DistributionId=self.distribution_id)["InvalidationList"]
        return int(found.get("Quantity", 0))


@pytest.fixture
def stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stage]:
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        cloudfront = boto3.client("cloudfront", region_name="us-east-1")
        ecs = boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName=CLUSTER)
        yield Stage(ecs, s3, cloudfront, create_distribution(cloudfront, BUCKET), tmp_path)


def plans(root: Path, service_before: dict[str, Any] | None, *, rule_changes: bool = True) -> Path:
    """The Plan action's directory: the plan of the stage's one stack, `prod`, replaces the task definition
    and moves the service to it."""
    folder = root / "plans"
    (folder / STAGE).mkdir(parents=True, exist_ok=True)
    service_after = {**(service_before or {"cluster": CLUSTER, "name": SERVICE}), "task_definition": None}
    changes: list[dict[str, Any]] = [
        {
            "address": "aws_ecs_task_definition.task",
            "mode": "managed",
            "type": "aws_ecs_task_definition",
            "change": {"actions": ["delete", "create"] if service_before else ["create"], "before": None, "after": {}},
        },
        {
            "address": "aws_ecs_service.service",
            "mode": "managed",
            "type": "aws_ecs_service",
            "change": {
                "actions": ["update"] if service_before else ["create"],
                "before": service_before,
                "after": service_after,
                "after_unknown": {"task_definition": True},
            },
        },
    ]
    if rule_changes:
        changes.append(
            {
                "address": RULE,
                "mode": "managed",
                "type": "aws_vpc_security_group_ingress_rule",
                "change": {"actions": ["update"], "before": {"from_port": 8000}, "after": {"from_port": 8080}},
            }
        )
    document = {"format_version": "1.2", "resource_changes": changes}
    (folder / STAGE / "plan.json").write_text(json.dumps(document))
    manifest = {"stage": STAGE, "stacks": [{"stack": STAGE, "changes": True}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def outputs(root: Path, stage: Stage, applied: str) -> Path:
    folder = root / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    # The stage's one stack declares the backend's and the frontend's outputs alike.
    values = {
        "backend_url": "https://api.canvalo.example.com",
        "backend_cluster_name": CLUSTER,
        "backend_service_name": SERVICE,
        "backend_task_definition_arn": applied,
        "frontend_url": "https://canvalo.example.com",
        "frontend_bucket": BUCKET,
        "frontend_distribution_id": stage.distribution_id,
    }
    (folder / f"{STAGE}.json").write_text(json.dumps(values))
    return folder


def restore(stage: Stage, record_dir: Path, plans_dir: Path, outputs_dir: Path) -> str:
    return back(
        record_dir=record_dir,
        plans_dir=plans_dir,
        outputs_dir=outputs_dir,
        commit=COMMIT,
        failure="smoke check failed after 150 s: GET https://api.canvalo.example.com/health answered 502",
        ecs=stage.ecs,
        s3=stage.s3,
        cloudfront=stage.cloudfront,
        attempts=2,
        interval=0,
        out=lambda _: None,
    )


OLD_INDEX = f'<!doctype html><script src="/{OLD_JS}"></script>'
NEW_INDEX = f'<!doctype html><script src="/{NEW_JS}"></script>'


@pytest.mark.req("R10.7", "R10.8")
def test_a_failed_smoke_check_puts_the_previous_task_definition_and_frontend_back_and_names_what_it_did_not(
    stage: Stage, tmp_path: Path
) -> None:
    old = stage.task_definition("app-old")
    stage.ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=old, desiredCount=1)
    stage.frontend("old", {"index.html": OLD_INDEX, OLD_JS: "old()", "favicon.svg": "<svg>old</svg>"})
    releases_before = stage.objects()[RELEASES_KEY]
    plans_dir = plans(tmp_path, {"cluster": CLUSTER, "name": SERVICE, "task_definition": old})
    record_dir = tmp_path / "record"

    record(plans_dir, record_dir, stage.ecs, out=lambda _: None)
    # Terraform's apply: a new revision, the old one deregistered (a replaced aws_ecs_task_definition), the
    # service moved to the new one.
    new = stage.task_definition("app-new")
    stage.ecs.deregister_task_definition(taskDefinition=old)
    stage.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new)
    snapshot(BUCKET, record_dir, stage.s3, out=lambda _: None)
    stage.frontend("new", {"index.html": NEW_INDEX, NEW_JS: "new()", "favicon.svg": "<svg>new</svg>", "robots.txt": ""})
    invalidations = stage.invalidations()

    line = restore(stage, record_dir, plans_dir, outputs(tmp_path, stage, new))

    # ECS refuses to move a service to an INACTIVE revision: the same content is registered again.
    assert stage.version_running() == "app-old" and stage.running() not in (old, new)
    objects = stage.objects()
    assert objects["index.html"] == OLD_INDEX.encode() and objects["favicon.svg"] == b"<svg>old</svg>"
    assert "robots.txt" not in objects, "a file only the failed release had is removed"
    assert OLD_JS in objects and objects[RELEASES_KEY] == releases_before
    assert stage.invalidations() == invalidations + 1, "one invalidation for every restored path"
    head = stage.s3.head_object(Bucket=BUCKET, Key="index.html")
    assert head["ContentType"].startswith("text/html") and head["CacheControl"] == "no-cache"
    assert "\n" not in line
    assert line.startswith("smoke check failed after 150 s: GET https://api.canvalo.example.com/health answered 502")
    assert f"ECS service {SERVICE} back to {old} (registered again as {SERVICE}:3" in line
    assert "frontend back to its release of " in line and "2 file(s) put back, 1 removed, one invalidation" in line
    assert f"NOT undone: prod: {RULE} (update): `git revert {COMMIT[:12]}` and push" in line
    assert "aws_ecs_service" not in line and "aws_ecs_task_definition" not in line, "those the restore undid"


@pytest.mark.req("R10.7", "R10.8")
def test_a_retried_apply_after_a_restore_does_not_pass_verify_rollout(
    stage: Stage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = stage.task_definition("app-old")
    stage.ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=old, desiredCount=1)
    stage.frontend("old", {"index.html": OLD_INDEX, OLD_JS: "old()"})
    plans_dir = plans(tmp_path, {"cluster": CLUSTER, "name": SERVICE, "task_definition": old}, rule_changes=False)
    record_dir = tmp_path / "record"
    record(plans_dir, record_dir, stage.ecs, out=lambda _: None)
    new = stage.task_definition("app-new")
    stage.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new)
    snapshot(BUCKET, record_dir, stage.s3, out=lambda _: None)
    outputs_dir = outputs(tmp_path, stage, new)

    line = restore(stage, record_dir, plans_dir, outputs_dir)

    assert stage.running() == old, "an ACTIVE revision is restored as it was, under its own ARN"
    assert f"ECS service {SERVICE} back to {old}, rollout completed" in line
    assert "frontend unchanged by this apply" in line and "the applied plans changed nothing else" in line
    # "Retry failed actions": Terraform finds its plans applied, and the service does not run what they applied.
    assert verify_rollout.main(["--outputs", str(outputs_dir), "--attempts", "1"]) == 1
    assert f"runs {SERVICE}:1, not the applied {SERVICE}:2" in capsys.readouterr().err


@pytest.mark.req("R10.7", "R10.8")
def test_a_first_deploy_restores_nothing_and_says_so(stage: Stage, tmp_path: Path) -> None:
    plans_dir = plans(tmp_path, None, rule_changes=False)
    record_dir = tmp_path / "record"
    record(plans_dir, record_dir, stage.ecs, out=lambda _: None)
    new = stage.task_definition("app-new")
    stage.ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=new, desiredCount=1)
    snapshot(BUCKET, record_dir, stage.s3, out=lambda _: None)
    stage.frontend("new", {"index.html": NEW_INDEX, NEW_JS: "new()"})

    line = restore(stage, record_dir, plans_dir, outputs(tmp_path, stage, new))

    assert stage.running() == new and stage.objects()["index.html"] == NEW_INDEX.encode()
    assert "no ECS service ran before this apply (first deploy): nothing to put back" in line
    assert "nothing before this deploy" in line


@pytest.mark.req("R10.8")
def test_the_command_always_fails_with_one_line_naming_what_failed(
    stage: Stage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = stage.task_definition("app-old")
    stage.ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=old, desiredCount=1)
    plans_dir = plans(tmp_path, {"cluster": CLUSTER, "name": SERVICE, "task_definition": old})
    record_dir = tmp_path / "record"
    assert main(["record", "--plans", str(plans_dir), "--into", str(record_dir)]) == 0
    assert f"ECS service {SERVICE} runs {SERVICE}:1" in capsys.readouterr().out
    failure = tmp_path / "smoke-failure.txt"
    failure.write_text("error: smoke check failed after 150 s: GET https://canvalo.example.com answered 403\n")
    args = [
        "back",
        "--record",
        str(record_dir),
        "--plans",
        str(plans_dir),
        "--outputs",
        str(outputs(tmp_path, stage, old)),
    ]

    assert main([*args, "--commit", COMMIT, "--failure", str(failure), "--interval", "0"]) == 1

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: smoke check failed after 150 s: GET https://canvalo")
    assert "still runs" in lines[0] and f"NOT undone: prod: {RULE} (update)" in lines[0]


def test_back_without_a_record_is_one_line_naming_the_missing_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["back", "--record", str(tmp_path), "--plans", str(tmp_path), "--outputs", str(tmp_path)]
    assert main([*args, "--commit", COMMIT]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "`restore record` must run before the apply" in err


# -- the release record: what the Apply starts from, and what a restore leaves --------------------------

PREVIOUS_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
RELEASE_PARAMETER = f"/canvalo/{STAGE}/release"
DEPLOYED_COMMIT_PARAMETER = f"/canvalo/{STAGE}/deployed-commit"


@dataclass
class Records:
    """The pipeline account's release parameters, written and read as deploy.yml's commands do."""

    ssm: Any
    root: Path

    def drift(self, *argv: str) -> int:
        return drift.main(list(argv), ssm=self.ssm, environ=action_environment())

    def verified(self, commit: str, outputs_dir: Path) -> None:
        """A release that passed its Apply: `drift record` after the verify and the smoke check."""
        image = f"333333333333.dkr.ecr.eu-west-1.amazonaws.com/canvalo:{commit[:7]}"
        argv = ["record", "--stage", STAGE, "--commit", commit, "--image", image, "--outputs", str(outputs_dir)]
        assert self.drift(*argv) == 0

    def release(self) -> ReleaseRecord | None:
        value = self.ssm.get_parameter(Name=RELEASE_PARAMETER)["Parameter"]["Value"]
        return ReleaseRecord.parse(RELEASE_PARAMETER, str(value))

    def deployed_commit(self) -> str:
        return str(self.ssm.get_parameter(Name=DEPLOYED_COMMIT_PARAMETER)["Parameter"]["Value"])


@pytest.fixture
def records(stage: Stage) -> Records:
    ssm = boto3.client("ssm", region_name=REGION)
    for name in (RELEASE_PARAMETER, DEPLOYED_COMMIT_PARAMETER):
        ssm.put_parameter(Name=name, Value=NEVER_DEPLOYED, Type="String")
    return Records(ssm, stage.root)


def start_apply(records: Records, stage: Stage, plans_dir: Path, name: str) -> Path:
    """deploy.yml's first steps: the last verified release into a fresh restore directory, then `restore record`."""
    restore_dir = records.root / name
    assert records.drift("previous", "--stage", STAGE, "--into", str(restore_dir)) == 0
    record(plans_dir, restore_dir, stage.ecs, out=lambda _: None)
    return restore_dir


def verified_on_old_release(stage: Stage, records: Records, tmp_path: Path) -> tuple[str, Path]:
    """The service runs `app-old`, recorded as the last verified release; the plans of an Apply that changes
    its task definition. Returns the old revision and the plans directory."""
    old = stage.task_definition("app-old")
    stage.ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=old, desiredCount=1)
    records.verified(PREVIOUS_COMMIT, outputs(tmp_path / "before", stage, old))
    plans_dir = plans(tmp_path, {"cluster": CLUSTER, "name": SERVICE, "task_definition": old}, rule_changes=False)
    return old, plans_dir


def recorded_previous(restore_dir: Path) -> str:
    (service,) = json.loads((restore_dir / "services.json").read_text())
    return str(service["task_definition"])


@pytest.mark.req("R10.7", "R10.8")
def test_a_failed_smoke_check_leaves_the_record_on_the_previous_release_which_the_restore_writes_back(
    stage: Stage, records: Records, tmp_path: Path
) -> None:
    old, plans_dir = verified_on_old_release(stage, records, tmp_path)
    restore_dir = start_apply(records, stage, plans_dir, "apply")
    # Terraform replaces the task definition (deregistering the old revision) and moves the service to it.
    new = stage.task_definition("app-new")
    stage.ecs.deregister_task_definition(taskDefinition=old)
    stage.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new)

    restore(stage, restore_dir, plans_dir, outputs(tmp_path, stage, new))
    assert records.drift("restored", "--stage", STAGE, "--record", str(restore_dir)) == 0

    release = records.release()
    assert release is not None and release.commit == PREVIOUS_COMMIT and records.deployed_commit() == PREVIOUS_COMMIT
    assert stage.version_running() == "app-old"
    # The revision the service runs again (a copy of the deregistered one), which the next restore starts from.
    assert release.task_definition == stage.running() and release.task_definition not in (old, new)
    assert release.restored_at and release.image and release.image.endswith(f":{PREVIOUS_COMMIT[:7]}")


@pytest.mark.req("R10.7", "R10.8")
def test_a_retried_apply_after_a_failed_verify_still_restores_the_last_verified_release(
    stage: Stage, records: Records, tmp_path: Path
) -> None:
    old, plans_dir = verified_on_old_release(stage, records, tmp_path)
    first = start_apply(records, stage, plans_dir, "first-attempt")
    new = stage.task_definition("app-new")
    stage.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new)
    # verify_rollout failed (the rollout was still in progress): the action ended, nothing was restored or recorded.
    assert recorded_previous(first) == old

    second = start_apply(records, stage, plans_dir, "retry")

    assert stage.running() == new, "what the first attempt left"
    assert recorded_previous(second) == old, "the retry starts from the verified release, not from what runs"
    line = restore(stage, second, plans_dir, outputs(tmp_path, stage, new))
    assert stage.running() == old and f"back to {old}" in line
    assert records.drift("restored", "--stage", STAGE, "--record", str(second)) == 0
    release = records.release()
    assert release is not None and (release.commit, release.task_definition) == (PREVIOUS_COMMIT, old)


@pytest.mark.req("R10.7", "R10.8")
def test_a_first_deploy_that_fails_its_smoke_check_records_nothing(
    stage: Stage, records: Records, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans_dir = plans(tmp_path, None, rule_changes=False)
    restore_dir = start_apply(records, stage, plans_dir, "apply")
    new = stage.task_definition("app-new")
    stage.ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=new, desiredCount=1)
    restore(stage, restore_dir, plans_dir, outputs(tmp_path, stage, new))
    capsys.readouterr()
    assert records.drift("restored", "--stage", STAGE, "--record", str(restore_dir)) == 0
    assert records.release() is None and records.deployed_commit() == NEVER_DEPLOYED
    assert "no restored release to record" in capsys.readouterr().err


@pytest.mark.req("R10.7", "R10.8")
def test_a_release_parameter_holding_no_record_refuses_the_apply_with_one_line(
    records: Records, capsys: pytest.CaptureFixture[str]
) -> None:
    records.ssm.put_parameter(Name=RELEASE_PARAMETER, Value="garbage", Type="String", Overwrite=True)
    assert records.drift("previous", "--stage", STAGE, "--into", str(records.root / "apply")) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {RELEASE_PARAMETER} holds 'garbage', not a release record")
