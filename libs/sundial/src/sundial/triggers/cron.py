"""``CrontabTrigger``: crontab text in a time zone, fired as cronie fires it.

cronsim finds the wall-clock times that match the text (a naive calendar walk, with
cron's day-of-month/day-of-week rule); this module turns each wall-clock time into the
instants at which the job runs, following cron(8)'s "Daylight Saving Time and other time
changes":

- a wall-clock time that happens once runs then;
- a fixed-time job (minute and hour fields not starting with ``*``) whose time is skipped
  when clocks go forward runs right after the jump; one whose time happens twice when
  clocks go back runs at the first occurrence only;
- wildcard jobs follow elapsed time: a skipped time does not run, a repeated time runs
  twice;
- cronie takes a change of more than about three hours for a clock correction, not
  daylight saving: then fixed-time jobs are neither caught up nor held back.

Because each wall-clock day is walked on its own calendar, no fire is lost when a day,
month or year boundary lies next to a clock change.

Job stores pickle this class by its import path (``sundial.triggers.cron.CrontabTrigger``);
moving or renaming it would make APScheduler delete every stored cron job.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from cronsim import CronSim

from sundial.triggers.expression import Crontab, parse_crontab

#: the pickled state's layout; raise it (and read older ones) whenever the state changes
STATE_VERSION = 1
# cron(8) treats a clock change as daylight saving only while the wall clock moves by at
# most this much over one real minute (cronie compares its minute counters with 3 hours).
_CRONIE_JUMP_LIMIT = timedelta(hours=3)
_MINUTE = timedelta(minutes=1)
_MICROSECOND = timedelta(microseconds=1)


class CrontabTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at the times crontab text means in ``timezone``, between optional bounds.

    Only the text, the zone name, the bounds and the jitter are pickled, so that the job
    store never holds an object of a library that may change between versions.
    """

    __slots__ = ("_crontab", "end_date", "jitter", "start_date", "timezone")

    def __init__(
        self,
        expression: str,
        *,
        timezone: str = "UTC",
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        jitter: int | None = None,
    ) -> None:
        self._configure(expression, timezone, start_date, end_date, jitter)

    def _configure(
        self,
        expression: str,
        timezone: str,
        start_date: datetime | None,
        end_date: datetime | None,
        jitter: int | None,
    ) -> None:
        self._crontab: Crontab = parse_crontab(expression)
        self.timezone = ZoneInfo(timezone)
        self.start_date = _aware(start_date, self.timezone)
        self.end_date = _aware(end_date, self.timezone)
        self.jitter = jitter

    @property
    def expression(self) -> str:
        return self._crontab.text

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # Compared in UTC: Python compares two times of one zone by their wall clocks,
        # which cannot tell the two passes through a repeated hour apart.
        if previous_fire_time is not None:
            # From the previous fire, not from now, so that APScheduler sees the fires it
            # missed while it was down and applies its misfire rules to them.
            after = previous_fire_time.astimezone(UTC)
        else:
            begin = now.astimezone(UTC)
            if self.start_date is not None:
                begin = max(begin, self.start_date.astimezone(UTC))
            after = begin - _MICROSECOND
        fire = self.next_after(after)
        end = self.end_date.astimezone(UTC) if self.end_date is not None else None
        if fire is None or (end is not None and fire > end):
            return None
        jittered: datetime = self._apply_jitter(fire, self.jitter, now)
        return min(jittered, end).astimezone(self.timezone) if end is not None else jittered

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire strictly after ``moment``, in the trigger's zone."""
        after = moment.astimezone(UTC)
        local = after.astimezone(self.timezone)
        # In the first pass through a repeated hour, wall-clock times earlier than this
        # one still come round once more.
        earliest = local.replace(tzinfo=None) - _repeat_ahead(local)
        best: datetime | None = None
        for wall in self._walls_from(earliest):
            instants = self._instants(wall)
            for instant in instants:
                if instant > after and (best is None or instant < best):
                    best = instant
            # The first instant of each wall-clock time grows with the time, so once one
            # lies ahead no later time can come sooner.
            if instants and instants[0] > after:
                break
        return best.astimezone(self.timezone) if best is not None else None

    def _walls_from(self, earliest: datetime) -> CronSim:
        # cronsim steps one second before its first match; naive times keep it on the
        # wall clock, where every matching time is found regardless of clock changes.
        return CronSim(self._crontab.evaluated, earliest - timedelta(seconds=1))

    def _instants(self, wall: datetime) -> list[datetime]:
        """When the job runs for one matching wall-clock time, earliest first."""
        first = wall.replace(tzinfo=self.timezone).astimezone(UTC)
        second = wall.replace(tzinfo=self.timezone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        fixed = self._crontab.fixed_time
        if first < second:  # the clock went back: this time happens twice
            if fixed and _is_daylight_saving(first - second):
                return [first]
            return [first, second]
        # the clock went forward past this time: ``second`` lies before the jump, ``first``
        # after it
        if fixed and _is_daylight_saving(first - second):
            return [_change_instant(self.timezone, second, first)]
        return []

    def __getstate__(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "expression": self._crontab.text,
            "timezone": self.timezone.key,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "jitter": self.jitter,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"stored CrontabTrigger state has version {state.get('version')!r}; this "
                f"Sundial reads version {STATE_VERSION}: run the Sundial that wrote it or newer"
            )
        self._configure(
            state["expression"],
            state["timezone"],
            state["start_date"],
            state["end_date"],
            state["jitter"],
        )

    def __str__(self) -> str:
        return f"cron['{self.expression}', {self.timezone.key}]"

    def __repr__(self) -> str:
        bounds = "".join(
            f", {name}={value.isoformat()!r}"
            for name, value in (("start_date", self.start_date), ("end_date", self.end_date))
            if value is not None
        )
        jitter = f", jitter={self.jitter}" if self.jitter else ""
        return (
            f"<CrontabTrigger ({self.expression!r}, timezone={self.timezone.key!r}"
            f"{bounds}{jitter})>"
        )


def _aware(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone)


def _repeat_ahead(local: datetime) -> timedelta:
    """How far back the clock will go while ``local`` is in the first pass of a repeat."""
    if local.fold:
        return timedelta(0)
    shift = local.utcoffset() - local.replace(fold=1).utcoffset()  # type: ignore[operator]
    return max(shift, timedelta(0))


def _is_daylight_saving(shift: timedelta) -> bool:
    """Whether cronie handles a clock change of ``shift`` (forward > 0) as daylight saving."""
    return abs(_MINUTE + shift) <= _CRONIE_JUMP_LIMIT


def _change_instant(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first instant, between ``before`` and ``after``, on the clock's new offset."""
    offset = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    # offsets change on whole seconds
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
