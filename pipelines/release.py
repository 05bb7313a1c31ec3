"""What each stage's last Apply deployed, kept in the pipeline account so `make status` reads no build log.

    python -m pipelines.release image --outputs DIR    # as the stage's deploy role: the image the applied task definition runs

After a stage's Apply, `python -m pipelines.drift record --stage S --commit SHA --image IMAGE --execution-id ID`
(with the Apply's own credentials, in the pipeline account) writes the commit for the drift check and a
`ReleaseRecord` as JSON into the String parameter `/<app>/<stage>/release` (created by the `pipeline` stack
with the placeholder `never-deployed`): the commit, the image, the pipeline execution and the time.
`tools/status.py` reads it. The image comes from ECS, not from the synthesis: the task definition the
stack's `backend_task_definition_arn` output names, as the stage's Apply just applied it.

The record names only a release that was verified: deploy.yml writes it after `verify_rollout` and the
Apply's own smoke check passed, and it also holds the service and the task definition that release runs.
The next Apply reads it first (`drift previous`): that task definition is what a failed smoke check puts
back, even when an earlier, half-finished attempt left the service on another one. A restore writes the
record of the release it put back (`drift restored`), with the task definition the service now runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from names import NEVER_DEPLOYED
from pipelines.verify_rollout import Release, RolloutError, read_release

# In a restore's directory (pipelines/restore.py): the record the Apply started from, and the one a restore wrote.
PREVIOUS_FILE = "release.json"
RESTORED_FILE = "restored-release.json"


class RecordError(ValueError):
    """A release parameter holds something that is not a record; the message says which and what to do."""


@dataclass(frozen=True)
class ReleaseRecord:
    commit: str
    # The backend's container image (`<registry>/<repository>:<tag>` or `@sha256:...`); None when it could not be read.
    image: str | None
    # The CodePipeline execution whose Apply deployed it; None when the Apply was not given one.
    execution_id: str | None
    # When the Apply recorded it, ISO 8601 in UTC.
    deployed_at: str
    # The ECS service and the task definition the release runs; None in records written before they were kept.
    cluster: str | None = None
    service: str | None = None
    task_definition: str | None = None
    # When a restore put this release back after a newer one failed its smoke check; None otherwise.
    restored_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def now(
        cls, *, commit: str, image: str | None, execution_id: str | None, running: Release | None = None
    ) -> ReleaseRecord:
        return cls(
            commit=commit,
            image=image or None,
            execution_id=execution_id or None,
            deployed_at=utc_now(),
            cluster=running.cluster if running else None,
            service=running.service if running else None,
            task_definition=running.task_definition if running else None,
        )

    def restored(self, task_definition: str) -> ReleaseRecord:
        """This release as a restore put it back: the same commit and image, the revision the service now runs
        (a copy when Terraform had deregistered the recorded one)."""
        return replace(self, task_definition=task_definition, restored_at=utc_now())

    def runs_on(self, cluster: str, service: str) -> bool:
        """Whether the record names this service's task definition (older records name none)."""
        return bool(self.task_definition) and (self.cluster, self.service) == (cluster, service)

    @classmethod
    def parse(cls, parameter: str, value: str) -> ReleaseRecord | None:
        """The record a parameter holds; None while it holds the pipeline stack's placeholder."""
        if value == NEVER_DEPLOYED:
            return None
        try:
            raw = json.loads(value)
            if not isinstance(raw, dict) or not isinstance(raw.get("commit"), str):
                raise TypeError("no commit")
            return cls(
                commit=raw["commit"],
                image=_optional(raw.get("image")),
                execution_id=_optional(raw.get("execution_id")),
                deployed_at=str(raw.get("deployed_at") or ""),
                cluster=_optional(raw.get("cluster")),
                service=_optional(raw.get("service")),
                task_definition=_optional(raw.get("task_definition")),
                restored_at=_optional(raw.get("restored_at")),
            )
        except (json.JSONDecodeError, TypeError):
            raise RecordError(
                f"{parameter} holds {value[:80]!r}, not a release record: a stage's Apply writes it "
                "(pipelines.drift record --image)"
            ) from None


def _optional(value: Any) -> str | None:
    return str(value) if value else None


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_record_file(path: Path) -> ReleaseRecord | None:
    """The record a file of a restore's directory holds; None when there is none or it is the placeholder."""
    if not path.exists():
        return None
    return ReleaseRecord.parse(str(path), path.read_text().strip())


def applied_image(describe_task_definition: Callable[..., Mapping[str, Any]], task_definition_arn: str) -> str:
    """The image of the task definition's first essential container (the backend has one container)."""
    definition = describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
    containers: list[Mapping[str, Any]] = definition.get("containerDefinitions") or []
    essential = [c for c in containers if c.get("essential", True)] or containers
    if not essential:
        raise RolloutError(f"task definition {task_definition_arn} has no container")
    return str(essential[0]["image"])


def main(argv: Sequence[str] | None = None, ecs: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.release", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    image = commands.add_parser("image", help="print the image the stage's applied task definition runs")
    image.add_argument("--outputs", type=Path, required=True, help="the outputs directory of terraform_stage apply")
    args = parser.parse_args(argv)
    try:
        release = read_release(args.outputs)
        print(applied_image((ecs or boto3.client("ecs")).describe_task_definition, release.task_definition))
    except (RolloutError, BotoCoreError, ClientError, KeyError) as error:
        # What was applied stays applied and recorded (the drift check needs its commit): the record then
        # says the image is unknown rather than failing a deploy that succeeded.
        print(f"warning: cannot read the applied image, the release record will say unknown: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
