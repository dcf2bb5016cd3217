"""The leader's side of every fire time: too late (missed), or claimed and launched.

Where a claimed fire time then runs, and how, is the launcher's business
(:mod:`.dispatch`): in this process with ``SUNDIAL_EXECUTOR=local``, on the workers
with ``queue``. This is the per-run path of a scheduler that may start a thousand runs
a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Literal

import structlog

from sundial.backends import Backend
from sundial.config import JobDefaults
from sundial.metrics import SchedulerMetrics
from sundial.models import Outcome, utcnow
from sundial_scheduler.dispatch import Launcher, LocalLaunch, NotRunRecorder, QueueLaunch
from sundial_scheduler.execution import Executor, Invocation
from sundial_scheduler.loop_monitor import LoopMonitor
from sundial_scheduler.writer import BackendWriter

log = structlog.get_logger("sundial.runner")


class Runner:
    """Turns the fire times APScheduler finds due into runs, fenced by leadership."""

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
        loop_monitor: LoopMonitor,
        executor: Literal["local", "queue"] = "local",
        job_defaults: JobDefaults | None = None,
    ) -> None:
        self._may_run = may_run
        self.not_run = NotRunRecorder(writer, metrics, instance_id)
        shared: dict[str, Any] = {
            "backend": backend,
            "not_run": self.not_run,
            "metrics": metrics,
            "instance_id": instance_id,
            "io_pool": io_pool,
        }
        shared["job_defaults"] = job_defaults or JobDefaults()
        self.queue: QueueLaunch | None = None
        self._launcher: Launcher
        if executor == "queue":
            self.queue = QueueLaunch(**shared)
            self._launcher = self.queue
        else:
            self._launcher = LocalLaunch(
                **shared,
                executor=Executor(
                    backend=backend,
                    writer=writer,
                    metrics=metrics,
                    job_pool=job_pool,
                    shutdown_reason="scheduler shut down",
                    loop_monitor=loop_monitor,
                ),
                writer=writer,
            )
        self.active: set[asyncio.Task[Any]] = set()
        self._handed: set[asyncio.Task[None]] = set()

    def start(
        self, invocation: Invocation, run_times: Sequence[datetime], grace: float | None
    ) -> None:
        """Handle the fire times of one job in a task of its own (on the event loop)."""
        task = asyncio.get_running_loop().create_task(self.fire(invocation, run_times, grace))
        self._handed.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._handed.discard)

    async def fire(
        self, invocation: Invocation, run_times: Sequence[datetime], grace: float | None
    ) -> None:
        """Handle the fire times APScheduler found due for one job."""
        for scheduled in run_times:
            late = (utcnow() - scheduled).total_seconds()
            if grace is not None and late > grace:
                self.not_run.record(
                    invocation.view.id,
                    scheduled,
                    Outcome.MISSED,
                    f"started {late:.1f}s late, past misfire_grace_time {grace:g}s",
                )
                continue
            await self.run(invocation, scheduled)

    async def run(self, invocation: Invocation, scheduled: datetime, manual: bool = False) -> None:
        """Claim ``scheduled`` for the job and launch it, unless claimed elsewhere."""
        task = asyncio.current_task()
        assert task is not None
        self.active.add(task)
        try:
            if not self._may_run():
                log.warning(
                    "run.not_leader",
                    job_id=invocation.view.id,
                    scheduled_time=scheduled.isoformat(),
                )
                return
            await self._launcher.launch(invocation, scheduled, manual)
        finally:
            self.active.discard(task)

    async def drain(self, grace: float) -> int:
        """Let running jobs finish for up to ``grace`` seconds, then interrupt the rest."""
        return await drain(self.active, grace)


async def drain(active: set[asyncio.Task[Any]], grace: float) -> int:
    """Wait up to ``grace`` seconds for ``active`` tasks, cancel the rest; how many were."""
    pending = set(active)
    if pending:
        log.info("shutdown.draining", running=len(pending), grace_seconds=grace)
        _, pending = await asyncio.wait(pending, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    return len(pending)
