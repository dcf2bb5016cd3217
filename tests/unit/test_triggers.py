"""Triggers as data: validation, words, JSON, and the fire times they produce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from sundial.triggers import CronSpec, DateSpec, IntervalSpec, TriggerSpec, expected_interval

ADAPTER: TypeAdapter[CronSpec | IntervalSpec | DateSpec] = TypeAdapter(TriggerSpec)
NOW = datetime(2025, 1, 15, 12, tzinfo=UTC)  # a Wednesday


def fires(spec: CronSpec | IntervalSpec | DateSpec, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``, in UTC, as APScheduler would chain them."""
    trigger = spec.build()
    found: list[datetime] = []
    previous = None
    now = after
    while len(found) < count:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        found.append(fire.astimezone(UTC))
        previous = now = fire
    return found


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"expression": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
        ({"expression": "0 6 * *"}, "expected 5"),
        ({"expression": "0 6 * * funday"}, "invalid cron expression"),
        ({"fields": {"hours": "2"}}, "unknown cron field(s) ['hours']"),
        ({"fields": {"hour": "25"}}, "invalid cron fields"),
        ({}, "give either crontab text (expression) or cron fields"),
        ({"expression": "0 6 * * *", "fields": {"hour": "6"}}, "not both"),
        (
            {"expression": "0 6 * * *", "timezone": "Mars/Olympus"},
            "unknown time zone 'Mars/Olympus'",
        ),
        ({"expression": "0 6 * * *", "jitter": -1}, "greater than or equal to 0"),
        ({"expression": "0 6 * * *", "minute": "5"}, "Extra inputs are not permitted"),
    ],
)
def test_cron_spec_rejects_with_a_reason(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CronSpec(**data)

    assert message in str(caught.value)


def test_interval_must_be_positive() -> None:
    for seconds in (0, -60):
        with pytest.raises(ValidationError, match="greater than 0"):
            IntervalSpec(seconds=seconds)


def test_date_needs_an_offset() -> None:
    with pytest.raises(ValidationError, match="run_at needs a time zone offset"):
        DateSpec(run_at=datetime(2030, 1, 1, 6))


def test_bad_cron_text_in_json_is_rejected_by_the_adapter() -> None:
    with pytest.raises(ValidationError, match="invalid cron expression"):
        ADAPTER.validate_python({"type": "cron", "expression": "every day"})


def test_unknown_trigger_type_is_rejected() -> None:
    with pytest.raises(ValidationError, match="type"):
        ADAPTER.validate_python({"type": "sometimes", "seconds": 5})


# -- words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (CronSpec(expression="0 6 * * *"), "cron '0 6 * * *' (UTC)"),
        (
            CronSpec(fields={"hour": "2", "minute": "30"}, timezone="Europe/Berlin"),
            "cron '30 2 * * *' (Europe/Berlin)",
        ),
        (IntervalSpec(seconds=1), "every second"),
        (IntervalSpec(seconds=90), "every 90 seconds"),
        (IntervalSpec(seconds=60), "every minute"),
        (IntervalSpec(seconds=900), "every 15 minutes"),
        (IntervalSpec(seconds=3600), "every hour"),
        (IntervalSpec(seconds=7200), "every 2 hours"),
        (IntervalSpec(seconds=86400), "every day"),
        (IntervalSpec(seconds=1.5), "every 1.5 seconds"),
        (
            DateSpec(run_at=datetime(2030, 1, 1, 6, tzinfo=UTC)),
            "once at 2030-01-01T06:00:00+00:00",
        ),
    ],
)
def test_describe(spec: CronSpec | IntervalSpec | DateSpec, text: str) -> None:
    assert spec.describe() == text


# -- JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        CronSpec(expression="*/5 * * * *", timezone="Europe/Berlin", jitter=10),
        CronSpec(
            fields={"day_of_week": "sun", "hour": "2"},
            start_date=datetime(2030, 1, 1, tzinfo=UTC),
            end_date=datetime(2031, 1, 1, tzinfo=UTC),
        ),
        IntervalSpec(seconds=900, start_date=datetime(2030, 1, 1, tzinfo=UTC)),
        DateSpec(run_at=datetime(2030, 1, 1, 6, tzinfo=UTC), timezone="America/New_York"),
    ],
)
def test_json_round_trip(spec: CronSpec | IntervalSpec | DateSpec) -> None:
    text = ADAPTER.dump_json(spec)

    again = ADAPTER.validate_json(text)

    assert type(again) is type(spec)
    assert again == spec
    assert again.describe() == spec.describe()


def test_json_from_the_api_picks_the_type() -> None:
    spec = ADAPTER.validate_python({"type": "interval", "seconds": 60})

    assert spec == IntervalSpec(seconds=60)


# -- fire times -------------------------------------------------------------------------


def test_cron_fires_on_its_schedule() -> None:
    assert fires(CronSpec(expression="*/15 9 * * *"), NOW, 5) == [
        datetime(2025, 1, 16, 9, 0, tzinfo=UTC),
        datetime(2025, 1, 16, 9, 15, tzinfo=UTC),
        datetime(2025, 1, 16, 9, 30, tzinfo=UTC),
        datetime(2025, 1, 16, 9, 45, tzinfo=UTC),
        datetime(2025, 1, 17, 9, 0, tzinfo=UTC),
    ]


@pytest.mark.parametrize("sunday", ["0", "7", "sun"])
def test_crontab_day_of_week_numbers_mean_what_crontab_says(sunday: str) -> None:
    # In crontab text 0 and 7 are Sunday (APScheduler 3 numbers Monday as 0).
    spec = CronSpec(expression=f"0 6 * * {sunday}")

    assert fires(spec, NOW, 1) == [datetime(2025, 1, 19, 6, tzinfo=UTC)]


def test_crontab_weekday_range_is_monday_to_friday() -> None:
    spec = CronSpec(expression="0 6 * * 1-5")

    days = [fire.strftime("%a") for fire in fires(spec, datetime(2025, 1, 12, tzinfo=UTC), 5)]

    assert days == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def test_cron_start_and_end_dates_bound_the_fires() -> None:
    spec = CronSpec(
        expression="0 6 * * *",
        start_date=datetime(2030, 1, 1, tzinfo=UTC),
        end_date=datetime(2030, 1, 3, 12, tzinfo=UTC),
    )

    assert fires(spec, NOW, 10) == [
        datetime(2030, 1, 1, 6, tzinfo=UTC),
        datetime(2030, 1, 2, 6, tzinfo=UTC),
        datetime(2030, 1, 3, 6, tzinfo=UTC),
    ]


def test_cron_jitter_delays_within_bounds() -> None:
    spec = CronSpec(expression="0 6 * * *", jitter=30)

    for _ in range(20):
        (fire,) = fires(spec, NOW, 1)
        assert datetime(2025, 1, 16, 6, tzinfo=UTC) <= fire
        assert fire <= datetime(2025, 1, 16, 6, 0, 30, tzinfo=UTC)


def test_interval_counts_from_its_start_date() -> None:
    start = datetime(2025, 1, 15, 12, 7, tzinfo=UTC)
    spec = IntervalSpec(seconds=900, start_date=start)

    assert fires(spec, start + timedelta(minutes=20), 2) == [
        start + timedelta(minutes=30),
        start + timedelta(minutes=45),
    ]


def test_date_fires_once() -> None:
    spec = DateSpec(run_at=datetime(2030, 1, 1, 6, tzinfo=UTC))

    assert fires(spec, NOW, 3) == [datetime(2030, 1, 1, 6, tzinfo=UTC)]


# -- expected interval ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [
        (CronSpec(expression="0 6 * * *"), 86400),
        (CronSpec(expression="*/5 * * * *"), 300),
        (CronSpec(expression="0 * * * *", jitter=600), 3600),
        (CronSpec(fields={"day_of_week": "mon-fri", "hour": "6"}), 3 * 86400),
        (IntervalSpec(seconds=900), 900),
        (DateSpec(run_at=datetime(2030, 1, 1, tzinfo=UTC)), None),
        (CronSpec(expression="0 6 * * *", end_date=datetime(2020, 1, 1, tzinfo=UTC)), None),
    ],
)
def test_expected_interval(spec: CronSpec | IntervalSpec | DateSpec, seconds: float | None) -> None:
    assert expected_interval(spec, NOW) == seconds
