"""`python -m pipelines.bake`: the promotion waits while the deployed stage's alarms stay out of ALARM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipelines.bake import CHECK_INTERVAL_SECONDS, EXIT_ALARM, EXIT_BAD_INPUT, BakeError, Clock, bake, main
from tests.support.alarms import put_alarm
from tests.support.config import action_environment

REGION = "eu-west-1"
PREFIX = "canvalo-gamma-"


class FakeClock:
    """Time that passes only when the bake sleeps; `on_sleep` runs after each sleep (an alarm fires...)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: list[Any] = []

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps.append(seconds)
        if self.on_sleep:
            self.on_sleep.pop(0)()

    @property
    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.now, sleep=self.sleep)


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("cloudwatch", region_name=REGION)
        for name in ("canvalo-gamma-api-5xx-rate", "canvalo-gamma-api-healthy-tasks", "canvalo-prod-api-5xx-rate"):
            put_alarm(client, name, "OK")
        yield client


def fire(cloudwatch: Any, name: str) -> None:
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="5xx during the bake")


@pytest.mark.req("R4.2")
def test_a_quiet_stage_bakes_for_the_whole_time_checking_every_minute(cloudwatch: Any) -> None:
    time = FakeClock()
    result = bake(cloudwatch, stage="gamma", prefix=PREFIX, minutes=15, clock=time.clock, out=lambda _: None)
    assert time.now == 15 * 60, "the promotion waited the whole bake"
    assert max(time.sleeps) == CHECK_INTERVAL_SECONDS and len(time.sleeps) == 15
    # Only gamma's alarms are watched: prod's are someone else's business.
    assert result == "gamma ran this release for 15 minute(s) with its 2 alarm(s) out of ALARM"


@pytest.mark.req("R4.2", "R4.5")
def test_an_alarm_during_the_bake_stops_the_promotion_at_once_naming_it(cloudwatch: Any) -> None:
    time = FakeClock()
    time.on_sleep = [lambda: None, lambda: fire(cloudwatch, "canvalo-gamma-api-5xx-rate")]
    with pytest.raises(BakeError) as failure:
        bake(cloudwatch, stage="gamma", prefix=PREFIX, minutes=15, clock=time.clock, out=lambda _: None)
    assert failure.value.exit_status == EXIT_ALARM
    assert time.now == 2 * 60, "it stopped at the first check that saw the alarm, not at the end of the bake"
    message = str(failure.value)
    assert "canvalo-gamma-api-5xx-rate in ALARM after 3 check(s): the promotion stops here" in message
    assert "\n" not in message


@pytest.mark.req("R4.2", "R4.5")
def test_an_alarm_already_firing_fails_before_any_wait(cloudwatch: Any) -> None:
    fire(cloudwatch, "canvalo-gamma-api-healthy-tasks")
    time = FakeClock()
    with pytest.raises(BakeError, match="canvalo-gamma-api-healthy-tasks in ALARM after 1 check"):
        bake(cloudwatch, stage="gamma", prefix=PREFIX, minutes=15, clock=time.clock, out=lambda _: None)
    assert time.sleeps == []


@pytest.mark.req("R4.2")
def test_zero_minutes_checks_once_and_a_stage_without_alarms_is_bad_input(cloudwatch: Any) -> None:
    time = FakeClock()
    assert "for 0 minute(s)" in bake(cloudwatch, stage="gamma", prefix=PREFIX, minutes=0, clock=time.clock)
    assert time.sleeps == []
    with pytest.raises(BakeError, match="a bake that watches nothing proves nothing") as failure:
        bake(cloudwatch, stage="beta", prefix="canvalo-beta-", minutes=5, clock=time.clock)
    assert failure.value.exit_status == EXIT_BAD_INPUT


@pytest.mark.req("R4.2")
def test_the_command_writes_the_result_the_next_approval_quotes(
    cloudwatch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = tmp_path / "bake.txt"
    argv = ["--stage", "gamma", "--minutes", "1", "--result-file", str(result)]
    assert main(argv, cloudwatch=cloudwatch, environ=action_environment(), clock=FakeClock().clock) == 0
    assert result.read_text() == "gamma ran this release for 1 minute(s) with its 2 alarm(s) out of ALARM\n"
    fire(cloudwatch, "canvalo-gamma-api-5xx-rate")
    assert main(argv, cloudwatch=cloudwatch, environ=action_environment(), clock=FakeClock().clock) == EXIT_ALARM
    assert capsys.readouterr().err.startswith("error: gamma alarm(s) canvalo-gamma-api-5xx-rate in ALARM")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--stage", "qa", "--minutes", "5"], "unknown stage 'qa'"),
        (["--stage", "gamma", "--minutes", "-1"], "0 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cloudwatch: Any, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert main(argv, cloudwatch=cloudwatch, environ=action_environment(), clock=FakeClock().clock) == EXIT_BAD_INPUT
    (line,) = capsys.readouterr().err.splitlines()
    assert words in line
