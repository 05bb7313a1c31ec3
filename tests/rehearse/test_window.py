"""The rehearsal's DeploymentWindow rule: the committed prod cron read as AWS's field table says, and the clock
a waiting entry condition moves instead of sleeping (tools/rehearse/window.py quotes AWS)."""

from __future__ import annotations

import datetime
import time

import pytest

from tests.support.config import fixture_project
from tools.rehearse.window import Clock, Window

UTC = datetime.UTC
# Wednesday 2027-03-03 ... Monday 2027-03-08.
WEDNESDAY, FRIDAY, SATURDAY, MONDAY = (datetime.date(2027, 3, day) for day in (3, 5, 6, 8))


def at(day: datetime.date, hour: int, minute: int = 0, second: int = 0) -> datetime.datetime:
    return datetime.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def committed_prod_window() -> Window:
    prod = fixture_project({}).stage("prod")
    assert prod.deployment_window is not None
    return Window.parse(prod.deployment_window, prod.deployment_window_time_zone)


@pytest.mark.req("R4.2", "R4.3")
@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        (at(WEDNESDAY, 8), True),
        (at(WEDNESDAY, 16, 59, 59), True),
        (at(WEDNESDAY, 17), False),
        (at(WEDNESDAY, 7, 59, 59), False),
        (at(SATURDAY, 10), False),
        (at(MONDAY, 8), True),
    ],
)
def test_the_committed_prod_window_is_open_on_weekdays_from_8_to_17_utc(when: datetime.datetime, is_open: bool) -> None:
    assert committed_prod_window().is_open(when) is is_open


@pytest.mark.req("R4.2", "R4.3")
def test_a_closed_window_opens_at_its_next_first_minute_and_an_open_one_at_once() -> None:
    window = committed_prod_window()
    assert window.next_opening(at(SATURDAY, 22)) == at(MONDAY, 8), "the weekend waits for Monday morning"
    assert window.next_opening(at(FRIDAY, 17)) == at(MONDAY, 8)
    assert window.next_opening(at(WEDNESDAY, 7, 30)) == at(WEDNESDAY, 8)
    assert window.next_opening(at(WEDNESDAY, 12, 0, 30)) == at(WEDNESDAY, 12, 0, 30), "open: enter at once"


@pytest.mark.req("R4.2", "R4.3")
def test_the_window_is_read_in_its_time_zone_with_sunday_as_day_one() -> None:
    # 09:00-11:30 in Berlin (UTC+1 in March) on Tuesdays and Thursdays of 2027.
    berlin = Window.parse("* 0-30 9-11 ? * TUE,THU 2027", "Europe/Berlin")
    assert berlin.next_opening(at(SATURDAY, 22)) == at(datetime.date(2027, 3, 9), 8)
    assert not berlin.is_open(at(datetime.date(2027, 3, 9), 10, 31))
    assert Window.parse("* * * ? * 1", "UTC").is_open(at(datetime.date(2027, 3, 7), 3)), "1 is Sunday"
    assert Window.parse("* 0/15 * 5 * ? *", "UTC").minutes == frozenset({0, 15, 30, 45})
    assert Window.parse("* * * ? * MON-FRI 2020", "UTC").next_opening(at(SATURDAY, 22)) is None, "never opens"


@pytest.mark.req("R4.2", "R4.3")
@pytest.mark.parametrize(
    "cron",
    ["* * 8-16 * * MON-FRI", "0 * 8-16 ? * MON-FRI", "* * 8-16 ? * 6L", "* * 8-16 15W * ? *", "* * 8-16 ? * FRI-MON"],
)
def test_a_cron_the_model_cannot_read_as_aws_does_is_refused_not_guessed(cron: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        Window.parse(cron, "UTC")


@pytest.mark.req("R4.2", "R4.3")
def test_the_clock_moves_to_a_wait_without_sleeping_and_runs_on_from_a_set_time() -> None:
    clock = Clock(at(SATURDAY, 22))
    started = time.monotonic()
    clock.wait_until(at(MONDAY, 8))
    assert time.monotonic() - started < 1, "a wait is never slept"
    assert at(MONDAY, 8) <= clock.now() < at(MONDAY, 8, 1)
    clock.wait_until(at(SATURDAY, 23))
    assert clock.now() >= at(MONDAY, 8), "a time already past does not move the clock back"
    clock.set(at(WEDNESDAY, 9))
    assert at(WEDNESDAY, 9) <= clock.now() < at(WEDNESDAY, 9, 1)
