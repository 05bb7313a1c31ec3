"""Fail the stage unless its ECS service runs the task definition Terraform just applied, rollout completed.

    python -m pipelines.verify_rollout --outputs DIR [--attempts N] [--interval SECONDS]

With the deployment circuit breaker on, a release whose tasks never become healthy is rolled back by ECS,
and Terraform's `wait_for_steady_state` still ends the apply successfully: the service is steady, on the
*previous* task definition (terraform-provider-aws #20858). The post-deploy tests would then pass against
the old tasks and promote a release that never ran. This check reads the backend's outputs
(`backend_cluster_name`, `backend_service_name`, `backend_task_definition_arn`) from the outputs directory
`terraform_stage apply` wrote, asks ECS what the service runs, and fails with one line when:
- the service's task definition is not the applied one (rolled back, or changed by someone since);
- its PRIMARY deployment's rollout FAILED, or is still IN_PROGRESS after the attempts.

When the service was rolled back and has deployment alarms (`deploymentConfiguration.alarms`), the line
names the ones that rolled it back: those a FAILED deployment's `rolloutStateReason` or a recent service
event mentions, else those CloudWatch reports in ALARM. ECS deletes the failed deployment once the
rollback completes, so the reason is not always there to read; the alarm usually still is.

It runs with the stage's credentials (`pipelines.stage_credentials` in gamma and prod), and needs
`ecs:DescribeServices` on the service and `cloudwatch:DescribeAlarms` (to name alarms, best effort).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.errors import CommandError

OUTPUT_NAMES = ("backend_cluster_name", "backend_service_name", "backend_task_definition_arn")
EXIT_BAD_INPUT = 2
# DescribeServices lists the newest events first: a rollback's are among the last few.
EVENTS_READ = 10
# Which of these alarm names CloudWatch reports in ALARM.
AlarmsInAlarm = Callable[[Sequence[str]], Sequence[str]]


class RolloutError(CommandError):
    """The service does not run what was applied, or cannot be read."""


@dataclass(frozen=True)
class Release:
    cluster: str
    service: str
    task_definition: str


def read_release(outputs_dir: Path) -> Release:
    found: dict[str, str] = {}
    for file in sorted(outputs_dir.glob("*.json")):
        for name, value in json.loads(file.read_text()).items():
            if name in OUTPUT_NAMES:
                found[name] = str(value)
    missing = [name for name in OUTPUT_NAMES if name not in found]
    if missing:
        raise RolloutError(
            f"no output {', '.join(missing)} in {outputs_dir}: pass the outputs directory `terraform_stage apply` "
            "wrote for the stage",
            EXIT_BAD_INPUT,
        )
    return Release(*(found[name] for name in OUTPUT_NAMES))


def revision(task_definition: str) -> str:
    """`family:revision` of a task definition ARN, as a person reads it."""
    return task_definition.rsplit("/", 1)[-1]


def deployment_alarms(service: Mapping[str, Any]) -> list[str]:
    alarms: Mapping[str, Any] = (service.get("deploymentConfiguration") or {}).get("alarms") or {}
    return [str(name) for name in alarms.get("alarmNames") or []] if alarms.get("enable") else []


def alarms_that_rolled_back(service: Mapping[str, Any], in_alarm: AlarmsInAlarm) -> list[str]:
    """The service's deployment alarms that ECS's record of the rollback names, else those now in ALARM."""
    names = deployment_alarms(service)
    if not names:
        return []
    deployments: list[Mapping[str, Any]] = service.get("deployments") or []
    events: list[Mapping[str, Any]] = (service.get("events") or [])[:EVENTS_READ]
    texts = [str(d.get("rolloutStateReason", "")) for d in deployments if d.get("rolloutState") == "FAILED"]
    texts += [str(event.get("message", "")) for event in events]
    named = [name for name in names if any(name in text for text in texts)]
    return named or [name for name in names if name in set(in_alarm(names))]


def rollout_problem(
    release: Release, service: Mapping[str, Any], in_alarm: AlarmsInAlarm = lambda names: ()
) -> tuple[str | None, bool]:
    """(what is wrong, whether waiting may cure it); (None, False) when the release runs, rollout completed."""
    name = f"ECS service {release.service}"
    running = str(service.get("taskDefinition", ""))
    if running != release.task_definition:
        alarms = alarms_that_rolled_back(service, in_alarm)
        if alarms:
            return (
                f"{name} rolled the release back (deployment alarm {', '.join(alarms)} in ALARM): it runs "
                f"{revision(running)}, the previous task definition, not the applied "
                f"{revision(release.task_definition)}; fix the release and push again",
                False,
            )
        events: list[Mapping[str, Any]] = service.get("events") or []
        last_event = events[0].get("message", "no events") if events else "no events"
        return (
            f"{name} runs {revision(running)}, not the applied {revision(release.task_definition)}: "
            f"the release was rolled back (last event: {last_event}); fix the release and push again",
            False,
        )
    primary = next((d for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), None)
    if primary is None:
        return f"{name} has no PRIMARY deployment: see `aws ecs describe-services`", False
    state = primary.get("rolloutState", "COMPLETED")
    if state == "FAILED":
        reason = primary.get("rolloutStateReason", "")
        return f"{name}'s rollout of {revision(running)} FAILED: {reason}", False
    if state != "COMPLETED":
        return f"{name}'s rollout of {revision(running)} is still {state}", True
    return None, False


def verify(
    release: Release,
    describe: Callable[[Release], Mapping[str, Any]],
    *,
    attempts: int,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    in_alarm: AlarmsInAlarm = lambda names: (),
) -> str:
    for attempt in range(1, attempts + 1):
        problem, may_settle = rollout_problem(release, describe(release), in_alarm)
        if problem is None:
            return f"{release.service} runs {revision(release.task_definition)}, rollout completed"
        if not may_settle or attempt == attempts:
            raise RolloutError(problem)
        sleep(interval)
    raise RolloutError(f"--attempts must be at least 1, not {attempts}", EXIT_BAD_INPUT)


def describe_with_ecs(release: Release) -> Mapping[str, Any]:
    try:
        answer = boto3.client("ecs").describe_services(cluster=release.cluster, services=[release.service])
    except (BotoCoreError, ClientError) as error:
        raise RolloutError(f"cannot read ECS service {release.service} in cluster {release.cluster}: {error}") from None
    services: list[Mapping[str, Any]] = answer.get("services") or []
    if not services:
        raise RolloutError(f"ECS service {release.service} is not in cluster {release.cluster}: was the apply undone?")
    return services[0]


def in_alarm_with_cloudwatch(names: Sequence[str]) -> Sequence[str]:
    try:
        answer = boto3.client("cloudwatch").describe_alarms(AlarmNames=list(names), StateValue="ALARM")
    except (BotoCoreError, ClientError):
        # Only the explanation is lost: the stage fails on the task definition either way.
        return ()
    return [str(alarm["AlarmName"]) for alarm in answer.get("MetricAlarms") or []]


def main(
    argv: Sequence[str] | None = None,
    describe: Callable[[Release], Mapping[str, Any]] | None = None,
    in_alarm: AlarmsInAlarm = in_alarm_with_cloudwatch,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.verify_rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, required=True, help="the outputs directory of terraform_stage apply")
    parser.add_argument("--attempts", type=int, default=20, help="reads of the service while a rollout is in progress")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between those reads")
    args = parser.parse_args(argv)
    try:
        release = read_release(args.outputs)
        print(
            verify(
                release,
                describe or describe_with_ecs,
                attempts=args.attempts,
                interval=args.interval,
                in_alarm=in_alarm,
            )
        )
        return 0
    except RolloutError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
