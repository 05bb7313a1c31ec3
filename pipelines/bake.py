"""Hold the promotion while a freshly deployed stage runs: its alarms must stay out of ALARM for the bake.

    eval "$(python -m pipelines.stage_credentials --stage gamma --role plan)"
    python -m pipelines.bake --stage gamma --minutes 15 --result-file bake.txt

The Bake action after gamma's tests runs this with gamma's read-only plan role. It reads every alarm of the
stage (names `<app>-<stage>-*`) once a minute, for `--minutes`. An alarm in ALARM, at the start or at any
check, ends the bake at once with exit 1 and one line naming the alarms: the Gamma stage fails, so the
release never reaches prod, and the pipeline's failure notification tells the team. Otherwise it writes one
line (what was watched, for how long) to `--result-file`, which prod's approval quotes. `--minutes 0`
checks once. Bad input (unknown stage, no alarms to watch) is exit 2: a bake that watches nothing proves
nothing. The stage's region and alarm prefix come from the action's environment (`<STAGE>_REGION`,
`<STAGE>_ALARM_PREFIX`), which the pipeline stack synthesizes (pipelines/run_env.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.errors import CommandError
from pipelines.run_env import RunEnvironmentError, stage_run

# boto3's CloudWatch client; the project installs no CloudWatch stubs for this one call.
CloudWatchClient = Any

CHECK_INTERVAL_SECONDS = 60
EXIT_ALARM = 1
EXIT_BAD_INPUT = 2


class BakeError(CommandError):
    """The bake failed (an alarm fired) or could not watch anything."""


@dataclass(frozen=True)
class Clock:
    """Time as the bake sees it: real by default, a fake in tests."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def alarms_in_state(cloudwatch: CloudWatchClient, prefix: str) -> dict[str, str]:
    """Every metric and composite alarm whose name starts with `prefix`, by name: its state."""
    states: dict[str, str] = {}
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    ):
        for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
            states[alarm["AlarmName"]] = alarm["StateValue"]
    return states


def bake(
    cloudwatch: CloudWatchClient,
    *,
    stage: str,
    prefix: str,
    minutes: int,
    clock: Clock = Clock(),
    out: Callable[[str], None] = print,
) -> str:
    """Watch the alarms for `minutes`; the result line, or BakeError when one is in ALARM."""
    deadline = clock.monotonic() + minutes * 60
    checks = 0
    while True:
        states = alarms_in_state(cloudwatch, prefix)
        checks += 1
        if not states:
            raise BakeError(
                f"{stage} has no alarms named {prefix}*: a bake that watches nothing proves nothing; deploy the "
                f"{stage} stacks (their alarms) or set stages.{stage}.bake_minutes to 0",
                exit_status=EXIT_BAD_INPUT,
            )
        firing = sorted(name for name, state in states.items() if state == "ALARM")
        if firing:
            raise BakeError(
                f"{stage} alarm(s) {', '.join(firing)} in ALARM after {checks} check(s): the promotion stops here "
                f"and nothing later is deployed; find the cause in {stage}, then release a fix (or, once the alarms "
                "are OK and the cause is known to be unrelated, retry this stage's failed actions)",
                exit_status=EXIT_ALARM,
            )
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            break
        out(f"{stage}: {len(states)} alarm(s) quiet; {remaining / 60:.1f} minute(s) of bake left")
        clock.sleep(min(CHECK_INTERVAL_SECONDS, remaining))
    return f"{stage} ran this release for {minutes} minute(s) with its {len(states)} alarm(s) out of ALARM"


def main(
    argv: Sequence[str] | None = None,
    *,
    cloudwatch: CloudWatchClient | None = None,
    environ: Mapping[str, str] = os.environ,
    clock: Clock = Clock(),
) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bake", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, help="the stage that was just deployed")
    parser.add_argument("--minutes", required=True, type=int, help="how long its alarms must stay quiet")
    parser.add_argument("--result-file", type=Path, help="where to write the one-line result")
    args = parser.parse_args(argv)
    try:
        if args.minutes < 0:
            raise BakeError(f"--minutes {args.minutes}: use 0 or more", exit_status=EXIT_BAD_INPUT)
        stage = stage_run(environ, args.stage)
        client = cloudwatch or boto3.session.Session(region_name=stage.region).client("cloudwatch")
        result = bake(client, stage=stage.name, prefix=stage.alarm_prefix, minutes=args.minutes, clock=clock)
    except (BakeError, RunEnvironmentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except (BotoCoreError, ClientError) as error:
        print(
            f"error: cannot read the {args.stage} alarms ({error}): the bake runs as the stage's plan role, which "
            "needs cloudwatch:DescribeAlarms",
            file=sys.stderr,
        )
        return EXIT_ALARM
    print(result)
    if args.result_file:
        args.result_file.write_text(result + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
