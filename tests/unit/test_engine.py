"""The APScheduler wrappers: a loop that survives store errors and stops when fenced."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.triggers.interval import IntervalTrigger

from sundial.config import JobDefaults
from sundial_scheduler.engine import GuardedScheduler, SundialExecutor, TrackingJobStore

INTERVAL = 0.2
WATCH_SECONDS = 1.5


def tick() -> None:
    """The scheduled function; never called here (the fake submit only counts)."""


class FailingStore(MemoryJobStore):  # type: ignore[misc]
    """A memory store whose first ``failures`` update_job calls raise, like a dropped DB."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def update_job(self, job: Job) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("server closed the connection unexpectedly")
        super().update_job(job)


class Recorder:
    """Collects what the scheduler reports: submissions, store changes, errors."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, list[datetime]]] = []
        self.changes: list[tuple[str, datetime | None, bool]] = []
        self.errors: list[str] = []
        self.leading = True

    async def submit(self, job: Job, run_times: list[datetime]) -> None:
        self.submitted.append((job.id, run_times))

    def on_change(self, job_id: str, next_run_time: datetime | None, removed: bool) -> None:
        self.changes.append((job_id, next_run_time, removed))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engines() -> Iterator[list[GuardedScheduler]]:
    started: list[GuardedScheduler] = []
    yield started
    for engine in started:
        if engine.running:
            engine.shutdown(wait=False)


def build_engine(
    recorder: Recorder, inner: MemoryJobStore, engines: list[GuardedScheduler], **options: Any
) -> GuardedScheduler:
    """A scheduler configured as the service's ``_start_engine`` configures it."""
    store = TrackingJobStore(inner, recorder.on_change, recorder.errors.append)
    engine = GuardedScheduler(
        may_run=lambda: recorder.leading,
        on_error=recorder.errors.append,
        jobstores={"default": store},
        executors={"default": SundialExecutor(asyncio.get_running_loop(), recorder.submit)},
        job_defaults=JobDefaults().model_dump(),
        timezone=UTC,
        **options,
    )
    engines.append(engine)
    return engine


def add_tick(engine: GuardedScheduler) -> Job:
    job: Job = engine.add_job(tick, trigger=IntervalTrigger(seconds=INTERVAL), id="tick")
    return job


async def test_keeps_scheduling_after_a_store_update_fails(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    engine = build_engine(recorder, FailingStore(failures=1), engines, jobstore_retry_interval=0.1)
    engine.start()
    add_tick(engine)

    await asyncio.sleep(WATCH_SECONDS)

    assert "update_job" in recorder.errors  # the failure happened...
    assert "process_jobs" in recorder.errors
    # ...on the first submission, and the loop went on submitting afterwards.
    assert len(recorder.submitted) > 3, recorder.submitted
    assert engine.running


async def test_recovers_from_a_store_failure_with_the_services_settings(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    # Exactly the options SundialScheduler._start_engine passes: one failed store write
    # must not stall every job for APScheduler's default 10 s jobstore_retry_interval.
    engine = build_engine(recorder, FailingStore(failures=1), engines)
    engine.start()
    add_tick(engine)

    await asyncio.sleep(WATCH_SECONDS)

    assert "update_job" in recorder.errors
    assert len(recorder.submitted) > 1, recorder.submitted


async def test_does_not_process_jobs_while_it_may_not_run(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    recorder.leading = False
    engine = build_engine(recorder, MemoryJobStore(), engines, jobstore_retry_interval=0.1)
    engine.start()
    add_tick(engine)

    await asyncio.sleep(0.8)

    assert recorder.submitted == []

    recorder.leading = True
    await asyncio.sleep(0.8)

    assert recorder.submitted, "the scheduler did not resume once it was allowed to run"


async def test_submissions_carry_their_fire_times(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    engine = build_engine(recorder, MemoryJobStore(), engines)
    engine.start()
    first_fire = add_tick(engine).next_run_time

    await asyncio.sleep(0.5)

    job_id, run_times = recorder.submitted[0]
    assert job_id == "tick"
    assert run_times == [first_fire]


async def test_tracking_store_reports_next_run_changes(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    engine = build_engine(recorder, MemoryJobStore(), engines)
    engine.start()
    first_fire = add_tick(engine).next_run_time

    await asyncio.sleep(0.5)
    engine.pause_job("tick")
    engine.remove_job("tick")

    assert recorder.changes[0] == ("tick", first_fire, False)
    moved = [when for job_id, when, removed in recorder.changes if when is not None]
    assert len(moved) >= 2 and moved == sorted(moved)  # the next run moved forward
    assert ("tick", None, False) in recorder.changes  # paused
    assert recorder.changes[-1] == ("tick", None, True)  # removed
    assert recorder.errors == []
