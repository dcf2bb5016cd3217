"""Triggers as data: validated, JSON-serialisable, describable in words.

The catalog and the command channel carry triggers as these records; the scheduler turns
each into an APScheduler trigger with its ``build()``.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sundial.timezones import check_timezone

CRON_FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")
CRONTAB_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
SAMPLE_FIRES = 5


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "UTC"
    jitter: int | None = Field(default=None, ge=0, description="random delay, seconds")

    _tz = field_validator("timezone")(classmethod(lambda cls, v: check_timezone(v)))


class CronSpec(_Spec):
    """A cron schedule: five-field crontab text, or APScheduler's named fields."""

    type: Literal["cron"] = "cron"
    expression: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    start_date: datetime | None = None
    end_date: datetime | None = None

    @model_validator(mode="after")
    def _valid(self) -> CronSpec:
        if bool(self.expression) == bool(self.fields):
            raise ValueError("give either crontab text or cron fields, not both or neither")
        unknown = set(self.fields) - set(CRON_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown cron field(s) {sorted(unknown)}; use {', '.join(CRON_FIELDS)}"
            )
        self.build()
        return self

    def build(self) -> CronTrigger:
        tz = ZoneInfo(self.timezone)
        extra = {"start_date": self.start_date, "end_date": self.end_date, "jitter": self.jitter}
        try:
            fields = _crontab_fields(self.expression) if self.expression else self.fields
            return WallClockCronTrigger(**fields, timezone=tz, **extra)
        except ValueError as error:
            what = f"cron expression {self.expression!r}" if self.expression else "cron fields"
            raise ValueError(f"invalid {what}: {error}") from None

    def describe(self) -> str:
        if self.expression:
            text = f"cron '{self.expression}'"
        else:
            text = "cron " + " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{text} ({self.timezone})"


class IntervalSpec(_Spec):
    """Every fixed number of seconds, optionally from a start date."""

    type: Literal["interval"] = "interval"
    seconds: float = Field(gt=0)
    start_date: datetime | None = None
    end_date: datetime | None = None

    def build(self) -> IntervalTrigger:
        return IntervalTrigger(
            seconds=self.seconds,
            start_date=self.start_date,
            end_date=self.end_date,
            timezone=ZoneInfo(self.timezone),
            jitter=self.jitter,
        )

    def describe(self) -> str:
        return f"every {_words(self.seconds)}"


class DateSpec(_Spec):
    """Once, at a given moment."""

    type: Literal["date"] = "date"
    run_at: datetime

    @field_validator("run_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("run_at needs a time zone offset, e.g. 2030-01-01T06:00:00Z")
        return value

    def build(self) -> DateTrigger:
        return DateTrigger(run_date=self.run_at, timezone=ZoneInfo(self.timezone))

    def describe(self) -> str:
        return f"once at {self.run_at.isoformat()}"


TriggerSpec = Annotated[CronSpec | IntervalSpec | DateSpec, Field(discriminator="type")]


def expected_interval(spec: CronSpec | IntervalSpec | DateSpec, now: datetime) -> float | None:
    """Seconds between fires for a recurring trigger (the longest gap seen in a sample)."""
    if isinstance(spec, IntervalSpec):
        return spec.seconds
    if isinstance(spec, DateSpec):
        return None
    trigger = spec.model_copy(update={"jitter": None}).build()
    fires: list[datetime] = []
    previous: datetime | None = None
    moment = now
    for _ in range(SAMPLE_FIRES + 1):
        nxt = trigger.get_next_fire_time(previous, moment)
        if nxt is None:
            break
        fires.append(nxt)
        previous, moment = nxt, nxt + timedelta(microseconds=1)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fires)]
    return max(gaps) if gaps else None


class WallClockCronTrigger(CronTrigger):  # type: ignore[misc]
    """A CronTrigger that fires once per wall-clock time when clocks go back.

    On the night daylight saving time ends, 02:30 happens twice; APScheduler 3 fires a
    ``30 2 * * *`` job at both. A job with a fixed hour means "once at that time of day".
    """

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        fire: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        if (
            fire is not None
            and previous_fire_time is not None
            and str(self.fields[5]) != "*"  # the hour field
            and _wall(fire, self.timezone) == _wall(previous_fire_time, self.timezone)
        ):
            # Search from past the repeated hour, without the previous fire time: from
            # inside the ambiguous hour APScheduler finds the same wall time again.
            fire = super().get_next_fire_time(None, fire + timedelta(hours=1))
        return fire


def _wall(moment: datetime, tz: Any) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _crontab_fields(expression: str) -> dict[str, Any]:
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"wrong number of fields; got {len(parts)}, expected 5")
    minute, hour, day, month, day_of_week = parts
    return {
        "minute": minute,
        "hour": hour,
        "day": day,
        "month": month,
        "day_of_week": _crontab_weekdays(day_of_week),
    }


def _crontab_weekdays(field: str) -> str:
    """Crontab weekday numbers (0 and 7 are Sunday) as names; APScheduler 3 counts from Monday."""
    if not any(char.isdigit() for char in field):
        return field
    days: list[str] = []
    for part in field.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            first, last = 0, 6
        elif "-" in body:
            first, last = (_weekday_number(bound) for bound in body.split("-", 1))
        else:
            first = last = _weekday_number(body)
            if step_text:
                last = 6
        if last < first:
            raise ValueError(f"weekday range {body!r} runs backwards")
        days.extend(CRONTAB_WEEKDAYS[n % 7] for n in range(first, last + 1, step))
    return ",".join(dict.fromkeys(days))


def _weekday_number(text: str) -> int:
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    name = text[:3].lower()
    if name in CRONTAB_WEEKDAYS:
        return CRONTAB_WEEKDAYS.index(name)
    raise ValueError(f"invalid day of week {text!r}; use 0-7 (0 and 7 are Sunday) or mon-sun")


def _words(seconds: float) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}" if count != 1 else unit
    return f"{seconds:g} seconds" if seconds != 1 else "second"
