"""The APScheduler wrappers: a loop that survives store errors, stops when fenced, and
starts every due job before it writes their next run times in one batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.job import Job
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from fakes import FakeJobStore
from scheduler_harness import wait_for

from sundial.backends.jobstore import JobStore
from sundial.config import JobDefaults
from sundial_scheduler.engine import Due, GuardedScheduler, SundialExecutor, TrackingJobStore

INTERVAL = 0.2
WATCH_SECONDS = 1.5
MANY_JOBS = 50


def tick() -> None:
    """The scheduled function; never called here (the fake submit only counts)."""


def copy_job(job: Job) -> Job:
    copy: Job = Job.__new__(Job)
    copy.__setstate__(job.__getstate__())
    copy._scheduler, copy._jobstore_alias = job._scheduler, job._jobstore_alias
    return copy


class FailingStore(FakeJobStore):
    """A memory store whose first ``failures`` writes raise, like a dropped DB."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def get_due_jobs(self, now: datetime) -> list[Job]:
        # Copies, as a database store reads them: a change is kept only once it is written.
        return [copy_job(job) for job in super().get_due_jobs(now)]

    def update_job(self, job: Job) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("server closed the connection unexpectedly")
        super().update_job(job)


Call = tuple[str, list[str]]


class OrderedExecutor(SundialExecutor):
    """Notes each submission in a log shared with :class:`OrderedStore`."""

    def __init__(self, calls: list[Call], loop: asyncio.AbstractEventLoop, submit: Any) -> None:
        super().__init__(loop, submit)
        self.calls = calls

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        self.calls.append(("submit", [job.id]))
        super()._do_submit_job(job, run_times)

    def flush(self) -> None:
        self.calls.append(("handover", []))
        super().flush()


class OrderedStore(TrackingJobStore):
    """Notes each store write in a log shared with :class:`OrderedExecutor`."""

    def __init__(self, calls: list[Call], inner: FakeJobStore, recorder: Recorder) -> None:
        super().__init__(inner, recorder.on_change, recorder.errors.append)
        self.calls = calls

    def update_job(self, job: Job) -> None:
        self.calls.append(("update_job", [job.id]))
        super().update_job(job)

    def update_jobs(self, jobs: Sequence[Job]) -> None:
        self.calls.append(("update_jobs", [job.id for job in jobs]))
        super().update_jobs(jobs)

    def remove_job(self, job_id: str) -> None:
        self.calls.append(("remove_job", [job_id]))
        super().remove_job(job_id)


class Recorder:
    """Collects what the scheduler reports: submissions, store changes, errors."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, list[datetime]]] = []
        self.changes: list[tuple[str, datetime | None, bool]] = []
        self.errors: list[str] = []
        self.leading = True

        self.handovers: list[list[str]] = []

    def submit(self, due: Due) -> None:
        self.handovers.append([job.id for job, _ in due])
        self.submitted.extend((job.id, run_times) for job, run_times in due)

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
    recorder: Recorder,
    inner: JobStore,
    engines: list[GuardedScheduler],
    *,
    executor: SundialExecutor | None = None,
    **options: Any,
) -> GuardedScheduler:
    """A scheduler configured as the service's ``_start_engine`` configures it.

    ``inner`` is wrapped in a :class:`TrackingJobStore` unless it is one already.
    """
    store = (
        inner
        if isinstance(inner, TrackingJobStore)
        else TrackingJobStore(inner, recorder.on_change, recorder.errors.append)
    )
    engine = GuardedScheduler(
        may_run=lambda: recorder.leading,
        on_error=recorder.errors.append,
        jobstores={"default": store},
        executors={
            "default": executor or SundialExecutor(asyncio.get_running_loop(), recorder.submit)
        },
        job_defaults=JobDefaults().model_dump(),
        timezone=UTC,
        **options,
    )
    engines.append(engine)
    return engine


def add_tick(engine: GuardedScheduler) -> Job:
    job: Job = engine.add_job(tick, trigger=IntervalTrigger(seconds=INTERVAL), id="tick")
    return job


async def test_keeps_scheduling_after_a_batched_write_fails(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    engine = build_engine(recorder, FailingStore(failures=1), engines, jobstore_retry_interval=0.1)
    engine.start()
    first_fire = add_tick(engine).next_run_time

    await asyncio.sleep(WATCH_SECONDS)

    assert "update_jobs" in recorder.errors  # the failure happened...
    assert "process_jobs" in recorder.errors
    # ...after the first submission; that fire time was not stored as done, so the next
    # wakeup submits it again (the runner's claim refuses the repeat)...
    fired = [run_times for _, run_times in recorder.submitted]
    assert fired[:2] == [[first_fire], [first_fire]], fired
    # ...and the loop went on submitting afterwards.
    assert len(fired) > 3, fired
    assert fired[2] == [first_fire + timedelta(seconds=INTERVAL)]
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

    assert "update_jobs" in recorder.errors
    assert len(recorder.submitted) > 1, recorder.submitted


async def test_does_not_process_jobs_while_it_may_not_run(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    recorder.leading = False
    engine = build_engine(recorder, FakeJobStore(), engines, jobstore_retry_interval=0.1)
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
    engine = build_engine(recorder, FakeJobStore(), engines)
    engine.start()
    first_fire = add_tick(engine).next_run_time

    await asyncio.sleep(0.5)

    job_id, run_times = recorder.submitted[0]
    assert job_id == "tick"
    assert run_times == [first_fire]


async def test_tracking_store_reports_next_run_changes(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    engine = build_engine(recorder, FakeJobStore(), engines)
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


async def test_submits_every_due_job_before_one_batched_write(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    calls: list[Call] = []
    loop = asyncio.get_running_loop()
    engine = build_engine(
        recorder,
        OrderedStore(calls, FakeJobStore(), recorder),
        engines,
        executor=OrderedExecutor(calls, loop, recorder.submit),
    )
    submitted: list[JobSubmissionEvent] = []
    engine.add_listener(submitted.append, EVENT_JOB_SUBMITTED)
    engine.start(paused=True)
    now = datetime.now(UTC)
    ids = [f"job-{number:03}" for number in range(MANY_JOBS)]
    for job_id in ids:
        engine.add_job(tick, IntervalTrigger(minutes=1), id=job_id, next_run_time=now)
    engine.add_job(tick, DateTrigger(now), id="once")

    engine.resume()
    await wait_for(lambda: ("remove_job", ["once"]) in calls, within=WATCH_SECONDS)

    writes = [call for call in calls if call[0] not in ("submit", "handover")]
    assert calls[: MANY_JOBS + 1] == [("submit", [job_id]) for job_id in [*ids, "once"]]
    assert calls[MANY_JOBS + 1] == ("handover", [])  # handed over before the write...
    assert recorder.handovers[0] == [*ids, "once"]  # ...all in one go
    assert writes[0] == ("update_jobs", ids)  # one write, after every submission...
    assert writes[-1] == ("remove_job", ["once"])  # ...then the finished one-off goes
    assert [name for name, _ in writes].count("update_jobs") == 1
    assert all(job.next_run_time == now + timedelta(minutes=1) for job in engine.get_jobs())
    assert sorted(event.job_id for event in submitted) == sorted([*ids, "once"])
    assert all(event.scheduled_run_times == [now] for event in submitted)
    assert recorder.errors == []


async def test_a_job_still_running_is_handed_over_again_at_its_next_fire(
    recorder: Recorder, engines: list[GuardedScheduler]
) -> None:
    """APScheduler does not hold back a running job: the runner applies max_instances."""
    engine = build_engine(recorder, FakeJobStore(), engines)
    engine.start()
    job: Job = engine.add_job(tick, IntervalTrigger(seconds=INTERVAL), id="tick", max_instances=1)
    first_fire = job.next_run_time

    await wait_for(lambda: len(recorder.submitted) >= 2, within=WATCH_SECONDS)

    assert recorder.submitted[:2] == [
        ("tick", [first_fire]),
        ("tick", [first_fire + timedelta(seconds=INTERVAL)]),
    ]
