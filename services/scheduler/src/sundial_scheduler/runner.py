"""Wraps every run: claim the fire time, check guards, run with timeout and retries, record.

Async jobs run on the event loop, sync jobs on the job thread pool; backend calls go to a
separate small I/O pool so that neither kind of job waits on the backend. Claims of runs
that fire together share backend calls (:class:`~sundial_scheduler.claims.ClaimBatcher`).

This is the per-run path of a scheduler that may start a thousand runs a second: one line
per run (its end) is logged at INFO, its start at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from sundial.backends import Backend, BackendError
from sundial.context import RunContext, period_start, set_current_run
from sundial.metrics import SchedulerMetrics
from sundial.models import JobView, Outcome, Run, utcnow
from sundial_scheduler.claims import ClaimBatcher
from sundial_scheduler.writer import BackendWriter

log = structlog.get_logger("sundial.runner")

# Fire times that did not run get a run id derived from the fire time, so that recording
# the same missed or skipped fire time twice (two leaders for a moment) keeps one record.
_NOT_RUN_NAMESPACE = uuid.UUID("6f1b1c52-58b5-4c57-9d3e-5d0c2f1b7a10")


def not_run_id(job_id: str, scheduled_time: datetime, outcome: Outcome) -> str:
    return uuid.uuid5(_NOT_RUN_NAMESPACE, f"{job_id}|{scheduled_time.isoformat()}|{outcome}").hex


class RunTimedOut(TimeoutError):
    """Raised when a run outlives its job's ``timeout``.

    A ``def`` job cannot be stopped from outside its thread: ``thread`` is the work still
    running then, so that the run can stay visible as running until it really ends.
    """

    def __init__(self, message: str, thread: Future[Any] | None = None) -> None:
        super().__init__(message)
        self.thread = thread


@dataclass(frozen=True)
class Invocation:
    """What to call for one run."""

    view: JobView
    func: Callable[..., Any]
    args: Sequence[Any]
    kwargs: Mapping[str, Any]


class Runner:
    """Runs jobs on the event loop and records each attempt."""

    def __init__(
        self,
        *,
        backend: Backend,
        writer: BackendWriter,
        metrics: SchedulerMetrics,
        instance_id: str,
        job_pool: ThreadPoolExecutor,
        io_pool: ThreadPoolExecutor,
        may_run: Callable[[], bool],
    ) -> None:
        self._backend = backend
        self._writer = writer
        self._metrics = metrics
        self._instance_id = instance_id
        self._job_pool = job_pool
        self._io_pool = io_pool
        self._may_run = may_run
        self._claims = ClaimBatcher(
            backend=backend,
            instance_id=instance_id,
            io_pool=io_pool,
            on_error=metrics.backend_error,
        )
        self.active: set[asyncio.Task[Any]] = set()

    async def fire(
        self, invocation: Invocation, run_times: Sequence[datetime], grace: float | None
    ) -> None:
        """Handle the fire times APScheduler found due for one job."""
        for scheduled in run_times:
            late = (utcnow() - scheduled).total_seconds()
            if grace is not None and late > grace:
                self.record_not_run(
                    invocation.view.id,
                    scheduled,
                    Outcome.MISSED,
                    f"started {late:.1f}s late, past misfire_grace_time {grace:g}s",
                )
                continue
            await self.run(invocation, scheduled)

    async def run(self, invocation: Invocation, scheduled: datetime, manual: bool = False) -> None:
        """Claim ``scheduled`` for the job and run it, with retries, unless claimed elsewhere."""
        task = asyncio.current_task()
        assert task is not None
        self.active.add(task)
        try:
            await self._run(invocation, scheduled, manual)
        finally:
            self.active.discard(task)

    async def _run(self, invocation: Invocation, scheduled: datetime, manual: bool) -> None:
        view = invocation.view
        if not self._may_run():
            log.warning("run.not_leader", job_id=view.id, scheduled_time=scheduled.isoformat())
            return
        try:
            claimed = await self._claims.claim(view.id, scheduled)
        except BackendError as error:
            # Without a claim we cannot know nobody else ran it: do not run it.
            # (The batcher counted the failed call in sundial_backend_errors_total.)
            log.error("run.claim_failed", job_id=view.id, error=str(error))
            return
        if not claimed:
            log.info("run.claimed_elsewhere", job_id=view.id, scheduled_time=scheduled.isoformat())
            return
        if view.options.unique_per or view.options.requires:
            try:
                reason = await self._io(self._guard_reason, view, scheduled)
            except BackendError as error:
                # The guard cannot be answered: running could break what it protects.
                self._metrics.backend_error("run_guard")
                log.error("run.guard_failed", job_id=view.id, error=str(error))
                return
            if reason is not None:
                self.record_not_run(view.id, scheduled, Outcome.SKIPPED, reason)
                return
        attempts = 1 + view.options.retries
        for attempt in range(1, attempts + 1):
            outcome = await self._attempt(
                invocation, scheduled, attempt, manual, attempt == attempts
            )
            if outcome is Outcome.SUCCESS or attempt == attempts:
                return
            backoff = view.options.retry_backoff_seconds * 2 ** (attempt - 1)
            log.info("run.retrying", job_id=view.id, attempt=attempt + 1, in_seconds=backoff)
            try:
                await asyncio.sleep(backoff)
            except asyncio.CancelledError:
                retry = Run(
                    job_id=view.id,
                    scheduled_time=scheduled,
                    started_at=utcnow(),
                    attempt=attempt + 1,
                    manual=manual,
                    instance_id=self._instance_id,
                    error_message="scheduler shut down before the retry",
                )
                self._done(retry.finish(Outcome.INTERRUPTED), time.perf_counter(), final=True)
                raise

    async def _attempt(
        self, invocation: Invocation, scheduled: datetime, attempt: int, manual: bool, last: bool
    ) -> Outcome:
        view = invocation.view
        run = Run(
            job_id=view.id,
            scheduled_time=scheduled,
            started_at=utcnow(),
            attempt=attempt,
            manual=manual,
            instance_id=self._instance_id,
        )
        self._writer.record(run)
        self._metrics.run_started(run)
        bound = structlog.contextvars.bind_contextvars(job_id=view.id, run_id=run.run_id)
        log.debug("run.started", attempt=attempt, scheduled_time=scheduled.isoformat())
        context = RunContext(
            job_id=view.id,
            run_id=run.run_id,
            scheduled_time=scheduled,
            attempt=attempt,
            backend=self._backend,
            timezone=view.trigger.timezone,
        )
        started = time.perf_counter()
        try:
            await self._invoke(invocation, context)
        except asyncio.CancelledError:
            finished = run.finish(Outcome.INTERRUPTED)
            finished = finished.model_copy(update={"error_message": "scheduler shut down"})
            self._done(finished, started, final=True)
            raise
        except RunTimedOut as error:
            finished = run.finish(Outcome.TIMEOUT, error=error)
            if error.thread is not None:
                self._outlived(finished, error.thread)
                self._done(finished, started, final=last, still_running=True)
                return finished.outcome
        except Exception as error:
            finished = run.finish(Outcome.FAILURE, error=error, tb=traceback.format_exc())
        else:
            finished = run.finish(Outcome.SUCCESS)
        finally:
            structlog.contextvars.unbind_contextvars(*bound)
        self._done(finished, started, final=last or finished.outcome is Outcome.SUCCESS)
        return finished.outcome

    async def _invoke(self, invocation: Invocation, context: RunContext) -> None:
        set_current_run(context)
        func, args, kwargs = invocation.func, invocation.args, invocation.kwargs
        thread: Future[Any] | None = None
        if inspect.iscoroutinefunction(func):
            call = func(*args, **kwargs)
        else:
            ctx = contextvars.copy_context()
            thread = self._job_pool.submit(ctx.run, func, *args, **kwargs)
            call = asyncio.wrap_future(thread)
        limit = invocation.view.options.timeout_seconds
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                await call
        except TimeoutError:
            if deadline.expired():
                still = thread if thread is not None and not thread.done() else None
                raise RunTimedOut(f"timed out after {limit:g}s", still) from None
            raise  # the job's own TimeoutError is a failure like any other

    def _outlived(self, run: Run, thread: Future[Any]) -> None:
        """Keep a timed-out ``def`` job counted as running until its thread returns."""
        log.warning("run.thread_still_running", job_id=run.job_id, run_id=run.run_id)

        def stopped(_: Future[Any]) -> None:
            self._metrics.run_stopped(run)
            log.info("run.thread_finished", job_id=run.job_id, run_id=run.run_id)

        thread.add_done_callback(stopped)

    def _done(self, run: Run, started: float, *, final: bool, still_running: bool = False) -> None:
        self._writer.record(run)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        self._metrics.run_finished(run, final=final, still_running=still_running)
        event = log.info if run.outcome is Outcome.SUCCESS else log.error
        event(
            "run.finished",
            job_id=run.job_id,
            run_id=run.run_id,
            outcome=run.outcome.value,
            execution_time_ms=elapsed_ms,
            attempt=run.attempt,
            error=run.error_message,
        )

    def record_not_run(
        self, job_id: str, scheduled: datetime, outcome: Outcome, reason: str
    ) -> None:
        """Record a fire time that did not run (missed or skipped), with the reason."""
        now = utcnow()
        run = Run(
            run_id=not_run_id(job_id, scheduled, outcome),
            job_id=job_id,
            scheduled_time=scheduled,
            finished_at=now,
            outcome=outcome,
            error_message=reason,
            instance_id=self._instance_id,
        )
        self._writer.record(run)
        self._metrics.run_finished(run, was_running=False)
        log.warning(
            f"run.{outcome.value}",
            job_id=job_id,
            run_id=run.run_id,
            outcome=outcome.value,
            scheduled_time=scheduled.isoformat(),
            reason=reason,
        )

    def _guard_reason(self, view: JobView, scheduled: datetime) -> str | None:
        """Why this run should be skipped (idempotency or dependency guard), if it should."""
        options = view.options
        if options.unique_per:
            start = period_start(options.unique_per, scheduled, view.trigger.timezone)
            done = self._backend.last_run(view.id, outcome=Outcome.SUCCESS, since=start)
            if done is not None:
                return f"already succeeded this {options.unique_per} (run {done.run_id})"
        if options.requires and options.requires_within_seconds:
            since = scheduled - timedelta(seconds=options.requires_within_seconds)
            for required in options.requires:
                if self._backend.last_run(required, outcome=Outcome.SUCCESS, since=since) is None:
                    return f"dependency {required!r} has not succeeded since {since.isoformat()}"
        return None

    async def _io(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, func, *args)

    async def drain(self, grace: float) -> int:
        """Let running jobs finish for up to ``grace`` seconds, then interrupt the rest."""
        pending = set(self.active)
        if pending:
            log.info("shutdown.draining", running=len(pending), grace_seconds=grace)
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        return len(pending)
