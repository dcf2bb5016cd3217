"""The APScheduler 3 pieces Sundial replaces or wraps.

- :class:`GuardedScheduler` runs APScheduler's wakeups on its own thread (so blocking job
  store calls never stall the event loop that runs async jobs), refuses to process jobs
  when this instance cannot prove it leads, survives a failing store call (APScheduler 3
  lets an exception from ``update_job`` end its scheduling loop for good), and submits
  every due job before it stores their next run times in one batched write.
- :class:`TrackingJobStore` wraps the backend's store and reports every next-run-time
  change, which keeps the JSON catalog and the metrics in step without reading the
  store back.
- :class:`SundialExecutor` hands the due jobs of a wakeup, with their fire times, to the
  runner on the event loop in one go (APScheduler's own executors drop the fire times).
- :func:`engine_options` says which of a job's options APScheduler enforces itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from threading import TIMEOUT_MAX
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.base import BaseExecutor, MaxInstancesReachedError
from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED

from sundial.backends.jobstore import JobStore, StoredSchedule
from sundial.models import JobOptions

log = structlog.get_logger("sundial.engine")

# After a failed job store call, retry this soon (APScheduler's default, 10 s, would
# hold back every job for that long after one failed write).
STORE_RETRY_SECONDS = 1.0

JobChange = Callable[[str, datetime | None, bool], None]
"""Callback ``(job_id, next_run_time, removed)``."""


class GuardedScheduler(BackgroundScheduler):  # type: ignore[misc]
    """A BackgroundScheduler whose loop neither dies on store errors nor runs when fenced.

    Its wakeup replaces APScheduler 3.11's ``BaseScheduler._process_jobs`` and relies on
    these internals of that version: ``_jobstores``, ``_jobstores_lock``,
    ``_lookup_executor``, ``_dispatch_event``, ``Job._get_run_times`` and ``Job._modify``.
    """

    def __init__(
        self, *, may_run: Callable[[], bool], on_error: Callable[[str], None], **options: Any
    ) -> None:
        self._may_run = may_run
        self._on_error = on_error
        options.setdefault("jobstore_retry_interval", STORE_RETRY_SECONDS)
        super().__init__(**options)

    def _process_jobs(self) -> float | None:
        """Start every due job, then store all their next run times; return the wait.

        APScheduler stores each job right after submitting it, so the k-th due job waits
        for k-1 store round trips (a transaction each) before it starts, and a wakeup's
        lag grows with the number of jobs due. This wakeup submits every due job first
        and then writes them all in one batched write per store (``update_jobs``).

        Exactly-once does not depend on that write: should it fail after the jobs were
        submitted, the store still holds the old next run times and the next wakeup fires
        the same times again, which the runner's claims per ``(job_id, scheduled run
        time)`` refuse.
        """
        if not self._may_run():
            return float(self.jobstore_retry_interval)
        try:
            return self._process_due_jobs()
        except Exception as error:
            self._on_error("process_jobs")
            log.error("scheduler.process_jobs_failed", error=str(error))
            return float(self.jobstore_retry_interval)

    def _process_due_jobs(self) -> float | None:
        if self.state == STATE_PAUSED:
            return None
        now = datetime.now(self.timezone)
        events: list[JobSubmissionEvent] = []
        wakeups: list[datetime] = []
        with self._jobstores_lock:
            for alias, store in self._jobstores.items():
                wakeup = self._process_store(alias, store, now, events)
                if wakeup is not None:
                    wakeups.append(wakeup)
        for event in events:
            self._dispatch_event(event)
        if self.state == STATE_PAUSED or not wakeups:
            return None
        wait = min(wakeups).timestamp() - datetime.now(self.timezone).timestamp()
        return min(max(wait, 0.0), TIMEOUT_MAX)

    def _process_store(
        self, alias: str, store: TrackingJobStore, now: datetime, events: list[JobSubmissionEvent]
    ) -> datetime | None:
        """Fire one store's due jobs and write them back; return when it is next due."""
        retry = now + timedelta(seconds=self.jobstore_retry_interval)
        try:
            due: list[Job] = store.get_due_jobs(now)
        except Exception as error:
            log.warning("scheduler.due_jobs_failed", jobstore=alias, error=str(error))
            return retry
        changed, finished = self._submit_due(alias, due, now, events)
        for executor in self._executors.values():
            if isinstance(executor, SundialExecutor):
                executor.flush()
        try:
            store.update_jobs(changed)
            for job_id in finished:
                self.remove_job(job_id, alias)
            next_run: datetime | None = store.get_next_run_time()
        except Exception as error:
            self._on_error("process_jobs")
            log.error(
                "scheduler.store_write_failed", jobstore=alias, jobs=len(changed), error=str(error)
            )
            return retry
        return next_run.astimezone(self.timezone) if next_run else None

    def _submit_due(
        self, alias: str, due: list[Job], now: datetime, events: list[JobSubmissionEvent]
    ) -> tuple[list[Job], list[str]]:
        """Submit each due job; return those with a next run time and the ids of the rest."""
        changed: list[Job] = []
        finished: list[str] = []
        for job in due:
            try:
                executor = self._lookup_executor(job.executor)
            except KeyError:
                log.error("job.executor_unknown", job_id=job.id, executor=job.executor)
                finished.append(job.id)  # as APScheduler does: it could never run
                continue
            run_times: list[datetime] = job._get_run_times(now)
            if not run_times:
                continue
            if job.coalesce:
                run_times = run_times[-1:]
            event = _submit(executor, job, alias, run_times)
            if event is not None:
                events.append(event)
            next_run = job.trigger.get_next_fire_time(run_times[-1], now)
            if next_run:
                job._modify(next_run_time=next_run)
                changed.append(job)
            else:
                finished.append(job.id)
        return changed, finished


def _submit(
    executor: BaseExecutor, job: Job, alias: str, run_times: list[datetime]
) -> JobSubmissionEvent | None:
    """Hand one job to its executor; return the event APScheduler would dispatch."""
    try:
        executor.submit_job(job, run_times)
    except MaxInstancesReachedError:
        log.debug("job.max_instances_reached", job_id=job.id, max_instances=job.max_instances)
        return JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, job.id, alias, run_times)
    except Exception:
        log.exception("job.submit_failed", job_id=job.id, executor=job.executor)
        return None
    return JobSubmissionEvent(EVENT_JOB_SUBMITTED, job.id, alias, run_times)


class TrackingJobStore(BaseJobStore):  # type: ignore[misc]
    """Delegates to a backend's job store and reports next-run-time changes and errors."""

    def __init__(
        self, inner: JobStore, on_change: JobChange, on_error: Callable[[str], None]
    ) -> None:
        super().__init__()
        self._inner = inner
        self._on_change = on_change
        self._on_error = on_error

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._inner.start(scheduler, alias)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def _call(self, operation: str, *args: Any) -> Any:
        with self._reported(operation):
            return getattr(self._inner, operation)(*args)

    @contextmanager
    def _reported(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (ConflictingIdError, JobLookupError):
            raise  # answers, not failures: APScheduler relies on them (replace_existing)
        except Exception as error:
            self._on_error(operation)
            log.warning("jobstore.failed", operation=operation, error=str(error))
            raise

    def lookup_job(self, job_id: str) -> Job | None:
        return self._call("lookup_job", job_id)

    def get_due_jobs(self, now: datetime) -> list[Job]:
        return list(self._call("get_due_jobs", now))

    def get_next_run_time(self) -> datetime | None:
        next_run: datetime | None = self._call("get_next_run_time")
        return next_run

    def get_all_jobs(self) -> list[Job]:
        return list(self._call("get_all_jobs"))

    def iter_schedules(self) -> Iterator[StoredSchedule]:
        with self._reported("iter_schedules"):
            yield from self._inner.iter_schedules()

    def add_job(self, job: Job) -> None:
        self._call("add_job", job)
        self._on_change(job.id, job.next_run_time, False)

    def update_job(self, job: Job) -> None:
        self._call("update_job", job)
        self._on_change(job.id, job.next_run_time, False)

    def update_jobs(self, jobs: Sequence[Job]) -> None:
        """Store many jobs' changes in one batched write."""
        if not jobs:
            return
        self._call("update_jobs", jobs)
        for job in jobs:
            self._on_change(job.id, job.next_run_time, False)

    def remove_job(self, job_id: str) -> None:
        self._call("remove_job", job_id)
        self._on_change(job_id, None, True)

    def remove_all_jobs(self) -> None:
        for job in self.get_all_jobs():
            self.remove_job(job.id)


Due = list[tuple[Job, list[datetime]]]
"""The jobs one wakeup found due, each with its fire times."""


class SundialExecutor(BaseExecutor):  # type: ignore[misc]
    """Hands the jobs due in one wakeup, with their fire times, to the event loop at once.

    One ``call_soon_threadsafe`` per wakeup instead of one per job: with a thousand jobs
    due, per-job hand-overs cost the loop a thread hop each. It does not count instances:
    the runner enforces each job's ``max_instances`` on the event loop, where a run's
    end is known the moment its coroutine returns.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, submit: Callable[[Due], None]) -> None:
        super().__init__()
        self._loop = loop
        self._submit = submit
        self._due: Due = []

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        """Collect ``job`` for this wakeup's hand-over (no instance count, see above)."""
        self._do_submit_job(job, run_times)

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        self._due.append((job, run_times))

    def flush(self) -> None:
        """Hand over what this wakeup collected (called on APScheduler's thread)."""
        due, self._due = self._due, []
        if due:
            self._loop.call_soon_threadsafe(self._submit, due)


def engine_options(options: JobOptions) -> dict[str, Any]:
    """The JobOptions that APScheduler itself enforces, where set.

    Not ``max_instances``: the runner enforces it (see :class:`SundialExecutor`).
    """
    fields = ("coalesce", "misfire_grace_time")
    return {name: getattr(options, name) for name in fields if getattr(options, name) is not None}
