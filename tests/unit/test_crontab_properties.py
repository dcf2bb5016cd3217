"""Properties of cron fire times over random crontab text, zones and windows.

The reference is a naive scan of every minute of real time, written from cron(8)'s
"Daylight Saving Time and other time changes" and from how cronie's main loop applies it:
cronie wakes every minute, compares the wall clock with the minute it last handled and,

- one minute later, or more than three hours either way (a clock correction), runs every
  job that matches the wall clock;
- further forward than that: runs wildcard jobs that match the wall clock and fixed-time
  jobs that match any of the skipped minutes;
- back: runs only wildcard jobs until the wall clock passes the last minute it handled.

Windows lie around the clock changes of zones in both hemispheres, with whole-hour,
half-hour and midnight changes and a few clock corrections of a day or more.
"""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from sundial.triggers import CrontabTrigger
from sundial.triggers.expression import DAY_NAMES, MONTH_NAMES, Crontab, parse_crontab

MINUTE = timedelta(minutes=1)
WINDOW = timedelta(hours=48)
# cronie's memory of the last minute it handled outlasts a repeat of up to three hours
WARM_UP = timedelta(hours=4)
CORRECTION = 180  # minutes; cronie's limit for a daylight-saving change
ZONE_YEARS = {
    "Europe/Berlin": (2026,),
    "America/New_York": (2026,),
    "Australia/Sydney": (2026,),
    "Australia/Lord_Howe": (2026,),
    "America/Santiago": (2026,),
    "America/Havana": (2026,),
    "Pacific/Chatham": (2026,),
    "America/St_Johns": (2026,),
    "Africa/Casablanca": (2026,),
    "Pacific/Apia": (2011,),
    "Antarctica/Casey": (2009, 2010),
    "Antarctica/Vostok": (1994,),
}
EXAMPLES = settings(max_examples=120, derandomize=True, deadline=None)


@functools.cache
def clock_changes(zone: str) -> tuple[datetime, ...]:
    """The instants at which ``zone`` changes its offset in its chosen years."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    for year in ZONE_YEARS[zone]:
        moment = datetime(year, 1, 1, tzinfo=UTC)
        while moment.year == year:
            later = moment + timedelta(hours=6)
            if later.astimezone(tz).utcoffset() != moment.astimezone(tz).utcoffset():
                low, high = moment, later
                while high - low > MINUTE:
                    middle = low + (high - low) / 2
                    if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                        low = middle
                    else:
                        high = middle
                found.append(high)
            moment = later
    return tuple(found)


def _field(draw: st.DrawFn, low: int, high: int, names: tuple[str, ...] = ()) -> str:
    """Random field text: stars, steps, values, ranges and lists, names where allowed."""
    if draw(st.booleans()):
        return draw(st.sampled_from(["*", "*/2", "*/3", "*/7", "*/15", "*/60"]))

    def value(number: int) -> str:
        if names and draw(st.booleans()):
            return names[(number - low) % len(names)]
        return str(number)

    terms = []
    for _ in range(draw(st.integers(1, 3))):
        first = draw(st.integers(low, high))
        kind = draw(st.sampled_from(["value", "range", "stepped"]))
        if kind == "value":
            terms.append(value(first))
            continue
        last = draw(st.integers(first, high))
        term = f"{value(first)}-{value(last)}"
        terms.append(term + (f"/{draw(st.integers(1, 6))}" if kind == "stepped" else ""))
    return ",".join(terms)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Crontab, str, datetime]:
    """A zone, a window start up to 30 hours before one of its clock changes, and crontab
    text: fixed-time or wildcard at the hours next to the change, or anything at all."""
    zone = draw(st.sampled_from(sorted(ZONE_YEARS)))
    change = draw(st.sampled_from(clock_changes(zone)))
    start = change - timedelta(seconds=draw(st.integers(0, 30 * 3600)))
    tz = ZoneInfo(zone)
    last_before = (change - MINUTE).astimezone(tz).replace(tzinfo=None)
    # the hour before the change, the first one it skips or repeats, and the one after
    near = sorted({last_before.hour, (last_before + MINUTE).hour, change.astimezone(tz).hour})
    near_hours = st.sampled_from([",".join(map(str, near)), *map(str, near)])
    kind = draw(st.sampled_from(["fixed", "wildcard", "any"]))
    if kind == "fixed":
        minute = draw(st.sampled_from(["0", "30", "0,30", "15-20", "59"]))
        hour = draw(near_hours)
    elif kind == "wildcard":
        minute, hour = draw(
            st.sampled_from([("*/15", "*"), ("0", "*"), ("*/20", None), ("45", "*/2")])
        )
        hour = hour or draw(near_hours)
    else:
        minute, hour = _field(draw, 0, 59), _field(draw, 0, 23)
    days = draw(st.sampled_from([("*", "*", "*"), ("*", "*", "*"), None]))
    if days is None:
        days = (
            _field(draw, 1, 31),
            _field(draw, 1, 12, MONTH_NAMES),
            _field(draw, 0, 7, DAY_NAMES),
        )
    text = " ".join([minute, hour, *days])
    try:
        crontab = parse_crontab(text)
    except ValueError:  # e.g. day 31 in a month without one
        crontab = parse_crontab(" ".join([minute, hour, "*", *days[1:]]))
    return crontab, zone, start


def matches(crontab: Crontab, wall: datetime) -> bool:
    minutes, hours, days, months, weekdays = crontab.values
    day = wall.day in days
    weekday = (wall.isoweekday() % 7) in weekdays
    return (
        wall.minute in minutes
        and wall.hour in hours
        and wall.month in months
        and ((day or weekday) if crontab.either_day else (day and weekday))
    )


def cronie_runs(crontab: Crontab, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Every minute of real time from ``start`` to ``end`` at which cronie runs the job."""
    tz = ZoneInfo(zone)

    def wall(moment: datetime) -> datetime:
        return moment.astimezone(tz).replace(tzinfo=None)

    moment = (start - WARM_UP).replace(second=0, microsecond=0)
    handled = wall(moment - MINUTE)
    runs: list[datetime] = []
    while moment <= end:
        now = wall(moment)
        ahead = (now - handled) // MINUTE
        if ahead == 1 or abs(ahead) > CORRECTION:
            run = matches(crontab, now)
            handled = now
        elif ahead > 1:
            skipped = (handled + MINUTE * step for step in range(1, ahead + 1))
            if crontab.fixed_time:
                run = any(matches(crontab, minute) for minute in skipped)
            else:
                run = matches(crontab, now)
            handled = now
        else:
            run = not crontab.fixed_time and matches(crontab, now)
        if run and moment >= start:
            runs.append(moment)
        moment += MINUTE
    return runs


def trigger_fires(trigger: CrontabTrigger, start: datetime, end: datetime) -> list[datetime]:
    """Fires from ``start`` to ``end``, chained as APScheduler chains them."""
    fires: list[datetime] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire <= end:
        fires.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, fire)
    return fires


@EXAMPLES
@given(cases())
def test_fires_agree_with_a_minute_by_minute_scan(case: tuple[Crontab, str, datetime]) -> None:
    crontab, zone, start = case
    trigger = CrontabTrigger(crontab.text, timezone=zone)

    fires = trigger_fires(trigger, start, start + WINDOW)

    assert fires == cronie_runs(crontab, zone, start, start + WINDOW)
    assert all(a < b for a, b in itertools.pairwise(fires)), "not increasing"


@EXAMPLES
@given(cases(), st.floats(0, 1))
def test_any_moment_gives_the_next_fire_of_the_scan(
    case: tuple[Crontab, str, datetime], where: float
) -> None:
    crontab, zone, start = case
    moment = start + WINDOW * where
    trigger = CrontabTrigger(crontab.text, timezone=zone)
    runs = cronie_runs(crontab, zone, moment, start + WINDOW)

    fire = trigger.get_next_fire_time(None, moment.astimezone(ZoneInfo(zone)))

    if runs:
        # in UTC: Python never calls a time in a repeated hour equal to one of another zone
        assert fire is not None
        assert fire.astimezone(UTC) == runs[0]
    else:
        assert fire is None or fire > start + WINDOW


@EXAMPLES
@given(cases())
def test_no_day_that_matches_is_skipped(case: tuple[Crontab, str, datetime]) -> None:
    crontab, zone, start = case
    tz = ZoneInfo(zone)
    end = start + WINDOW
    fired_days = {
        fire.astimezone(tz).date()
        for fire in trigger_fires(CrontabTrigger(crontab.text, timezone=tz.key), start, end)
    }

    matching_days: set[date] = set()
    moment = start.replace(second=0, microsecond=0) + MINUTE
    while moment <= end:
        local = moment.astimezone(tz)
        if _whole_day_inside(local.date(), tz, start, end) and matches(
            crontab, local.replace(tzinfo=None)
        ):
            matching_days.add(local.date())
        moment += MINUTE

    assert matching_days <= fired_days


def _whole_day_inside(day: date, tz: ZoneInfo, start: datetime, end: datetime) -> bool:
    first = datetime.combine(day, datetime.min.time(), tz)
    after = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    return start <= first and after <= end
