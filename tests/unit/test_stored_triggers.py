"""Cron jobs in a job store survive upgrades: what is pickled, and what earlier versions left.

APScheduler's job stores hold each job as a pickle and delete a row they cannot unpickle,
so the trigger's pickled form is part of the contract with every stored job.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from sundial.triggers import CronSpec, CrontabTrigger, WallClockCronTrigger, is_current

# The state of an APScheduler job as Sundial 0.1.0 stored it: ``0 0 * * *`` in
# Europe/Berlin as a WallClockCronTrigger, next run 2026-03-29 00:00, function
# sample_jobs:succeed. Made with that version's code; the bytes are what its job store held.
OLD_NIGHTLY_JOB = base64.b64decode(
    "gAWV9QMAAAAAAAB9lCiMB3ZlcnNpb26USwGMAmlklIwHbmlnaHRseZSMBGZ1bmOUjBNzYW1wbGVfam9iczpzdWNj"
    "ZWVklIwHdHJpZ2dlcpSMEHN1bmRpYWwudHJpZ2dlcnOUjBRXYWxsQ2xvY2tDcm9uVHJpZ2dlcpSTlCmBlH2UKGgB"
    "SwKMCHRpbWV6b25llIwIYnVpbHRpbnOUjAdnZXRhdHRylJOUjAh6b25laW5mb5SMCFpvbmVJbmZvlJOUjAlfdW5w"
    "aWNrbGWUhpRSlIwNRXVyb3BlL0JlcmxpbpRLAYaUUpSMCnN0YXJ0X2RhdGWUTowIZW5kX2RhdGWUTowGZmllbGRz"
    "lF2UKIwgYXBzY2hlZHVsZXIudHJpZ2dlcnMuY3Jvbi5maWVsZHOUjAlCYXNlRmllbGSUk5QpgZR9lCiMBG5hbWWU"
    "jAR5ZWFylIwKaXNfZGVmYXVsdJSIjAtleHByZXNzaW9uc5RdlIwlYXBzY2hlZHVsZXIudHJpZ2dlcnMuY3Jvbi5l"
    "eHByZXNzaW9uc5SMDUFsbEV4cHJlc3Npb26Uk5QpgZR9lIwEc3RlcJROc2JhdWJoHYwKTW9udGhGaWVsZJSTlCmB"
    "lH2UKGgijAVtb250aJRoJIloJV2UaCkpgZR9lGgsTnNiYXViaB2MD0RheU9mTW9udGhGaWVsZJSTlCmBlH2UKGgi"
    "jANkYXmUaCSJaCVdlGgpKYGUfZRoLE5zYmF1YmgdjAlXZWVrRmllbGSUk5QpgZR9lChoIowEd2Vla5RoJIhoJV2U"
    "aCkpgZR9lGgsTnNiYXViaB2MDkRheU9mV2Vla0ZpZWxklJOUKYGUfZQoaCKMC2RheV9vZl93ZWVrlGgkiWglXZRo"
    "KSmBlH2UaCxOc2JhdWJoHymBlH2UKGgijARob3VylGgkiWglXZRoJ4wPUmFuZ2VFeHByZXNzaW9ulJOUKYGUfZQo"
    "aCxOjAVmaXJzdJRLAIwEbGFzdJRLAHViYXViaB8pgZR9lChoIowGbWludXRllGgkiWglXZRoUimBlH2UKGgsTmhV"
    "SwBoVksAdWJhdWJoHymBlH2UKGgijAZzZWNvbmSUaCSIaCVdlGhSKYGUfZQoaCxOaFVLAGhWSwB1YmF1YmWMBmpp"
    "dHRlcpROdWKMCGV4ZWN1dG9ylIwHZGVmYXVsdJSMBGFyZ3OUKYwGa3dhcmdzlH2UaCJoA4wSbWlzZmlyZV9ncmFj"
    "ZV90aW1llEs8jAhjb2FsZXNjZZSJjA1tYXhfaW5zdGFuY2VzlEsBjA1uZXh0X3J1bl90aW1llIwIZGF0ZXRpbWWU"
    "jAhkYXRldGltZZSTlEMKB+oDHQAAAAAAAJRoGIaUUpR1Lg=="
)

NIGHTLY = CronSpec(expression="0 0 * * *", timezone="Europe/Berlin")


@pytest.fixture
def old_store(tmp_path: Path) -> Iterator[BackgroundScheduler]:
    """A paused scheduler on an SQL job store holding the job an earlier version wrote."""
    store = SQLAlchemyJobStore(url=f"sqlite:///{tmp_path / 'jobs.db'}")
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
    scheduler.start(paused=True)
    with store.engine.begin() as connection:
        connection.execute(
            store.jobs_t.insert().values(
                id="nightly",
                next_run_time=datetime(2026, 3, 28, 23, tzinfo=UTC).timestamp(),
                job_state=OLD_NIGHTLY_JOB,
            )
        )
    yield scheduler
    scheduler.shutdown(wait=False)


def fires(trigger: CrontabTrigger, after: datetime, count: int) -> list[datetime]:
    found: list[datetime] = []
    fire = trigger.get_next_fire_time(None, after)
    while fire is not None and len(found) < count:
        found.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    return found


def test_a_job_stored_by_the_previous_version_is_kept_and_known_as_outdated(
    old_store: BackgroundScheduler,
) -> None:
    (job,) = old_store.get_jobs()

    assert job.id == "nightly"
    assert isinstance(job.trigger, WallClockCronTrigger)
    assert not is_current(job.trigger)


def test_rebuilding_an_outdated_job_keeps_its_next_run_and_fixes_its_schedule(
    old_store: BackgroundScheduler,
) -> None:
    (job,) = old_store.get_jobs()
    trigger = NIGHTLY.build()

    old_store.modify_job(
        job.id, trigger=trigger, next_run_time=trigger.get_next_fire_time(None, job.next_run_time)
    )

    (rebuilt,) = old_store.get_jobs()
    assert is_current(rebuilt.trigger)
    assert rebuilt.next_run_time == datetime(2026, 3, 28, 23, tzinfo=UTC)
    days = [fire.date().isoformat() for fire in fires(rebuilt.trigger, rebuilt.next_run_time, 3)]
    assert days == ["2026-03-29", "2026-03-30", "2026-03-31"]


def test_only_the_text_zone_bounds_and_jitter_are_pickled() -> None:
    trigger = CronSpec(
        expression="30 2 * * sun",
        timezone="Europe/Berlin",
        start_date=datetime(2030, 1, 1, tzinfo=UTC),
        jitter=5,
    ).build()

    data = pickle.dumps(trigger)

    assert b"cronsim" not in data
    assert trigger.__getstate__() == {
        "version": 1,
        "expression": "30 2 * * sun",
        "timezone": "Europe/Berlin",
        "start_date": datetime(2030, 1, 1, tzinfo=UTC),
        "end_date": None,
        "jitter": 5,
    }
    again = pickle.loads(data)
    assert again.__getstate__() == trigger.__getstate__()
    start = datetime(2030, 3, 20, tzinfo=UTC)
    assert (
        again.next_after(start)
        == trigger.next_after(start)
        == datetime(2030, 3, 24, 1, 30, tzinfo=UTC)
    )


def test_a_state_written_by_this_version_stays_readable() -> None:
    trigger = CrontabTrigger.__new__(CrontabTrigger)

    trigger.__setstate__(
        {
            "version": 1,
            "expression": "@daily",
            "timezone": "America/New_York",
            "start_date": None,
            "end_date": None,
            "jitter": None,
        }
    )

    assert fires(trigger, datetime(2026, 3, 7, 12, tzinfo=UTC), 2) == [
        datetime(2026, 3, 8, 5, tzinfo=UTC),
        datetime(2026, 3, 9, 4, tzinfo=UTC),
    ]


def test_a_state_from_a_newer_version_is_refused_with_its_version() -> None:
    trigger = CrontabTrigger.__new__(CrontabTrigger)

    with pytest.raises(ValueError, match="state has version 2; this Sundial reads version 1"):
        trigger.__setstate__({"version": 2, "expression": "@daily", "timezone": "UTC"})


@pytest.mark.parametrize(
    ("trigger", "current"),
    [
        (NIGHTLY.build(), True),
        (IntervalTrigger(minutes=5), True),
        (DateTrigger(datetime(2030, 1, 1, tzinfo=UTC)), True),
        (WallClockCronTrigger(hour=0, timezone=UTC), False),
        (CronTrigger(hour=0, timezone=UTC), False),
    ],
)
def test_is_current(trigger: object, current: bool) -> None:
    assert is_current(trigger) is current
