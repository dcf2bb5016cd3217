"""The scheduler against every backend: what a user sees in run history and the catalog."""

from __future__ import annotations

import asyncio
import subprocess
import time
import zoneinfo
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sample_jobs
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry
from scheduler_harness import apply, harness_settings, running_scheduler, wait_for, wait_for_runs
from timing import within

from sundial.backends import Backend, open_backend
from sundial.constants import MAINTENANCE_JOB_ID
from sundial.jobs import Registry, cron, every
from sundial.models import (
    Command,
    CommandKind,
    CommandState,
    JobSource,
    JobState,
    JobView,
    Outcome,
    Run,
    utcnow,
)
from sundial.triggers import CronSpec, WallClockCronTrigger
from sundial_scheduler.engine import GuardedScheduler, TrackingJobStore
from sundial_scheduler.service import SundialScheduler
from sundial_scheduler.term import LeaderTerm

pytestmark = pytest.mark.integration


def _outcomes(runs: list[Run]) -> set[Outcome]:
    return {run.outcome for run in runs}


async def test_jobs_run_on_schedule_and_every_outcome_is_recorded(
    backend_url: str, backend: Backend
) -> None:
    registry = Registry()
    registry.job(every(seconds=1), id="ok")(sample_jobs.succeed)
    registry.job(every(seconds=1), id="broken")(sample_jobs.fail)
    registry.job(every(seconds=1), id="stuck", timeout=0.3)(sample_jobs.hang)
    registry.job(every(seconds=1), id="overlapping", max_instances=1)(sample_jobs.slow)
    registry.job(every(seconds=1), id="blocking")(sample_jobs.sync_sleep)

    async with running_scheduler(backend_url, registry):
        ok = await wait_for_runs(backend, "ok", 4, outcome=Outcome.SUCCESS)
        broken = await wait_for_runs(backend, "broken", 2)
        stuck = await wait_for_runs(backend, "stuck", 2, outcome=Outcome.TIMEOUT)
        skipped = await wait_for_runs(backend, "overlapping", 1, outcome=Outcome.SKIPPED)
        await wait_for_runs(backend, "blocking", 2, outcome=Outcome.SUCCESS)

    scheduled = sorted(run.scheduled_time for run in ok)
    assert all(b - a == timedelta(seconds=1) for a, b in pairwise(scheduled)), scheduled
    for run in ok:
        assert run.started_at is not None and run.finished_at is not None
        # at its fire time, not at a later one: the lag stays below one interval's worth
        assert timedelta(0) <= run.started_at - run.scheduled_time < timedelta(seconds=within(0.2))
        assert run.duration_seconds is not None and run.duration_seconds >= 0.01
    failed = [run for run in broken if run.outcome is Outcome.FAILURE]
    assert failed and failed[0].error_type == "RuntimeError"
    assert "503" in (failed[0].error_message or "")
    assert "sample_jobs.py" in (failed[0].traceback or "")
    assert "timed out after 0.3s" in (stuck[0].error_message or "")
    assert "previous run still running" in (skipped[0].error_message or "")
    leftovers = backend.list_runs(outcome=Outcome.RUNNING, limit=100)
    assert all(run.outcome is not Outcome.RUNNING for run in leftovers) or not leftovers
    summaries = backend.run_summaries(["ok", "broken"])
    assert summaries["ok"].last_outcome is Outcome.SUCCESS
    assert summaries["broken"].consecutive_failures >= 2


async def test_shutdown_interrupts_runs_past_the_grace_period(
    backend_url: str, backend: Backend
) -> None:
    registry = Registry()
    registry.job(every(seconds=1), id="long", kwargs={"seconds": 30})(sample_jobs.slow)
    async with running_scheduler(backend_url, registry, shutdown_grace_seconds=0.5):
        await wait_for_runs(backend, "long", 1, outcome=Outcome.RUNNING)
    runs = backend.list_runs(job_id="long", limit=100)
    assert runs and _outcomes(runs) == {Outcome.INTERRUPTED}
    assert "shut down" in (runs[0].error_message or "")


async def test_pause_survives_restart_until_the_code_changes(
    backend_url: str, backend: Backend
) -> None:
    registry = Registry()
    registry.job(every(seconds=1), id="report")(sample_jobs.succeed)
    async with running_scheduler(backend_url, registry):
        await wait_for_runs(backend, "report", 1)
        done = await apply(backend, Command(kind=CommandKind.PAUSE, job_id="report"))
        assert done.state is CommandState.APPLIED
        await wait_for(lambda: backend.get_job("report").state is JobState.PAUSED, 5)

    async with running_scheduler(backend_url, registry):
        before = len(backend.list_runs(job_id="report", limit=1000))
        await asyncio.sleep(2.5)
        view = backend.get_job("report")
        assert view is not None and view.state is JobState.PAUSED
        assert view.next_run_time is None
        assert len(backend.list_runs(job_id="report", limit=1000)) == before

    changed = Registry()
    changed.job(every(seconds=2), id="report")(sample_jobs.succeed)
    async with running_scheduler(backend_url, changed):
        view = await wait_for(lambda: backend.get_job("report"), 5)
        assert view.state is JobState.SCHEDULED
        assert view.trigger_text == "every 2 seconds"


DOWNTIME_SECONDS = 4


async def _restart_after_downtime(
    backend_url: str, backend: Backend, registry: Registry
) -> list[Run]:
    """Run, stop for a few seconds, start again; the runs of fire times since the stop."""
    async with running_scheduler(backend_url, registry):
        await wait_for_runs(backend, "tick", 1)
    stopped = utcnow()
    await asyncio.sleep(DOWNTIME_SECONDS)
    restarted = utcnow()
    async with running_scheduler(backend_url, registry):
        await wait_for(
            lambda: any(
                r.scheduled_time > restarted + timedelta(seconds=1)
                for r in backend.list_runs(job_id="tick", limit=100)
            ),
            15,
        )
    after = [r for r in backend.list_runs(job_id="tick", limit=1000) if r.scheduled_time > stopped]
    fire_times = [r.scheduled_time for r in after]
    assert len(fire_times) == len(set(fire_times)), "a fire time was recorded twice"
    # Fire times of the downtime, and of the second the restart itself took.
    return [r for r in after if r.scheduled_time < restarted + timedelta(seconds=1)]


async def test_fire_times_missed_while_down_are_recorded_missed(
    backend_url: str, backend: Backend
) -> None:
    registry = Registry()
    registry.job(every(seconds=1), id="tick", misfire_grace_time=1)(sample_jobs.succeed)
    during_downtime = await _restart_after_downtime(backend_url, registry=registry, backend=backend)
    missed = [r for r in during_downtime if r.outcome is Outcome.MISSED]
    assert len(missed) >= DOWNTIME_SECONDS - 2
    assert all("past misfire_grace_time 1s" in (r.error_message or "") for r in missed)


async def test_coalesce_runs_once_for_the_fire_times_missed_while_down(
    backend_url: str, backend: Backend
) -> None:
    registry = Registry()
    registry.job(every(seconds=1), id="tick", misfire_grace_time=30, coalesce=True)(
        sample_jobs.succeed
    )
    during_downtime = await _restart_after_downtime(backend_url, registry=registry, backend=backend)
    # One catch-up run instead of one per second of downtime (plus, at most, the next
    # fire time if the restart took longer than a second).
    assert {r.outcome for r in during_downtime} == {Outcome.SUCCESS}
    assert 1 <= len(during_downtime) <= 2 < DOWNTIME_SECONDS


async def test_a_claimed_fire_time_never_runs_twice(backend_url: str, backend: Backend) -> None:
    """Two leaders for a moment (two schedulers on one store) still run each fire time once."""
    registry = Registry()
    registry.job(every(seconds=1), id="once")(sample_jobs.succeed)
    async with running_scheduler(backend_url, registry) as first:
        await wait_for_runs(backend, "once", 2)
        second = open_backend(backend_url)
        moment = utcnow().replace(microsecond=0)
        results = await asyncio.gather(
            asyncio.to_thread(backend.claim_runs, [("once", moment)], "a"),
            asyncio.to_thread(second.claim_runs, [("once", moment)], "b"),
        )
        second.close()
        assert sorted(map(bool, results)) == [False, True]
        view = first.catalog.view("once")
        assert view is not None
        runs = await wait_for_runs(backend, "once", 4)
    finished = [r for r in runs if r.outcome is Outcome.SUCCESS]
    assert len({r.scheduled_time for r in finished}) == len(finished)


async def test_commands_change_jobs_and_run_now_leaves_the_schedule(
    backend_url: str, backend: Backend
) -> None:
    registry = Registry()
    registry.job(every(hours=1), id="hourly")(sample_jobs.succeed)
    registry.task(sample_jobs.greet)
    async with running_scheduler(backend_url, registry):
        before = backend.get_job("hourly")
        assert before is not None and before.next_run_time is not None
        done = await apply(backend, Command(kind=CommandKind.RUN, job_id="hourly"))
        assert done.state is CommandState.APPLIED
        runs = await wait_for_runs(backend, "hourly", 1, outcome=Outcome.SUCCESS)
        assert runs[0].manual
        assert backend.get_job("hourly").next_run_time == before.next_run_time

        rescheduled = await apply(
            backend,
            Command(
                kind=CommandKind.RESCHEDULE,
                job_id="hourly",
                payload={"trigger": {"type": "cron", "expression": "*/5 * * * *"}},
            ),
        )
        assert rescheduled.state is CommandState.APPLIED
        view = await wait_for(lambda: backend.get_job("hourly"), 5)
        await wait_for(lambda: backend.get_job("hourly").trigger.type == "cron", 5)
        next_run = backend.get_job("hourly").next_run_time
        assert next_run is not None and next_run.minute % 5 == 0
        assert next_run - utcnow() <= timedelta(minutes=5)

        added = await apply(
            backend,
            Command(
                kind=CommandKind.ADD,
                job_id="greeting",
                payload={
                    "func": "sample_jobs:greet",
                    "trigger": {"type": "interval", "seconds": 1},
                    "kwargs": {"name": "ada"},
                },
            ),
        )
        assert added.state is CommandState.APPLIED, added.reason
        await wait_for_runs(backend, "greeting", 1, outcome=Outcome.SUCCESS)

        bad_kwargs = await apply(
            backend,
            Command(
                kind=CommandKind.ADD,
                job_id="greeting2",
                payload={
                    "func": "sample_jobs:greet",
                    "trigger": {"type": "interval", "seconds": 1},
                    "kwargs": {"nme": "ada"},
                },
            ),
        )
        assert bad_kwargs.state is CommandState.REJECTED
        assert "kwargs" in (bad_kwargs.reason or "")
        unknown = await apply(
            backend,
            Command(
                kind=CommandKind.ADD,
                job_id="evil",
                payload={"func": "os:system", "trigger": {"type": "interval", "seconds": 1}},
            ),
        )
        assert unknown.state is CommandState.REJECTED
        assert "unknown function 'os:system'" in (unknown.reason or "")
        missing = await apply(backend, Command(kind=CommandKind.PAUSE, job_id="nope"))
        assert missing.state is CommandState.REJECTED and "unknown job" in (missing.reason or "")

        removed = await apply(backend, Command(kind=CommandKind.REMOVE, job_id="greeting"))
        assert removed.state is CommandState.APPLIED
        await wait_for(lambda: backend.get_job("greeting") is None, 5)
        assert view is not None


async def test_system_maintenance_prunes_history_past_retention(
    backend_url: str, backend: Backend
) -> None:
    old = utcnow() - timedelta(days=45)
    recent = utcnow() - timedelta(days=1)
    backend.save_runs(
        [
            Run(job_id="legacy", scheduled_time=t, started_at=t, finished_at=t, outcome=o)
            for t in (old, recent)
            for o in (Outcome.SUCCESS, Outcome.FAILURE)
        ]
    )
    registry = Registry()
    async with running_scheduler(backend_url, registry, run_retention_days=30):
        done = await apply(backend, Command(kind=CommandKind.RUN, job_id=MAINTENANCE_JOB_ID))
        assert done.state is CommandState.APPLIED
        await wait_for_runs(backend, MAINTENANCE_JOB_ID, 1, outcome=Outcome.SUCCESS)
    kept = backend.list_runs(job_id="legacy", limit=100)
    assert {r.scheduled_time.date() for r in kept} == {recent.date()}
    assert len(kept) == 2


async def test_a_slow_engine_start_keeps_the_lease_and_starts_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader whose term start-up outlasts its lease (a store of very many jobs)."""
    starts: list[float] = []
    sync = LeaderTerm._sync

    def slow_sync(term: LeaderTerm, engine: GuardedScheduler, store: TrackingJobStore) -> Any:
        starts.append(time.monotonic())
        # Longer than the lease, and than the 5 s bound on ordinary backend calls.
        time.sleep(6)
        return sync(term, engine, store)

    monkeypatch.setattr(LeaderTerm, "_sync", slow_sync)
    registry = Registry()
    registry.job(every(seconds=1), id="tick")(sample_jobs.succeed)
    scheduler = SundialScheduler(
        harness_settings(sqlite_url, leader_lease_seconds=1.5),
        registry=registry,
        metrics_registry=CollectorRegistry(),
    )
    task = asyncio.create_task(scheduler.run())
    try:
        await wait_for(lambda: scheduler.scheduling, 20)
        backend = scheduler.backend
        await wait_for_runs(backend, "tick", 2, outcome=Outcome.SUCCESS)
    finally:
        scheduler.request_stop()
        await asyncio.wait_for(task, 30)
    assert len(starts) == 1


async def test_a_store_written_by_the_previous_version_keeps_its_jobs(
    backend_url: str, backend: Backend
) -> None:
    """The previous version stored cron jobs with APScheduler's CronTrigger (ANDed day
    fields, Monday-based weekdays). Its rows load, and the jobs come back on crontab time:
    a job created through the API is rebuilt from its catalog entry, not dropped."""
    older = BackgroundScheduler(jobstores={"default": backend.create_jobstore()}, timezone=UTC)
    older.start(paused=True)
    # What the previous version stored for "0 6 1 * mon": only 1sts that are Mondays.
    older.add_job(
        sample_jobs.greet,
        WallClockCronTrigger(minute="0", hour="6", day="1", day_of_week="mon", timezone=UTC),
        id="digest",
        kwargs={"name": "ops"},
    )
    older.shutdown(wait=False)
    spec = CronSpec(expression="0 6 1 * mon")
    backend.save_jobs(
        [
            JobView(
                id="digest",
                name="digest",
                func="sample_jobs:greet",
                trigger=spec,
                trigger_text=spec.describe(),
                kwargs={"name": "ops"},
                source=JobSource.API,
            )
        ]
    )
    registry = Registry()
    registry.task(sample_jobs.greet)

    async with running_scheduler(backend_url, registry) as scheduler:
        view = await wait_for(lambda: backend.get_job("digest"), 5)
        stored = scheduler.catalog.view("digest")

    expected = CronSpec(expression="0 6 1 * mon").build().get_next_fire_time(None, utcnow())
    assert stored is not None and stored.next_run_time == expected
    assert view.source is JobSource.API
    assert view.next_run_time == expected
    # Every Monday and every 1st (crontab's OR), so never more than a week away.
    assert expected is not None and expected - utcnow() <= timedelta(days=7)


def _spring_forward_zone(folder: Path, transition: datetime) -> str:
    """A time zone, compiled with zic, whose clocks jump an hour ahead at ``transition``.

    Its standard offset is chosen so that the jump happens at a whole wall-clock minute.
    """
    seconds = transition.second
    until = transition.strftime("%Y %b %d %H:%M:%S")
    source = folder / "spring.zi"
    source.write_text(
        f"Zone Test/Spring -0:00:{seconds:02d} - STD {until}u\n\t\t0:59:{60 - seconds:02d} - DST\n"
        if seconds
        else f"Zone Test/Spring 0 - STD {until}u\n\t\t1:00 - DST\n"
    )
    subprocess.run(["zic", "-d", str(folder), str(source)], check=True)
    return "Test/Spring"


async def test_a_fixed_time_in_the_spring_forward_gap_runs_once_right_after_the_jump(
    backend_url: str, backend: Backend, tmp_path: Path
) -> None:
    """cron(8): a job whose time falls in the skipped hour runs once, right after the jump."""
    # Far enough ahead that the scheduler has started and scheduled the job before it.
    transition = (utcnow() + timedelta(seconds=15)).replace(microsecond=0)
    zone = _spring_forward_zone(tmp_path, transition)
    zoneinfo.reset_tzpath([str(tmp_path), *zoneinfo.TZPATH])
    zoneinfo.ZoneInfo.clear_cache(only_keys=[zone])  # an earlier test's zone of that name
    try:
        before_jump = (transition - timedelta(seconds=1)).astimezone(zoneinfo.ZoneInfo(zone))
        in_gap = before_jump + timedelta(minutes=30)  # the wall clock skips this time
        registry = Registry()
        registry.job(cron(f"{in_gap.minute} {in_gap.hour} * * *", timezone=zone), id="nightly")(
            sample_jobs.succeed
        )
        async with running_scheduler(backend_url, registry):
            runs = await wait_for_runs(backend, "nightly", 1, within=20)
            await asyncio.sleep(2)  # nothing more may come
            runs = backend.list_runs(job_id="nightly", limit=10)
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache(only_keys=[zone])
    assert [run.scheduled_time for run in runs] == [transition]
    assert runs[0].outcome is Outcome.SUCCESS
