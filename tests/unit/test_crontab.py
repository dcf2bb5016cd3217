"""Crontab text means what crontab(5) means, fired as cronie's cron(8) fires it.

Written from two manual pages of cronie (the cron of most Linux distributions):

- crontab(5), "DESCRIPTION" and "EXTENSIONS": the five time and date fields and their
  allowed values, ``*`` as first-last, inclusive ranges whose first number is not above
  the second, lists, steps after ranges and after ``*`` that count within their field
  (``*/23`` in the hour field is hours 0 and 23), month and day names of three letters in
  any case, 0 or 7 for Sunday, the rule that a command runs when either day field matches
  if both are restricted ("30 4 1,15 * 5" runs on the 1st, the 15th and every Friday),
  and the macros @yearly, @annually, @monthly, @weekly, @daily, @hourly (with cronie's
  @midnight) and @reboot;
- cron(8), "Daylight Saving Time and other time changes": local time changes of less than
  three hours are handled specially for jobs that run at a specific time (and those with a
  granularity greater than one hour), while jobs that run more frequently are scheduled
  normally; after a jump forward the jobs that would have run in the skipped interval run
  immediately; after a jump backward running the same job twice is avoided; changes of
  more than three hours are corrections of the clock, and the new time is used at once.

Each daylight-saving rule is shown in at least three zones, one of them in the southern
hemisphere. Times are written in the job's zone with their UTC offset.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from pydantic import ValidationError

from sundial.jobs import cron
from sundial.triggers import CronSpec, CrontabTrigger


def local_fires(expression: str, zone: str, after: str, count: int) -> list[str]:
    """The first ``count`` fires from the local time ``after`` on, chained as APScheduler
    chains them, written as local time with offset."""
    trigger = CrontabTrigger(expression, timezone=zone)
    start = datetime.fromisoformat(after).replace(tzinfo=trigger.timezone)
    found: list[str] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and len(found) < count:
        found.append(fire.strftime("%Y-%m-%d %H:%M%z"))
        fire = trigger.get_next_fire_time(fire, fire)
    return found


def days_fired(expression: str, zone: str, after: str, count: int) -> list[str]:
    return [fire[:10] for fire in local_fires(expression, zone, after, count)]


# -- crontab(5): the fields, in UTC ---------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # "A field may contain an asterisk (*), which always stands for first-last."
        ("* * * * *", "2026-01-15 10:00", ["2026-01-15 10:00", "2026-01-15 10:01"]),
        # "Ranges ... are inclusive. For example, 8-11 for an 'hours' entry"
        (
            "0 8-11 * * *",
            "2026-01-15 07:00",
            ["2026-01-15 08:00", "2026-01-15 09:00", "2026-01-15 10:00", "2026-01-15 11:00"],
        ),
        # "Lists are allowed ... Examples: '1,2,5,9', '0-4,8-12'."
        ("0 0-1,8 * * *", "2026-01-15 00:30", ["2026-01-15 01:00", "2026-01-15 08:00"]),
        # "'0-23/2' can be used in the 'hours' field to specify ... every other hour"
        ("0 0-23/2 * * *", "2026-01-15 00:30", ["2026-01-15 02:00", "2026-01-15 04:00"]),
        # "'*/23' in hours field means to execute the job on the hour 0 and the hour 23"
        (
            "0 */23 * * *",
            "2026-01-15 00:30",
            ["2026-01-15 23:00", "2026-01-16 00:00", "2026-01-16 23:00"],
        ),
        # NOTES: "*/35" in the minute field runs "at 0 and 35 minutes past"
        ("*/35 9 * * *", "2026-01-15 08:00", ["2026-01-15 09:00", "2026-01-15 09:35"]),
        # a step longer than its field leaves only the first value
        ("*/60 * * * *", "2026-01-15 08:10", ["2026-01-15 09:00", "2026-01-15 10:00"]),
        # Names: "first three letters ... (case does not matter). Ranges and lists"
        (
            "0 0 1 JAN-mar,Jun *",
            "2026-01-15 00:00",
            ["2026-02-01 00:00", "2026-03-01 00:00", "2026-06-01 00:00"],
        ),
        ("0 0 1 jan-dec/3 *", "2026-01-15 00:00", ["2026-04-01 00:00", "2026-07-01 00:00"]),
        # "day of week 0-7 (0 or 7 is Sunday, or use names)"
        ("0 6 * * 0", "2026-01-15 00:00", ["2026-01-18 06:00", "2026-01-25 06:00"]),
        ("0 6 * * 7", "2026-01-15 00:00", ["2026-01-18 06:00", "2026-01-25 06:00"]),
        ("0 6 * * Sun", "2026-01-15 00:00", ["2026-01-18 06:00", "2026-01-25 06:00"]),
        # from the example crontab: "run at 10 pm on weekdays"
        (
            "0 22 * * 1-5",
            "2026-01-16 23:00",
            ["2026-01-19 22:00", "2026-01-20 22:00", "2026-01-21 22:00"],
        ),
        # a weekday range ending on Sunday ends on 7, as cronie reads it
        (
            "0 0 * * sat-sun",
            "2026-01-15 00:00",
            ["2026-01-17 00:00", "2026-01-18 00:00", "2026-01-24 00:00"],
        ),
        ("0 0 * * mon-sun/3", "2026-01-18 12:00", ["2026-01-19 00:00", "2026-01-22 00:00"]),
        ("0 0 * * sun-sat", "2026-01-15 12:00", ["2026-01-16 00:00", "2026-01-17 00:00"]),
        # "30 4 1,15 * 5" runs "on the 1st and 15th of each month, plus every Friday"
        (
            "30 4 1,15 * 5",
            "2026-01-10 00:00",
            ["2026-01-15 04:30", "2026-01-16 04:30", "2026-01-23 04:30", "2026-01-30 04:30"],
        ),
        ("0 0 1 * mon", "2026-01-27 00:00", ["2026-02-01 00:00", "2026-02-02 00:00"]),
        # with both restricted, a day-of-month no month has does not stop the weekdays
        ("0 0 31 2 mon", "2026-01-27 00:00", ["2026-02-02 00:00", "2026-02-09 00:00"]),
        # a day field that starts with '*' is not "restricted": both must match
        ("0 0 1 * */2", "2026-01-27 00:00", ["2026-02-01 00:00", "2026-03-01 00:00"]),
        ("0 0 */10 * mon", "2026-01-27 00:00", ["2026-05-11 00:00", "2026-06-01 00:00"]),
        # leap day only: every four years
        ("0 0 29 2 *", "2026-01-01 00:00", ["2028-02-29 00:00", "2032-02-29 00:00"]),
    ],
)
def test_fields(expression: str, after: str, expected: list[str]) -> None:
    got = local_fires(expression, "UTC", after, len(expected))

    assert got == [f"{moment}+0000" for moment in expected]


@pytest.mark.parametrize(
    ("macro", "line"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros_are_the_lines_crontab_gives_them(macro: str, line: str) -> None:
    for zone in ("UTC", "Europe/Berlin"):
        assert local_fires(macro, zone, "2026-03-27 12:00", 4) == local_fires(
            line, zone, "2026-03-27 12:00", 4
        )


# -- refused, with the field, the value and the rule ----------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/0 * * * *", "minute field '*/0': step must be at least 1"),
        ("5-1 * * * *", "minute field '5-1': range '5-1' runs backwards"),
        ("99 * * * *", "minute field '99': 99 is out of range 0-59"),
        ("0 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field '13': 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("a b c d e", "minute field 'a': 'a' is not a number from 0 to 59"),
        ("0 0 * * mon-", "day-of-week field 'mon-': range 'mon-' has no end"),
        ("0 0 * * monday,1", "day-of-week field 'monday,1': 'monday' is not a weekday"),
        ("0 0 * * fri-mon", "day-of-week field 'fri-mon': range 'fri-mon' runs backwards"),
        ("0 0 * foo *", "month field 'foo': 'foo' is not a month: use 1-12 or jan-dec"),
        ("0 jan * * *", "hour field 'jan': 'jan' is not a number from 0 to 23"),
        ("1,,2 * * * *", "minute field '1,,2': a list item is empty"),
        ("5/15 * * * *", "minute field '5/15': a step needs a range or '*' before it"),
        ("*/x * * * *", "minute field '*/x': step 'x' is not a whole number"),
        ("~ * * * *", "minute field '~': random values ('~') are not supported"),
        ("0 0 L * *", "day-of-month field 'L': 'L' is not a number from 1 to 31"),
        ("0 0 * * 1#2", "day-of-week field '1#2': '1#2' is not a weekday"),
        ("0 6 * *", "wrong number of fields: got 4, expected 5"),
        ("0 0 6 * * *", "crontab has no seconds or years field"),
        ("", "wrong number of fields: got 0"),
        ("@reboot", "@reboot is not supported"),
        ("@Daily", "unknown macro '@Daily'"),
        ("@every 5m", "unknown macro '@every 5m'"),
    ],
)
def test_invalid_text_is_refused_naming_field_value_and_rule(expression: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CronSpec(expression=expression)

    assert f"invalid cron expression {expression!r}: " in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 30 2 *", "day-of-month field '30': no month in month field '2' has day 30"),
        ("0 0 31 4,6,9,11 *", "no month in month field '4,6,9,11' has day 31"),
        ("0 0 30,31 feb */1", "no month in month field 'feb' has day 30"),
    ],
)
def test_an_expression_that_can_never_fire_is_refused_at_once(
    expression: str, message: str
) -> None:
    begun = time.perf_counter()
    with pytest.raises(ValidationError, match="so it would never run") as caught:
        CronSpec(expression=expression)

    assert message in str(caught.value)
    assert time.perf_counter() - begun < 0.05, "refusing it should not scan for fire times"


# -- the keyword form ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"hour": 2, "minute": 30, "day_of_week": "sun"}, "30 2 * * sun"),
        ({"hour": 2}, "0 2 * * *"),
        ({"minute": "*/5"}, "*/5 * * * *"),
        ({"day_of_week": "0"}, "0 0 * * 0"),
        ({"day": 1, "day_of_week": "mon"}, "0 0 1 * mon"),
        ({"month": "jan-dec/3"}, "0 0 1 jan-dec/3 *"),
    ],
)
def test_keyword_fields_become_crontab_text(fields: dict[str, str | int], text: str) -> None:
    spec = CronSpec.model_validate(dict(cron(**fields)))

    assert spec == CronSpec(expression=text)


def test_keyword_weekday_numbers_and_day_rule_are_crontab_s() -> None:
    spec = CronSpec.model_validate(dict(cron(day=1, day_of_week=0, hour=6)))

    trigger = spec.build()
    first = trigger.get_next_fire_time(None, datetime.fromisoformat("2026-01-27T00:00Z"))
    second = trigger.get_next_fire_time(first, first)

    assert [first, second] == [
        datetime.fromisoformat("2026-02-01T06:00Z"),  # the 1st, a Sunday
        datetime.fromisoformat("2026-02-08T06:00Z"),  # a Sunday that is not the 1st
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"second": "*"}, "unknown cron field(s) ['second']; the fields are crontab's"),
        ({"hour": 25}, "invalid cron fields: hour field '25': 25 is out of range 0-23"),
        ({"hour": "1, 2"}, "hour field '1, 2': a field is one word"),
        ({"day_of_week": "funday"}, "day-of-week field 'funday': 'funday' is not a weekday"),
    ],
)
def test_keyword_errors_name_the_field(fields: dict[str, str | int], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CronSpec.model_validate(dict(cron(**fields)))

    assert message in str(caught.value)


# -- cron(8): daylight saving time -------------------------------------------------------


# a fixed-time job whose time is skipped runs right after the jump
FIXED_IN_GAP = [
    # Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST
    ("30 2 * * *", "Europe/Berlin", "2026-03-28 12:00", ["2026-03-29 03:00+0200"]),
    # America/New_York, 2026-03-08: 02:00 EST becomes 03:00 EDT
    ("30 2 * * *", "America/New_York", "2026-03-07 12:00", ["2026-03-08 03:00-0400"]),
    # Australia/Sydney, 2026-10-04: 02:00 AEST becomes 03:00 AEDT
    ("30 2 * * *", "Australia/Sydney", "2026-10-03 12:00", ["2026-10-04 03:00+1100"]),
    # Australia/Lord_Howe, 2026-10-04: 02:00 becomes 02:30 (a half-hour change)
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-03 12:00", ["2026-10-04 02:30+1100"]),
    # America/Santiago, 2026-09-06: midnight becomes 01:00
    ("0 0 * * *", "America/Santiago", "2026-09-05 12:00", ["2026-09-06 01:00-0300"]),
    # several skipped times of one job: it runs once
    (
        "0,30 2 * * *",
        "Europe/Berlin",
        "2026-03-28 12:00",
        ["2026-03-29 03:00+0200", "2026-03-30 02:00+0200"],
    ),
]

# a fixed-time job in the repeated hour runs once, the first time
FIXED_IN_REPEAT = [
    # Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET
    (
        "0,30 2 * * *",
        "Europe/Berlin",
        "2026-10-24 12:00",
        ["2026-10-25 02:00+0200", "2026-10-25 02:30+0200", "2026-10-26 02:00+0100"],
    ),
    # America/New_York, 2026-11-01: 02:00 EDT becomes 01:00 EST
    (
        "30 1 * * *",
        "America/New_York",
        "2026-10-31 12:00",
        ["2026-11-01 01:30-0400", "2026-11-02 01:30-0500"],
    ),
    # Australia/Sydney, 2026-04-05: 03:00 AEDT becomes 02:00 AEST
    (
        "30 2 * * *",
        "Australia/Sydney",
        "2026-04-04 12:00",
        ["2026-04-05 02:30+1100", "2026-04-06 02:30+1000"],
    ),
    # America/Havana, 2026-11-01: 01:00 becomes midnight
    (
        "30 0 * * *",
        "America/Havana",
        "2026-10-31 12:00",
        ["2026-11-01 00:30-0400", "2026-11-02 00:30-0500"],
    ),
]

# a wildcard job does not run at skipped times
WILDCARD_IN_GAP = [
    # no 02:00 on the spring night (it does not exist), and no stand-in 03:00
    (
        "0 */2 * * *",
        "Europe/Berlin",
        "2026-03-28 23:00",
        ["2026-03-29 00:00+0100", "2026-03-29 04:00+0200"],
    ),
    (
        "*/30 2 * * *",
        "America/New_York",
        "2026-03-08 01:00",
        ["2026-03-09 02:00-0400", "2026-03-09 02:30-0400"],
    ),
    (
        "15 * * * *",
        "Australia/Sydney",
        "2026-10-04 01:00",
        ["2026-10-04 01:15+1000", "2026-10-04 03:15+1100"],
    ),
    # Lord Howe: the half hour from 02:30 still exists
    (
        "40 * * * *",
        "Australia/Lord_Howe",
        "2026-10-04 01:00",
        ["2026-10-04 01:40+1030", "2026-10-04 02:40+1100"],
    ),
    # Santiago: the skipped midnight hour does not run
    (
        "*/30 0 * * *",
        "America/Santiago",
        "2026-09-05 12:00",
        ["2026-09-07 00:00-0300", "2026-09-07 00:30-0300"],
    ),
]

# a wildcard job runs at repeated times again
WILDCARD_IN_REPEAT = [
    (
        "0 */2 * * *",
        "Europe/Berlin",
        "2026-10-24 23:00",
        [
            "2026-10-25 00:00+0200",
            "2026-10-25 02:00+0200",
            "2026-10-25 02:00+0100",
            "2026-10-25 04:00+0100",
        ],
    ),
    (
        "*/30 1 * * *",
        "America/New_York",
        "2026-11-01 00:45",
        [
            "2026-11-01 01:00-0400",
            "2026-11-01 01:30-0400",
            "2026-11-01 01:00-0500",
            "2026-11-01 01:30-0500",
            "2026-11-02 01:00-0500",
        ],
    ),
    (
        "0 * * * *",
        "Australia/Sydney",
        "2026-04-05 01:30",
        [
            "2026-04-05 02:00+1100",
            "2026-04-05 02:00+1000",
            "2026-04-05 03:00+1000",
        ],
    ),
]

# a change of more than three hours is a clock correction
CORRECTIONS = [
    # Pacific/Apia skipped 2011-12-30 (24 hours forward): no stand-in run that day
    ("0 12 * * *", "Pacific/Apia", "2011-12-29 13:00", ["2011-12-31 12:00+1400"]),
    # Pacific/Kwajalein skipped 1993-08-21
    ("0 12 * * *", "Pacific/Kwajalein", "1993-08-20 13:00", ["1993-08-22 12:00+1200"]),
    # Antarctica/Casey, 2009-10-18: 02:00 became 05:00, exactly three hours forward
    ("30 3 * * *", "Antarctica/Casey", "2009-10-17 12:00", ["2009-10-19 03:30+1100"]),
    # Antarctica/Vostok, 1994-01-31: midnight became 17:00 the day before, seven hours
    # back: the repeated 18:00 runs again
    (
        "0 18 * * *",
        "Antarctica/Vostok",
        "1994-01-31 12:00",
        ["1994-01-31 18:00+0700", "1994-01-31 18:00+0000"],
    ),
]

DAYLIGHT_SAVING_RULES = [
    ("a fixed-time job whose time is skipped runs right after the jump", FIXED_IN_GAP),
    ("a fixed-time job in the repeated hour runs once, the first time", FIXED_IN_REPEAT),
    ("a wildcard job does not run at skipped times", WILDCARD_IN_GAP),
    ("a wildcard job runs at repeated times again", WILDCARD_IN_REPEAT),
    ("a change of more than three hours is a clock correction", CORRECTIONS),
]


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        pytest.param(*case, id=f"{rule}: {case[0]} in {case[1]}")
        for rule, cases in DAYLIGHT_SAVING_RULES
        for case in cases
    ],
)
def test_daylight_saving(expression: str, zone: str, after: str, expected: list[str]) -> None:
    assert local_fires(expression, zone, after, len(expected)) == expected


def test_fixed_time_is_not_repeated_when_looked_up_inside_the_second_pass() -> None:
    trigger = CrontabTrigger("30 2 * * *", timezone="Europe/Berlin")
    inside = datetime(2026, 10, 25, 2, 15, fold=1, tzinfo=trigger.timezone)  # 02:15 CET

    fire = trigger.get_next_fire_time(None, inside)

    assert fire is not None
    assert fire.strftime("%Y-%m-%d %H:%M%z") == "2026-10-26 02:30+0100"


def test_wildcard_job_looked_up_in_the_first_pass_still_gets_the_second() -> None:
    trigger = CrontabTrigger("0 * * * *", timezone="Europe/Berlin")
    first_pass = datetime(2026, 10, 25, 2, 30, tzinfo=trigger.timezone)  # 02:30 CEST

    fire = trigger.get_next_fire_time(None, first_pass)

    assert fire is not None
    assert fire.strftime("%Y-%m-%d %H:%M%z") == "2026-10-25 02:00+0100"


@pytest.mark.parametrize(
    ("expression", "zone", "after", "days"),
    [
        # APScheduler's CronTrigger skipped 03-30 here
        ("0 0 * * *", "Europe/Berlin", "2026-03-28 12:00", ["2026-03-29", "2026-03-30"]),
        ("0 0 1 * *", "Europe/Berlin", "2026-03-15 12:00", ["2026-04-01", "2026-05-01"]),
        ("0 0 1 * *", "America/New_York", "2026-03-15 12:00", ["2026-04-01", "2026-05-01"]),
        ("0 0 1 1 *", "Australia/Sydney", "2026-10-01 12:00", ["2027-01-01", "2028-01-01"]),
        # the boundary is the clock change itself: Santiago skips midnight, then repeats 23:xx
        (
            "0 0 * * *",
            "America/Santiago",
            "2026-09-04 12:00",
            ["2026-09-05", "2026-09-06", "2026-09-07"],
        ),
        ("0 0 * * *", "America/Santiago", "2026-04-03 12:00", ["2026-04-04", "2026-04-05"]),
        ("0 0 * * *", "America/Havana", "2026-03-07 12:00", ["2026-03-08", "2026-03-09"]),
        ("59 23 * * *", "America/Santiago", "2026-09-04 12:00", ["2026-09-04", "2026-09-05"]),
    ],
)
def test_no_fire_is_lost_next_to_a_clock_change(
    expression: str, zone: str, after: str, days: list[str]
) -> None:
    assert days_fired(expression, zone, after, len(days)) == days


def test_three_hours_back_is_still_daylight_saving_for_cronie() -> None:
    # Antarctica/Casey, 2010-03-05: 02:00 became 23:00 the day before; cronie's clock
    # difference is then 179 minutes, within its limit, so the job does not repeat
    assert local_fires("30 23 * * *", "Antarctica/Casey", "2010-03-04 12:00", 2) == [
        "2010-03-04 23:30+1100",
        "2010-03-05 23:30+0800",
    ]


def test_a_catalog_entry_of_an_earlier_version_with_apscheduler_only_fields_still_reads() -> None:
    """Earlier versions stored APScheduler's keyword fields; defaults among them are dropped."""
    stored = {"expression": None, "fields": {"second": "0", "minute": "30", "hour": "2"}}

    assert CronSpec.model_validate(stored).expression == "30 2 * * *"
