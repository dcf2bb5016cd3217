"""Triggers as data: validated, JSON-serialisable, describable in words.

The catalog and the command channel carry triggers as these records; the scheduler turns
each into an APScheduler trigger with its ``build()``. Cron triggers are crontab text as
crontab(5) means it (see :mod:`sundial.triggers.expression` and
:mod:`sundial.triggers.cron`).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sundial.constants import MAX_JITTER_SECONDS
from sundial.timestamps import IsoDatetime, check_within_reach
from sundial.timezones import check_timezone
from sundial.triggers.cron import CrontabTrigger
from sundial.triggers.expression import CrontabError, crontab_from_keywords, parse_crontab
from sundial.triggers.legacy import WallClockCronTrigger, is_current

__all__ = [
    "CronSpec",
    "CrontabError",
    "CrontabTrigger",
    "DateSpec",
    "IntervalSpec",
    "TriggerSpec",
    "WallClockCronTrigger",
    "expected_interval",
    "in_words",
    "is_current",
    "upcoming",
]

#: fire times sampled to estimate a cron trigger's interval, and shown in previews
SAMPLE_FIRES = 5


def _type_required(schema: dict[str, Any]) -> None:
    """In JSON the ``type`` tag picks the trigger, so it must be given (code may omit it)."""
    schema["required"] = ["type", *(name for name in schema.get("required", ()) if name != "type")]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_type_required)

    timezone: str = "UTC"
    jitter: int | None = Field(
        default=None,
        ge=0,
        le=MAX_JITTER_SECONDS,
        description=f"random delay, seconds (at most {MAX_JITTER_SECONDS}; for an interval "
        "trigger, at most its interval)",
    )

    _tz = field_validator("timezone")(classmethod(lambda cls, v: check_timezone(v)))


class CronSpec(_Spec):
    """A cron schedule: crontab text as crontab(5) means it.

    The keyword form (``fields``, as ``cron(hour=2, minute=30)`` writes it) is turned into
    crontab text when read: its fields are crontab's, numbered as crontab numbers them.
    """

    type: Literal["cron"] = "cron"
    expression: str = Field(
        description="crontab(5) text, 'minute hour day-of-month month day-of-week', or a "
        "macro: @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually)",
        examples=["0 6 * * *", "30 2 * * sun", "@daily"],
    )
    fields: dict[str, str | int] | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="instead of expression: crontab fields by name (minute, hour, day, "
        "month, day_of_week), numbered as in crontab; turned into expression",
        examples=[{"hour": 2, "minute": 30, "day_of_week": "sun"}],
    )
    start_date: IsoDatetime | None = None
    end_date: IsoDatetime | None = None

    _reach = field_validator("start_date")(classmethod(lambda cls, v: v and check_within_reach(v)))

    @model_validator(mode="before")
    @classmethod
    def _from_keywords(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        fields = data.pop("fields", None)
        given = data.get("expression") is not None
        if given == bool(fields):
            raise ValueError("give either crontab text (expression) or cron fields, not both")
        if fields:
            if not isinstance(fields, dict):
                raise ValueError("fields must map crontab field names to values")
            try:
                data["expression"] = parse_crontab(crontab_from_keywords(fields)).text
            except CrontabError as error:
                raise ValueError(f"invalid cron fields: {error}") from None
        return data

    @field_validator("expression")
    @classmethod
    def _valid(cls, value: str) -> str:
        try:
            return parse_crontab(value).text
        except CrontabError as error:
            raise ValueError(f"invalid cron expression {value!r}: {error}") from None

    def build(self) -> CrontabTrigger:
        return CrontabTrigger(
            self.expression,
            timezone=self.timezone,
            start_date=self.start_date,
            end_date=self.end_date,
            jitter=self.jitter,
        )

    def describe(self) -> str:
        return f"cron '{self.expression}' ({self.timezone})"


class IntervalSpec(_Spec):
    """Every fixed number of seconds, optionally from a start date."""

    type: Literal["interval"] = "interval"
    seconds: float = Field(gt=0)
    start_date: IsoDatetime | None = None
    end_date: IsoDatetime | None = None

    _reach = field_validator("start_date")(classmethod(lambda cls, v: v and check_within_reach(v)))

    @model_validator(mode="after")
    def _jitter_within_interval(self) -> IntervalSpec:
        if self.jitter is not None and self.jitter > self.seconds:
            raise ValueError(
                f"jitter {self.jitter} s is longer than the interval ({_words(self.seconds)}): "
                "runs would overtake each other"
            )
        return self

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
    run_at: IsoDatetime

    @field_validator("run_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("run_at needs a time zone offset, e.g. 2030-01-01T06:00:00Z")
        return check_within_reach(value)

    def build(self) -> DateTrigger:
        return DateTrigger(run_date=self.run_at, timezone=ZoneInfo(self.timezone))

    def describe(self) -> str:
        return f"once at {self.run_at.isoformat()}"


TriggerSpec = Annotated[CronSpec | IntervalSpec | DateSpec, Field(discriminator="type")]


def upcoming(
    spec: CronSpec | IntervalSpec | DateSpec, now: datetime, count: int = SAMPLE_FIRES
) -> list[datetime]:
    """The next ``count`` fire times from ``now`` on, without jitter, in the trigger's zone
    (fewer when it stops firing or would fire past the year 9999)."""
    fires: list[datetime] = []
    try:
        trigger = spec.model_copy(update={"jitter": None}).build()
        previous: datetime | None = None
        while len(fires) < count:
            fire: datetime | None = trigger.get_next_fire_time(previous, now)
            if fire is None:
                break
            fires.append(fire)
            previous = fire
    except OverflowError:
        pass
    return fires


def in_words(spec: CronSpec | IntervalSpec | DateSpec) -> str:
    """The schedule in English, e.g. ``At 02:30 on Sunday (Europe/Berlin)``."""
    if isinstance(spec, CronSpec):
        return f"{parse_crontab(spec.expression).explain()} ({spec.timezone})"
    text = spec.describe()
    return text[:1].upper() + text[1:]


def expected_interval(spec: CronSpec | IntervalSpec | DateSpec, now: datetime) -> float | None:
    """Seconds between fires for a recurring trigger (the longest gap seen in a sample)."""
    if isinstance(spec, IntervalSpec):
        return spec.seconds
    if isinstance(spec, DateSpec):
        return None
    fires = upcoming(spec, now, SAMPLE_FIRES + 1)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fires)]
    return max(gaps) if gaps else None


def _words(seconds: float) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}" if count != 1 else unit
    return f"{seconds:g} seconds" if seconds != 1 else "second"
