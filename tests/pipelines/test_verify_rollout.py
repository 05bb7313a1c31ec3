"""`python -m pipelines.verify_rollout`: a stage is green only when its service runs what was applied."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipelines.verify_rollout import Release, main
from tests.support.alarms import put_alarm

CLUSTER, SERVICE = "canvalo-gamma-backend", "canvalo-gamma-backend"


@pytest.fixture
def ecs() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("ecs", region_name="eu-west-1")
        client.create_cluster(clusterName=CLUSTER)
        yield client


def register(ecs: Any, image: str) -> str:
    definition = ecs.register_task_definition(
        family=SERVICE, containerDefinitions=[{"name": "api", "image": image, "memory": 512}]
    )
    arn: str = definition["taskDefinition"]["taskDefinitionArn"]
    return arn


def released(ecs: Any, *revisions: str) -> list[str]:
    """The service created with the first revision's task definition, then updated to each next one in turn."""
    arns = [register(ecs, f"api:{revision}") for revision in revisions]
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=arns[0], desiredCount=1)
    for arn in arns[1:]:
        ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=arn)
    return arns


def outputs(tmp_path: Path, task_definition: str) -> Path:
    folder = tmp_path / "outputs"
    folder.mkdir(exist_ok=True)
    values = {
        "backend_url": "http://alb",
        "backend_cluster_name": CLUSTER,
        "backend_service_name": SERVICE,
        "backend_task_definition_arn": task_definition,
    }
    (folder / "gamma.json").write_text(json.dumps(values))
    return folder


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.req("R4.5")
def test_a_service_running_the_applied_task_definition_passes(
    ecs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    _, new = released(ecs, "old", "new")
    assert main(["--outputs", str(outputs(tmp_path, new))]) == 0
    assert f"{SERVICE} runs {SERVICE}:2, rollout completed" in capsys.readouterr().out


@pytest.mark.req("R4.5")
def test_a_release_the_circuit_breaker_rolled_back_fails_the_stage(
    ecs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    # What the circuit breaker leaves: the applied revision's tasks never got healthy, ECS went back.
    old, new = released(ecs, "old", "new")
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=old)
    assert main(["--outputs", str(outputs(tmp_path, new)), "--attempts", "1"]) == 1
    line = error_line(capsys)
    assert f"ECS service {SERVICE} runs {SERVICE}:1, not the applied {SERVICE}:2: the release was rolled back" in line


def described(state: str, task_definition: str, reason: str = "") -> Mapping[str, Any]:
    deployment = {"status": "PRIMARY", "rolloutState": state, "rolloutStateReason": reason}
    return {"taskDefinition": task_definition, "deployments": [deployment], "events": []}


@pytest.mark.req("R4.5")
def test_a_failed_rollout_fails_at_once_and_one_in_progress_is_read_again_a_bounded_number_of_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    applied = "arn:aws:ecs:eu-west-1:222222222222:task-definition/canvalo-gamma-backend:7"
    reads: list[str] = []

    def failing(release: Release) -> Mapping[str, Any]:
        reads.append(release.service)
        return described("FAILED", applied, "tasks failed to start")

    args = ["--outputs", str(outputs(tmp_path, applied)), "--attempts", "3", "--interval", "0"]
    assert main(args, describe=failing) == 1
    assert "rollout of canvalo-gamma-backend:7 FAILED: tasks failed to start" in error_line(capsys)
    assert len(reads) == 1, "a FAILED rollout does not get better by waiting"

    states = iter(["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"])
    assert main(args, describe=lambda release: described(next(states), applied)) == 0
    stuck = iter(["IN_PROGRESS"] * 3)
    assert main(args, describe=lambda release: described(next(stuck), applied)) == 1
    assert "is still IN_PROGRESS" in error_line(capsys)


def test_outputs_without_the_backend_names_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "gamma.json").write_text(json.dumps({"frontend_url": "https://d1", "vpc_id": "vpc-1"}))
    assert main(["--outputs", str(folder)]) == 2
    assert "no output backend_cluster_name, backend_service_name, backend_task_definition_arn" in error_line(capsys)


@pytest.mark.req("R4.5")
def test_a_service_that_is_not_there_fails_with_one_line(
    ecs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    applied = register(ecs, "api:new")
    assert main(["--outputs", str(outputs(tmp_path, applied))]) == 1
    assert f"ECS service {SERVICE} is not in cluster {CLUSTER}" in error_line(capsys)


ALARM = f"{SERVICE}-5xx-rate"
WITH_ALARMS = {"alarms": {"alarmNames": [ALARM], "enable": True, "rollback": True}}


@pytest.mark.req("R4.5", "R11.4")
def test_a_release_its_deployment_alarm_rolled_back_fails_naming_the_alarm_and_the_previous_revision(
    ecs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ECS leaves once an alarm rollback completes: the failed deployment is gone, the service runs the
    previous revision again, and the 5xx alarm that tripped is still in ALARM."""
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
    for name in (ALARM, f"{SERVICE}-healthy-tasks"):
        put_alarm(cloudwatch, name, "ALARM")
    old, new = released(ecs, "old", "new")
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=old, deploymentConfiguration=WITH_ALARMS)
    assert main(["--outputs", str(outputs(tmp_path, new)), "--attempts", "1"]) == 1
    line = error_line(capsys)
    assert (
        f"ECS service {SERVICE} rolled the release back (deployment alarm {ALARM} in ALARM): it runs {SERVICE}:1, "
        f"the previous task definition, not the applied {SERVICE}:2" in line
    )
    assert "healthy-tasks" not in line, "only the service's deployment alarms can roll it back"


def rolled_back(applied: str, previous: str, reason: str, events: list[str]) -> Mapping[str, Any]:
    """DescribeServices while ECS rolls back: the rollback is PRIMARY, the failed release still listed."""
    return {
        "taskDefinition": previous,
        "deploymentConfiguration": WITH_ALARMS,
        "deployments": [
            {"status": "PRIMARY", "taskDefinition": previous, "rolloutState": "IN_PROGRESS"},
            {"status": "ACTIVE", "taskDefinition": applied, "rolloutState": "FAILED", "rolloutStateReason": reason},
        ],
        "events": [{"message": message} for message in events],
    }


@pytest.mark.req("R4.5", "R11.4")
def test_the_alarm_is_named_from_ecss_record_of_the_rollback_before_cloudwatch_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = "arn:aws:ecs:eu-west-1:222222222222:task-definition/canvalo-gamma-backend:6"
    applied = "arn:aws:ecs:eu-west-1:222222222222:task-definition/canvalo-gamma-backend:7"
    asked: list[Sequence[str]] = []

    def in_alarm(names: Sequence[str]) -> Sequence[str]:
        asked.append(names)
        return ()

    args = ["--outputs", str(outputs(tmp_path, applied)), "--attempts", "1"]
    failed = rolled_back(applied, previous, f"ECS deployment failed: alarm(s) {ALARM} in ALARM state.", [])
    assert main(args, describe=lambda release: failed, in_alarm=in_alarm) == 1
    line = error_line(capsys)
    assert f"(deployment alarm {ALARM} in ALARM): it runs canvalo-gamma-backend:6, the previous task" in line
    assert asked == []
    in_an_event = rolled_back(applied, previous, "", [f"(service x) deployment failed: alarm {ALARM} detected."])
    assert main(args, describe=lambda release: in_an_event, in_alarm=in_alarm) == 1
    assert f"(deployment alarm {ALARM} in ALARM)" in error_line(capsys)
    # The circuit breaker's rollback, no alarm in ALARM: the rollback is reported as before.
    breaker = rolled_back(applied, previous, "ECS deployment circuit breaker: tasks failed to start.", ["started"])
    assert main(args, describe=lambda release: breaker, in_alarm=in_alarm) == 1
    line = error_line(capsys)
    assert "runs canvalo-gamma-backend:6, not the applied canvalo-gamma-backend:7: the release was rolled back" in line
    assert asked == [[ALARM]]
