"""CodePipeline's DeploymentWindow rule as the rehearsal evaluates it, and the clock it is evaluated against.

AWS documents the rule's Cron as "6 required fields and one optional field separated by white space"
(seconds, minutes, hours, day-of-month, month, day-of-week, year; seconds only `*`), read in its
TimeZone, and an entry condition holding a DeploymentWindow rule as waiting for the window to open: "it is
possible that the CloudWatchAlarm alarm might succeed before the deployment window for the
DeploymentWindow rule opens. After the deployment window opens, CodePipeline does not check the
CloudWatchAlarm alarm again." (https://docs.amazonaws.cn/en_us/codepipeline/latest/userguide/rule-reference-DeploymentWindow.html).
AWS does not say how often it looks again, nor how long it waits at most: the rehearsal's execution enters
at the first minute the window is open (docs/fidelity.md).

Day-of-week is 1-7 or SUN-SAT (1 is Sunday), months 1-12 or JAN-DEC, as AWS's field table lists them.
`L`, `W` and `#` are allowed by AWS and by StageConfig, but the rehearsal does not read them: it refuses
such a cron rather than guess.
"""

from __future__ import annotations

import datetime
import time
import zoneinfo
from dataclasses import dataclass

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (lowest, highest, names from 1) per field after seconds: minutes, hours, day-of-month, month, day-of-week, year.
FIELDS: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, MONTHS),
    (1, 7, DAYS),
    (1970, 2199, ()),
)
# How far ahead the next opening is looked for: a window that opens later than this is taken as never.
HORIZON_DAYS = 366 * 8


def _value(text: str, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + 1
    if not text.isdigit():
        # L, W, # (last, weekday, nth) and their combinations: allowed by AWS, not modelled here.
        raise ValueError(f"cron value {text!r}: the rehearsal models numbers, names, `*`, `-`, `,` and `/` only")
    return int(text)


def _values(field: str, lowest: int, highest: int, names: tuple[str, ...]) -> frozenset[int] | None:
    """The values one cron field allows; None for `?` (no specific value: the other day field decides)."""
    if field == "?":
        return None
    allowed: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            start, end = lowest, highest
        elif "-" in span:
            first, last = span.split("-")
            start, end = _value(first, names), _value(last, names)
        else:
            start = _value(span, names)
            # "5/15" is 5, 20, 35, 50: a start with a step runs to the field's end.
            end = highest if step else start
        if not lowest <= start <= end <= highest:
            raise ValueError(f"cron field {field!r}: {span!r} is outside {lowest}-{highest}")
        allowed.update(range(start, end + 1, int(step) if step else 1))
    return frozenset(allowed)


@dataclass(frozen=True)
class Window:
    """A DeploymentWindow rule's Cron read in its TimeZone."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None
    months: frozenset[int]
    days_of_week: frozenset[int] | None
    years: frozenset[int]
    zone: zoneinfo.ZoneInfo

    @classmethod
    def parse(cls, cron: str, time_zone: str) -> Window:
        parts = cron.split()
        if len(parts) not in (6, 7) or parts[0] != "*":
            raise ValueError(f"cron {cron!r}: expected 6 or 7 fields, seconds `*`")
        if [parts[3], parts[5]].count("?") != 1:
            raise ValueError(f"cron {cron!r}: exactly one of day-of-month and day-of-week is `?`")
        fields = [*parts[1:], "*"][:6]
        minutes, hours, dom, months, dow, years = (
            _values(field, *spec) for field, spec in zip(fields, FIELDS, strict=True)
        )
        if minutes is None or hours is None or months is None or years is None:
            raise ValueError(f"cron {cron!r}: `?` is for the day fields only")
        return cls(minutes, hours, dom, months, dow, years, zoneinfo.ZoneInfo(time_zone))

    def _day_matches(self, day: datetime.date) -> bool:
        # Python's isoweekday is 1 (Monday) to 7 (Sunday); AWS's day-of-week is 1 (Sunday) to 7 (Saturday).
        weekday = day.isoweekday() % 7 + 1
        return (
            day.year in self.years
            and day.month in self.months
            and (self.days_of_month is None or day.day in self.days_of_month)
            and (self.days_of_week is None or weekday in self.days_of_week)
        )

    def is_open(self, at: datetime.datetime) -> bool:
        local = at.astimezone(self.zone)
        return self._day_matches(local.date()) and local.hour in self.hours and local.minute in self.minutes

    def next_opening(self, at: datetime.datetime) -> datetime.datetime | None:
        """`at` if the window is open then, else the first minute after it that is; None within HORIZON_DAYS."""
        if self.is_open(at):
            return at
        local = at.astimezone(self.zone)
        for offset in range(HORIZON_DAYS):
            day = local.date() + datetime.timedelta(days=offset)
            if not self._day_matches(day):
                continue
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    candidate = datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)
                    if candidate > at:
                        return candidate.astimezone(at.tzinfo)
        return None


class Clock:
    """The rehearsal's time: `start` plus the real time elapsed plus every wait, which is never slept.

    CodePipeline waits hours for a window; the rehearsal moves its clock to the opening instead."""

    def __init__(self, start: datetime.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the rehearsal's clock needs an aware start time")
        self._start = start
        self._began = time.monotonic()
        self._waited = datetime.timedelta()

    def now(self) -> datetime.datetime:
        return self._start + datetime.timedelta(seconds=time.monotonic() - self._began) + self._waited

    def wait_until(self, when: datetime.datetime) -> None:
        ahead = when - self.now()
        if ahead > datetime.timedelta():
            self._waited += ahead

    def set(self, when: datetime.datetime) -> None:
        """A scenario's own time of day (a Saturday night, say), from which the clock runs on."""
        self._start, self._began, self._waited = when, time.monotonic(), datetime.timedelta()


# The rehearsal's default start: a Wednesday morning, inside the committed prod window (weekdays 08:00-17:00
# UTC) for the hours the whole rehearsal takes, so that only the scenario that closes the window waits.
DEFAULT_START = datetime.datetime(2027, 3, 3, 9, 0, tzinfo=datetime.UTC)
