"""Executing one attempt of a run in this process, on the leader or on a worker.

Async jobs run on the event loop, sync jobs on the job thread pool, both under the job's
timeout; the attempt's record goes to the batched writer (running, then its outcome) and
its metrics are kept. One line is logged per attempt (its end) at INFO, its start at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from sundial.backends import Backend
from sundial.context import RunContext, set_current_run
from sundial.metrics import SchedulerMetrics
from sundial.models import JobView, Outcome, Run
from sundial_scheduler.loop_monitor import LoopMonitor
from sundial_scheduler.writer import BackendWriter

log = structlog.get_logger("sundial.runner")


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


class Executor:
    """Runs attempts in this process and records each."""

    def __init__(
        self,
        *,
        backend: Backend,
        writer: BackendWriter,
        metrics: SchedulerMetrics,
        job_pool: ThreadPoolExecutor,
        shutdown_reason: str,
        loop_monitor: LoopMonitor,
    ) -> None:
        self._monitor = loop_monitor
        self._backend = backend
        self._writer = writer
        self._metrics = metrics
        self._job_pool = job_pool
        self._shutdown_reason = shutdown_reason

    async def attempt(self, invocation: Invocation, run: Run, *, last: bool) -> Run:
        """Run ``invocation`` as the attempt ``run`` (a running record); return its end.

        ``last`` says no attempt follows this one if it fails: only the last attempt of a
        fire time counts in the run totals and the last success/failure times.
        """
        view = invocation.view
        self._metrics.run_started(run)
        bound = structlog.contextvars.bind_contextvars(job_id=view.id, run_id=run.run_id)
        log.debug("run.started", attempt=run.attempt, scheduled_time=run.scheduled_time.isoformat())
        context = RunContext(
            job_id=view.id,
            run_id=run.run_id,
            scheduled_time=run.scheduled_time,
            attempt=run.attempt,
            backend=self._backend,
            timezone=view.trigger.timezone,
        )
        started = time.perf_counter()
        watch = self._monitor.watching(view.id, run.run_id)
        try:
            with watch as blocked:
                await self._invoke(invocation, context)
        except asyncio.CancelledError:
            self.interrupt(run, started, blocked=blocked.blocked_seconds)
            raise
        except RunTimedOut as error:
            finished = run.finish(Outcome.TIMEOUT, error=error, blocked=blocked.blocked_seconds)
            if error.thread is not None:
                self._outlived(finished, error.thread)
                self.done(finished, started, final=last, still_running=True)
                return finished
        except Exception as error:
            finished = run.finish(
                Outcome.FAILURE,
                error=error,
                tb=traceback.format_exc(),
                blocked=blocked.blocked_seconds,
            )
        else:
            finished = run.finish(Outcome.SUCCESS, blocked=blocked.blocked_seconds)
        finally:
            structlog.contextvars.unbind_contextvars(*bound)
        self.done(finished, started, final=last or finished.outcome is Outcome.SUCCESS)
        return finished

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

    def interrupt(self, run: Run, started: float | None = None, *, blocked: float = 0.0) -> None:
        """Record ``run`` cut short by this process's shutdown."""
        finished = run.finish(Outcome.INTERRUPTED, blocked=blocked)
        finished = finished.model_copy(update={"error_message": self._shutdown_reason})
        self.done(finished, time.perf_counter() if started is None else started, final=True)

    def done(self, run: Run, started: float, *, final: bool, still_running: bool = False) -> None:
        """Record a finished attempt, its metrics and its log line."""
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
