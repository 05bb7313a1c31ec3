"""`python -m pipelines.verify_rollout`: a stage is green only when its service runs what was applied."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
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


# -- how long it waits: as long as ECS's bake of the deployment alarms ---------------------------------------

APPLIED = "arn:aws:ecs:eu-west-1:222222222222:task-definition/canvalo-gamma-backend:7"


def baking(reads_in_progress: int | None) -> tuple[Callable[[Release], Mapping[str, Any]], list[int]]:
    """A service with the 5xx deployment alarm, IN_PROGRESS for that many reads (None: forever), then COMPLETED."""
    reads: list[int] = []

    def describe(release: Release) -> Mapping[str, Any]:
        reads.append(1)
        done = reads_in_progress is not None and len(reads) > reads_in_progress
        return {**described("COMPLETED" if done else "IN_PROGRESS", APPLIED), "deploymentConfiguration": WITH_ALARMS}

    return describe, reads


def alarm(cloudwatch: Any, period: int, evaluation_periods: int) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=period,
        EvaluationPeriods=evaluation_periods,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="eu-west-1")


@pytest.mark.req("R4.5", "R11.4")
def test_it_waits_out_the_bake_ecs_derives_from_the_alarms_and_stops_when_ecs_says_completed(
    cloudwatch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stage's 5xx alarm judges one 5-minute period: ECS keeps the rollout IN_PROGRESS past the five
    minutes a fixed wait allowed, and verify_rollout must not give up before ECS's bake is over."""
    alarm(cloudwatch, period=300, evaluation_periods=1)
    slept: list[float] = []
    describe, reads = baking(reads_in_progress=40)  # 600 s at 15 s a read: rollout and bake.
    assert main(["--outputs", str(outputs(tmp_path, APPLIED))], describe=describe, sleep=slept.append) == 0
    out = capsys.readouterr().out
    assert f"waiting up to 900 s for ECS service {SERVICE}'s rollout to complete" in out
    assert f"(2 x {ALARM}'s 300 s window)" in out and "runs canvalo-gamma-backend:7, rollout completed" in out
    # 40 reads IN_PROGRESS (the first sizes the wait), then COMPLETED: 585 s waited, past a fixed 300 s.
    assert len(reads) == 41 and sum(slept) == 39 * 15

    describe, reads = baking(reads_in_progress=None)
    slept.clear()
    assert main(["--outputs", str(outputs(tmp_path, APPLIED))], describe=describe, sleep=slept.append) == 1
    assert "is still IN_PROGRESS" in error_line(capsys)
    assert sum(slept) == 900, "no longer than the rollout and the bake"


@pytest.mark.req("R4.5")
@pytest.mark.parametrize(
    ("period", "evaluation_periods", "max_minutes", "waited"),
    [
        (60, 2, "60", 300 + 2 * 120),  # a shorter window: a shorter wait
        (3600, 24, "30", 1800),  # a day's window: bounded (30 minutes by default)
        (3600, 24, "60", 3600),
    ],
)
def test_the_wait_follows_the_alarms_window_within_a_bound(
    cloudwatch: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    period: int,
    evaluation_periods: int,
    max_minutes: str,
    waited: int,
) -> None:
    alarm(cloudwatch, period=period, evaluation_periods=evaluation_periods)
    slept: list[float] = []
    describe, _ = baking(reads_in_progress=None)
    args = ["--outputs", str(outputs(tmp_path, APPLIED)), "--max-minutes", max_minutes]
    assert main(args, describe=describe, sleep=slept.append) == 1
    assert sum(slept) == waited
    assert f"waiting up to {waited} s" in capsys.readouterr().out


@pytest.mark.req("R4.5")
def test_without_alarms_it_waits_for_the_rollout_and_alarms_it_cannot_read_get_the_maximum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slept: list[float] = []
    stuck = {**described("IN_PROGRESS", APPLIED), "deploymentConfiguration": {}}
    args = ["--outputs", str(outputs(tmp_path, APPLIED))]
    assert main(args, describe=lambda release: stuck, sleep=slept.append) == 1
    assert sum(slept) == 300 and "no deployment alarm to bake" in capsys.readouterr().out
    slept.clear()
    describe, _ = baking(reads_in_progress=None)
    assert main(args, describe=describe, alarm_configs=lambda names: None, sleep=slept.append) == 1
    assert sum(slept) == 1800 and f"deployment alarms {ALARM} cannot be read" in capsys.readouterr().out


@pytest.mark.req("R4.5")
@pytest.mark.parametrize("bad", [["--interval", "0"], ["--max-minutes", "-1"]])
def test_a_wait_that_cannot_be_sized_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    describe, reads = baking(reads_in_progress=0)
    assert main(["--outputs", str(outputs(tmp_path, APPLIED)), *bad], describe=describe) == 2
    assert "must both be more than 0 (or pass --attempts)" in error_line(capsys) and reads == []
