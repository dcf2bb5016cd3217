"""The APScheduler 3 pieces Sundial replaces or wraps.

- :class:`GuardedScheduler` runs APScheduler's wakeups on its own thread (so blocking job
  store calls never stall the event loop that runs async jobs), refuses to process jobs
  when this instance cannot prove it leads, and survives a failing store call: APScheduler
  3 lets an exception from ``update_job`` end its scheduling loop for good.
- :class:`TrackingJobStore` wraps the real store and reports every next-run-time change,
  which keeps the JSON catalog and the metrics in step without reading the store back.
- :class:`SundialExecutor` hands each due job, with its fire times, to the runner on the
  event loop (APScheduler's own executors drop the fire times).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

log = structlog.get_logger("sundial.engine")

# After a failed job store call, retry this soon (APScheduler's default, 10 s, would
# hold back every job for that long after one failed write).
STORE_RETRY_SECONDS = 1.0

JobChange = Callable[[str, datetime | None, bool], None]
"""Callback ``(job_id, next_run_time, removed)``."""


class GuardedScheduler(BackgroundScheduler):  # type: ignore[misc]
    """A BackgroundScheduler whose loop neither dies on store errors nor runs when fenced."""

    def __init__(
        self, *, may_run: Callable[[], bool], on_error: Callable[[str], None], **options: Any
    ) -> None:
        self._may_run = may_run
        self._on_error = on_error
        options.setdefault("jobstore_retry_interval", STORE_RETRY_SECONDS)
        super().__init__(**options)

    def _process_jobs(self) -> float | None:
        if not self._may_run():
            return float(self.jobstore_retry_interval)
        try:
            wait: float | None = super()._process_jobs()
        except Exception as error:
            self._on_error("process_jobs")
            log.error("scheduler.process_jobs_failed", error=str(error))
            return float(self.jobstore_retry_interval)
        return wait


class TrackingJobStore(BaseJobStore):  # type: ignore[misc]
    """Delegates to a real job store and reports next-run-time changes and errors."""

    def __init__(
        self, inner: BaseJobStore, on_change: JobChange, on_error: Callable[[str], None]
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
        try:
            return getattr(self._inner, operation)(*args)
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

    def add_job(self, job: Job) -> None:
        self._call("add_job", job)
        self._on_change(job.id, job.next_run_time, False)

    def update_job(self, job: Job) -> None:
        self._call("update_job", job)
        self._on_change(job.id, job.next_run_time, False)

    def remove_job(self, job_id: str) -> None:
        self._call("remove_job", job_id)
        self._on_change(job_id, None, True)

    def remove_all_jobs(self) -> None:
        for job in self.get_all_jobs():
            self.remove_job(job.id)


Submit = Callable[[Job, list[datetime]], Any]


class SundialExecutor(BaseExecutor):  # type: ignore[misc]
    """Submits each due job and its fire times to the runner on an asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, submit: Submit) -> None:
        super().__init__()
        self._loop = loop
        self._submit = submit

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        future = asyncio.run_coroutine_threadsafe(self._submit(job, run_times), self._loop)

        def done(_: object) -> None:
            # Frees the max_instances slot; the runner records outcomes itself.
            self._run_job_success(job.id, [])

        future.add_done_callback(done)
