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

It runs with the stage's credentials (`pipelines.stage_credentials` in gamma and prod), and needs only
`ecs:DescribeServices` on the service.
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
            "wrote for a stage with a backend stack",
            EXIT_BAD_INPUT,
        )
    return Release(*(found[name] for name in OUTPUT_NAMES))


def revision(task_definition: str) -> str:
    """`family:revision` of a task definition ARN, as a person reads it."""
    return task_definition.rsplit("/", 1)[-1]


def rollout_problem(release: Release, service: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(what is wrong, whether waiting may cure it); (None, False) when the release runs, rollout completed."""
    name = f"ECS service {release.service}"
    running = str(service.get("taskDefinition", ""))
    if running != release.task_definition:
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
) -> str:
    for attempt in range(1, attempts + 1):
        problem, may_settle = rollout_problem(release, describe(release))
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


def main(argv: Sequence[str] | None = None, describe: Callable[[Release], Mapping[str, Any]] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.verify_rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, required=True, help="the outputs directory of terraform_stage apply")
    parser.add_argument("--attempts", type=int, default=20, help="reads of the service while a rollout is in progress")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between those reads")
    args = parser.parse_args(argv)
    try:
        release = read_release(args.outputs)
        print(verify(release, describe or describe_with_ecs, attempts=args.attempts, interval=args.interval))
        return 0
    except RolloutError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status


if __name__ == "__main__":
    sys.exit(main())
