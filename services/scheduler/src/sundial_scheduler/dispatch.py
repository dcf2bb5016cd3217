"""Where a claimed fire time runs: in the leader itself, or on the workers of its queue.

:class:`LocalLaunch` (``SUNDIAL_EXECUTOR=local``) claims the fire time and runs every
attempt in this process. :class:`QueueLaunch` (``queue``) has the backend claim it,
record the run ``queued`` and enqueue its message together; a worker runs it. Either
way guards are answered first and what does not run is recorded with the reason.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

import structlog

from sundial.backends import Backend, BackendError, RunCursor, history
from sundial.config import JobDefaults
from sundial.context import period_start
from sundial.metrics import SchedulerMetrics
from sundial.models import JobView, Outcome, Run, utcnow
from sundial_scheduler.claims import Batcher, ClaimBatcher
from sundial_scheduler.execution import Executor, Invocation
from sundial_scheduler.writer import BackendWriter

log = structlog.get_logger("sundial.runner")

# Fire times that did not run get a run id derived from the fire time, so that recording
# the same missed or skipped fire time twice (two leaders for a moment) keeps one record.
_NOT_RUN_NAMESPACE = uuid.UUID("6f1b1c52-58b5-4c57-9d3e-5d0c2f1b7a10")
#: queued runs read per page while looking for ones no worker took in time
QUEUED_SCAN_PAGE = 500
#: a run still queued this long after it was due may have lost its message (where the
#: engine's message and the run record cannot commit together): it is sent once more
RESEND_AFTER = timedelta(seconds=10)


def not_run_id(job_id: str, scheduled_time: datetime, outcome: Outcome) -> str:
    return uuid.uuid5(_NOT_RUN_NAMESPACE, f"{job_id}|{scheduled_time.isoformat()}|{outcome}").hex


class NotRunRecorder:
    """Records fire times that did not run (missed or skipped), with the reason."""

    def __init__(self, writer: BackendWriter, metrics: SchedulerMetrics, instance_id: str) -> None:
        self._writer = writer
        self._metrics = metrics
        self._instance_id = instance_id

    def record(self, job_id: str, scheduled: datetime, outcome: Outcome, reason: str) -> None:
        run = Run(
            run_id=not_run_id(job_id, scheduled, outcome),
            job_id=job_id,
            scheduled_time=scheduled,
            finished_at=utcnow(),
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


def guard_reason(backend: Backend, view: JobView, scheduled: datetime) -> str | None:
    """Why this run should be skipped (idempotency or dependency guard), if it should.

    Blocking: it asks the run history.
    """
    options = view.options
    if options.unique_per:
        start = period_start(options.unique_per, scheduled, view.trigger.timezone)
        done = backend.last_run(view.id, outcome=Outcome.SUCCESS, since=start)
        if done is not None:
            return f"already succeeded this {options.unique_per} (run {done.run_id})"
    if options.requires and options.requires_within_seconds:
        since = scheduled - timedelta(seconds=options.requires_within_seconds)
        for required in options.requires:
            if backend.last_run(required, outcome=Outcome.SUCCESS, since=since) is None:
                return f"dependency {required!r} has not succeeded since {since.isoformat()}"
    return None


class Launcher(Protocol):
    async def launch(self, invocation: Invocation, scheduled: datetime, manual: bool) -> None:
        """Claim ``scheduled`` for the job and see that it runs, unless claimed elsewhere."""


class _Guarded:
    """What both launchers share: the backend, the I/O pool, and guard checks."""

    def __init__(
        self,
        *,
        backend: Backend,
        not_run: NotRunRecorder,
        metrics: SchedulerMetrics,
        instance_id: str,
        io_pool: ThreadPoolExecutor,
    ) -> None:
        self._backend = backend
        self._not_run = not_run
        self._metrics = metrics
        self._instance_id = instance_id
        self._io_pool = io_pool

    async def _io(self, func: Callable[..., object], *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, func, *args)

    async def _guard_allows(self, view: JobView, scheduled: datetime) -> bool:
        """Whether the job's guards let this run go; a guard that says no is recorded."""
        if not (view.options.unique_per or view.options.requires):
            return True
        try:
            reason = await self._io(guard_reason, self._backend, view, scheduled)
        except BackendError as error:
            # The guard cannot be answered: running could break what it protects.
            self._metrics.backend_error("run_guard")
            log.error("run.guard_failed", job_id=view.id, error=str(error))
            return False
        if reason is not None:
            self._not_run.record(view.id, scheduled, Outcome.SKIPPED, str(reason))
            return False
        return True


class LocalLaunch(_Guarded):
    """Claims each fire time and runs its attempts here, with retries and backoff.

    It enforces each job's ``max_instances`` itself, on the event loop: a scheduled run
    holds one of its job's slots from its claim until its last attempt returns, so the
    next fire time finds the slot free as soon as the job's code is done, whatever the
    run's bookkeeping still has to do. A manual run takes no slot.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        not_run: NotRunRecorder,
        metrics: SchedulerMetrics,
        instance_id: str,
        io_pool: ThreadPoolExecutor,
        executor: Executor,
        writer: BackendWriter,
        job_defaults: JobDefaults,
    ) -> None:
        super().__init__(
            backend=backend,
            not_run=not_run,
            metrics=metrics,
            instance_id=instance_id,
            io_pool=io_pool,
        )
        self._executor = executor
        self._writer = writer
        self._defaults = job_defaults
        self._instances: Counter[str] = Counter()
        self._claims = ClaimBatcher(
            backend=backend,
            instance_id=instance_id,
            io_pool=io_pool,
            on_error=metrics.backend_error,
        )

    async def launch(self, invocation: Invocation, scheduled: datetime, manual: bool) -> None:
        view = invocation.view
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
        if not await self._guard_allows(view, scheduled):
            return
        if manual:
            await self._attempts(invocation, scheduled, manual)
            return
        limit = view.options.max_instances or self._defaults.max_instances
        if self._instances[view.id] >= limit:
            self._not_run.record(
                view.id,
                scheduled,
                Outcome.SKIPPED,
                f"previous run still running (max_instances={limit})",
            )
            return
        self._instances[view.id] += 1
        try:
            await self._attempts(invocation, scheduled, manual)
        finally:
            self._instances[view.id] -= 1
            if not self._instances[view.id]:
                del self._instances[view.id]

    async def _attempts(self, invocation: Invocation, scheduled: datetime, manual: bool) -> None:
        view = invocation.view
        attempts = 1 + view.options.retries
        for attempt in range(1, attempts + 1):
            run = self._running(view.id, scheduled, attempt, manual)
            self._writer.record(run)
            finished = await self._executor.attempt(invocation, run, last=attempt == attempts)
            if finished.outcome is Outcome.SUCCESS or attempt == attempts:
                return
            backoff = view.options.retry_delay(attempt)
            log.info("run.retrying", job_id=view.id, attempt=attempt + 1, in_seconds=backoff)
            try:
                await asyncio.sleep(backoff)
            except asyncio.CancelledError:
                retry = self._running(view.id, scheduled, attempt + 1, manual).model_copy(
                    update={"error_message": "scheduler shut down before the retry"}
                )
                self._executor.done(
                    retry.finish(Outcome.INTERRUPTED), time.perf_counter(), final=True
                )
                raise

    def _running(self, job_id: str, scheduled: datetime, attempt: int, manual: bool) -> Run:
        return Run(
            job_id=job_id,
            scheduled_time=scheduled,
            started_at=utcnow(),
            attempt=attempt,
            manual=manual,
            instance_id=self._instance_id,
        )


class Queued(Enum):
    """What became of a run handed to :meth:`Backend.claim_and_queue`."""

    QUEUED = "queued"
    OVER_LIMIT = "over_limit"
    CLAIMED_ELSEWHERE = "claimed_elsewhere"


class QueueLaunch(_Guarded):
    """Hands each fire time to the workers: claimed, recorded ``queued`` and enqueued.

    It also does what only the leader may do for runs on workers: queue the next attempt
    of a run interrupted by a dead worker, and record as missed a run no worker took
    within its grace. ``max_instances`` counts the runs queued or running on any worker.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        not_run: NotRunRecorder,
        metrics: SchedulerMetrics,
        instance_id: str,
        io_pool: ThreadPoolExecutor,
        job_defaults: JobDefaults,
    ) -> None:
        super().__init__(
            backend=backend,
            not_run=not_run,
            metrics=metrics,
            instance_id=instance_id,
            io_pool=io_pool,
        )
        self._defaults = job_defaults
        self._queue: Batcher[tuple[Run, int], Queued] = Batcher(
            self._queue_all,
            operation="dispatch",
            io_pool=io_pool,
            on_error=metrics.backend_error,
        )

    async def launch(self, invocation: Invocation, scheduled: datetime, manual: bool) -> None:
        view = invocation.view
        if not await self._guard_allows(view, scheduled):
            return
        run = Run(
            job_id=view.id,
            scheduled_time=scheduled,
            outcome=Outcome.QUEUED,
            manual=manual,
            instance_id=self._instance_id,
            queue=view.options.queue_name,
        )
        limit = view.options.max_instances or self._defaults.max_instances
        try:
            status = await self._queue.submit((run, limit))
        except BackendError as error:
            # Nothing committed: the claim and the record go with the message or not at
            # all, so the next wakeup may claim this fire time again.
            log.error("run.dispatch_failed", job_id=view.id, error=str(error))
            return
        if status is Queued.OVER_LIMIT:
            self._not_run.record(
                view.id,
                scheduled,
                Outcome.SKIPPED,
                f"previous run still queued or running (max_instances={limit})",
            )
        elif status is Queued.CLAIMED_ELSEWHERE:
            log.info("run.claimed_elsewhere", job_id=view.id, scheduled_time=scheduled.isoformat())
        else:
            log.debug("run.queued", job_id=view.id, run_id=run.run_id, queue=run.queue)

    def _queue_all(self, requests: list[tuple[Run, int]]) -> list[Queued]:
        runs = [run for run, _ in requests]
        limits = {run.job_id: limit for run, limit in requests}
        done = self._backend.claim_and_queue(runs, self._instance_id, limits)
        queued = {run.run_id for run in done.queued}
        over = {run.run_id for run in done.over_limit}
        return [
            Queued.QUEUED
            if run.run_id in queued
            else Queued.OVER_LIMIT
            if run.run_id in over
            else Queued.CLAIMED_ELSEWHERE
            for run in runs
        ]

    # the leader's care of runs on workers (blocking; call off the event loop) ----------------
    def retry_interrupted(
        self, interrupted: Collection[Run], view: Callable[[str], JobView | None]
    ) -> None:
        """Queue the next attempt of each run a dead worker left, where retries allow."""
        retries = []
        for run in interrupted:
            job = view(run.job_id)
            if run.queue is None or job is None:
                continue  # not a worker's run, or a job that is gone
            nxt = history.next_attempt(run, job.options, self._instance_id)
            if nxt is not None:
                retries.append(nxt)
        if retries:
            self._backend.queue_runs(retries)
            log.warning("runs.retried", count=len(retries), reason="their worker stopped")

    def miss_unstarted(self, view: Callable[[str], JobView | None]) -> None:
        """Record as missed the queued runs that no worker took within their grace, and
        send again the message of a run that has waited long."""
        now = utcnow()
        resent = self._backend.reconcile_queued(now - RESEND_AFTER)
        if resent:
            log.info("runs.resent", count=resent, reason="still queued long after due")
        late = [
            run.run_id
            for run in self._queued()
            if (now - history.due(run)).total_seconds() > self._grace(view(run.job_id))
        ]
        if not late:
            return
        missed = self._backend.update_runs(
            late,
            lambda run: history.miss_unstarted(
                run, f"no worker took it within {self._grace(view(run.job_id)):g}s"
            ),
        )
        for run in missed:
            self._metrics.run_finished(run, was_running=False)
        if missed:
            log.warning("runs.missed", count=len(missed), reason="no worker took them")

    def _grace(self, job: JobView | None) -> float:
        grace = job.options.misfire_grace_time if job is not None else None
        return float(grace or self._defaults.misfire_grace_time)

    def _queued(self) -> Iterator[Run]:
        before: RunCursor | None = None
        while True:
            page = self._backend.list_runs(
                outcome=Outcome.QUEUED, before=before, limit=QUEUED_SCAN_PAGE
            )
            yield from page
            if len(page) < QUEUED_SCAN_PAGE:
                return
            before = RunCursor(page[-1].scheduled_time, page[-1].run_id)
