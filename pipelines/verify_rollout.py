"""Fail the stage unless its ECS service runs the task definition Terraform just applied, rollout completed.

    python -m pipelines.verify_rollout --outputs DIR [--interval SECONDS] [--max-minutes M] [--attempts N]

With the deployment circuit breaker on, a release whose tasks never become healthy is rolled back by ECS,
and Terraform's `wait_for_steady_state` still ends the apply successfully: the service is steady, on the
*previous* task definition (terraform-provider-aws #20858). The post-deploy tests would then pass against
the old tasks and promote a release that never ran. This check reads the backend's outputs
(`backend_cluster_name`, `backend_service_name`, `backend_task_definition_arn`) from the outputs directory
`terraform_stage apply` wrote, asks ECS what the service runs, and fails with one line when:
- the service's task definition is not the applied one (rolled back, or changed by someone since);
- its PRIMARY deployment's rollout FAILED, or is still IN_PROGRESS after the wait.

How long it waits comes from what ECS waits, not from a constant. With deployment alarms, ECS keeps the
rollout IN_PROGRESS for a bake time after the new tasks replaced the old ones, and reports COMPLETED only
once it is over; ECS computes that bake time from the alarms' configuration and it cannot be set (AWS,
Amazon ECS Developer Guide, "How CloudWatch alarms detect Amazon ECS deployment failures",
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html). The formula
is not published, so the check reads the alarms (DescribeAlarms) and allows, after ROLLOUT_SECONDS for the
tasks to start and pass their health checks, twice the longest alarm window (Period x EvaluationPeriods):
the time an alarm needs to judge a full window of the new release. It stops as soon as ECS says COMPLETED,
so the allowance costs nothing when ECS is quicker, and never waits longer than --max-minutes. Alarms it
cannot read get the maximum. `--attempts N` fixes the number of reads instead.

When the service was rolled back and has deployment alarms (`deploymentConfiguration.alarms`), the line
names the ones that rolled it back: those a FAILED deployment's `rolloutStateReason` or a recent service
event mentions, else those CloudWatch reports in ALARM. ECS deletes the failed deployment once the
rollback completes, so the reason is not always there to read; the alarm usually still is.

It runs with the stage's credentials (`pipelines.stage_credentials` in gamma and prod), and needs
`ecs:DescribeServices` on the service and `cloudwatch:DescribeAlarms` (to size the wait and name alarms).
"""

from __future__ import annotations

import argparse
import json
import math
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
# The MetricAlarms DescribeAlarms returns for these names; None when they cannot be read.
AlarmConfigs = Callable[[Sequence[str]], Sequence[Mapping[str, Any]] | None]
# For the new tasks to start, register and pass their health checks before ECS's bake begins (the whole
# wait before ECS's bake time was taken into account).
ROLLOUT_SECONDS = 300
# ECS does not publish how it derives the bake time from the alarms: twice the longest window is headroom.
BAKE_FACTOR = 2
# The Apply project times out after 120 minutes (stacks/pipeline.py), and a CloudFront update within its
# apply can take most of an hour: the wait must leave that room. The stages' alarms need 15 minutes.
MAX_MINUTES = 30


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


def alarm_window_seconds(alarm: Mapping[str, Any]) -> int:
    """Period x EvaluationPeriods; a metric math alarm's period is its longest metric's."""
    periods = [int(alarm.get("Period") or 0)]
    for query in alarm.get("Metrics") or []:
        periods += [int(query.get("Period") or 0), int((query.get("MetricStat") or {}).get("Period") or 0)]
    return max(periods) * int(alarm.get("EvaluationPeriods") or 1)


def wait_seconds(service: Mapping[str, Any], alarm_configs: AlarmConfigs, max_seconds: int) -> tuple[int, str]:
    """(how long to wait for COMPLETED, why): the rollout, then the bake ECS derives from the same alarms."""
    names = deployment_alarms(service)
    if not names:
        return min(ROLLOUT_SECONDS, max_seconds), f"{ROLLOUT_SECONDS} s to roll out, no deployment alarm to bake"
    alarms = alarm_configs(names)
    if alarms is None:
        return max_seconds, f"the maximum: deployment alarms {', '.join(names)} cannot be read"
    windows = {str(alarm.get("AlarmName")): alarm_window_seconds(alarm) for alarm in alarms}
    longest = max(windows, key=lambda name: windows[name], default="")
    bake = BAKE_FACTOR * windows.get(longest, 0)
    wanted = ROLLOUT_SECONDS + bake
    why = f"{ROLLOUT_SECONDS} s to roll out + {bake} s for ECS's bake ({BAKE_FACTOR} x {longest}'s {windows.get(longest, 0)} s window)"
    if wanted > max_seconds:
        return max_seconds, f"{why}, bounded to {max_seconds} s"
    return wanted, why


def describe_with_ecs(release: Release) -> Mapping[str, Any]:
    try:
        answer = boto3.client("ecs").describe_services(cluster=release.cluster, services=[release.service])
    except (BotoCoreError, ClientError) as error:
        raise RolloutError(f"cannot read ECS service {release.service} in cluster {release.cluster}: {error}") from None
    services: list[Mapping[str, Any]] = answer.get("services") or []
    if not services:
        raise RolloutError(f"ECS service {release.service} is not in cluster {release.cluster}: was the apply undone?")
    return services[0]


def alarm_configs_with_cloudwatch(names: Sequence[str]) -> Sequence[Mapping[str, Any]] | None:
    try:
        answer = boto3.client("cloudwatch").describe_alarms(AlarmNames=list(names))
    except (BotoCoreError, ClientError):
        return None
    return list(answer.get("MetricAlarms") or [])


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
    alarm_configs: AlarmConfigs = alarm_configs_with_cloudwatch,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.verify_rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, required=True, help="the outputs directory of terraform_stage apply")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between reads of the service")
    parser.add_argument("--max-minutes", type=float, default=MAX_MINUTES, help="the longest wait, whatever the alarms")
    parser.add_argument("--attempts", type=int, help="a fixed number of reads instead of the wait ECS's bake needs")
    args = parser.parse_args(argv)
    try:
        if args.attempts is None and (args.interval <= 0 or args.max_minutes <= 0):
            raise RolloutError(
                f"--interval {args.interval:g} and --max-minutes {args.max_minutes:g} must both be more than 0 "
                "(or pass --attempts)",
                EXIT_BAD_INPUT,
            )
        release = read_release(args.outputs)
        read = describe or describe_with_ecs
        attempts = args.attempts
        if attempts is None:
            seconds, why = wait_seconds(read(release), alarm_configs, int(args.max_minutes * 60))
            attempts = math.ceil(seconds / args.interval) + 1
            print(f"waiting up to {seconds} s for ECS service {release.service}'s rollout to complete: {why}")
        print(verify(release, read, attempts=attempts, interval=args.interval, sleep=sleep, in_alarm=in_alarm))
        return 0
    except RolloutError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
