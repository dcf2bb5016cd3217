"""What one term of leadership runs: APScheduler on the shared store, and its commands.

A :class:`LeaderTerm` is built when this instance becomes leader and thrown away when it
stops leading; nothing of it survives into the next term but what it stored. It is the
:class:`~sundial_scheduler.commands.JobControl` that commands are applied through.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from apscheduler.job import Job

from sundial.backends import Backend
from sundial.config import Settings
from sundial.jobs import JobDefinition, Registry
from sundial.metrics import SchedulerMetrics
from sundial.models import JobView, Run, utcnow
from sundial.triggers import TriggerSpec, is_current
from sundial_scheduler.catalog import Catalog, plan_sync, with_next_run
from sundial_scheduler.commands import CommandApplier, CommandLoop
from sundial_scheduler.dispatch import QueueLaunch
from sundial_scheduler.engine import (
    Due,
    GuardedScheduler,
    SundialExecutor,
    TrackingJobStore,
    engine_options,
)
from sundial_scheduler.execution import Invocation
from sundial_scheduler.runner import Runner

log = structlog.get_logger("sundial.scheduler")

#: how long stopping waits for the command thread to finish the command it applies
COMMAND_STOP_SECONDS = 5.0


class LeaderTerm:
    """The engine, the catalog's contents and the command loop of one term."""

    def __init__(
        self,
        *,
        settings: Settings,
        backend: Backend,
        registry: Registry,
        catalog: Catalog,
        runner: Runner,
        metrics: SchedulerMetrics,
        may_run: Callable[[], bool],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._registry = registry
        self._catalog = catalog
        self._runner = runner
        self._metrics = metrics
        self._may_run = may_run
        self._loop = loop
        self._engine: GuardedScheduler | None = None
        self._published: tuple[dict[str, JobView], dict[str, JobView]] | None = None
        self._commands = CommandLoop(
            backend, CommandApplier(self), may_run=may_run, on_error=metrics.backend_error
        )

    # -- start and stop (blocking: call off the event loop) ------------------------------
    def prepare(self) -> None:
        """APScheduler on the shared store, paused, in step with the code."""
        store = TrackingJobStore(
            self._backend.create_jobstore(), self._catalog.job_changed, self._metrics.backend_error
        )
        engine = GuardedScheduler(
            may_run=self._may_run,
            on_error=self._metrics.backend_error,
            jobstores={"default": store},
            executors={"default": SundialExecutor(self._loop, self._submit)},
            job_defaults=self._settings.job_defaults.model_dump(),
            timezone=ZoneInfo(self._settings.timezone),
        )
        engine.start(paused=True)
        self._engine = engine
        try:
            self._published = self._sync(engine, store)
        except BaseException:
            self.stop()
            raise

    def publish(self) -> None:
        """Write what the sync changed to the catalog, and make every job's metrics."""
        assert self._published is not None, "prepare() first"
        # Let go of the stored catalog as read: it is a second copy of every job.
        published, self._published = self._published, None
        self._catalog.publish(*published)

    def resume(self) -> None:
        """Start scheduling, and applying commands."""
        self.engine.resume()
        self._commands.start()

    def stop(self) -> None:
        """Stop scheduling and applying commands, without waiting on a store call."""
        self._commands.stop()
        engine, self._engine = self._engine, None
        if engine is not None and engine.running:
            threading.Thread(
                target=engine.shutdown, kwargs={"wait": False}, name="sundial-engine-stop"
            ).start()

    def join(self) -> None:
        """Wait (bounded) for the command thread to finish what it applies."""
        self._commands.join(COMMAND_STOP_SECONDS)

    @property
    def running(self) -> bool:
        return self._engine is not None and self._engine.running

    def _sync(
        self, engine: GuardedScheduler, store: TrackingJobStore
    ) -> tuple[dict[str, JobView], dict[str, JobView]]:
        """Reconcile store and catalog with the code; the new views and the stored ones.

        A leader may take over a hundred thousand jobs. Both are read a page at a time and
        only what lasts is kept of each job: its next run time, and its catalog entry in
        the compact form the catalog holds, which stays the new view when the next run
        time has not moved. What a page leaves behind is reused by the next one instead of
        being interleaved with what lasts, which would keep the process's peak resident.
        """
        stored = {
            schedule.job_id: (schedule.next_run_time, is_current(schedule.trigger))
            for schedule in store.iter_schedules()
        }
        catalog = {view.id: self._catalog.compact(view) for view in self._backend.iter_jobs()}
        plan = plan_sync(self._registry.jobs, catalog, stored.keys())
        views: dict[str, JobView] = {}
        for job_id, view in plan.keep.items():
            next_run_time, current = stored[job_id]
            if not current:
                next_run_time = self._rebuild_trigger(
                    engine, engine.get_job(job_id), view.trigger
                ).next_run_time
            views[job_id] = with_next_run(view, next_run_time)
        for definition in plan.add:
            job = self._add_definition(engine, definition)
            views[definition.id] = with_next_run(definition.view(), job.next_run_time)
        for job_id in plan.remove:
            log.info("job.removed", job_id=job_id, reason="no longer defined in code")
            engine.remove_job(job_id)
        return views, catalog

    @staticmethod
    def _rebuild_trigger(engine: GuardedScheduler, job: Job, spec: TriggerSpec) -> Job:
        """Replace a trigger stored by an earlier version with one built from its spec.

        The next fire is searched from the stored next run time when that has passed, so
        a fire that fell due while no scheduler ran still goes through the misfire rules,
        and from now otherwise (the old trigger may have skipped fires the new one has);
        a paused job stays paused.
        """
        trigger = spec.build()
        if job.next_run_time is None:
            engine.modify_job(job.id, trigger=trigger)
        else:
            start = min(job.next_run_time, datetime.now(job.next_run_time.tzinfo))
            next_run = trigger.get_next_fire_time(None, start)
            engine.modify_job(job.id, trigger=trigger, next_run_time=next_run)
        log.info("job.trigger_rebuilt", job_id=job.id, trigger=spec.describe())
        rebuilt: Job = engine.get_job(job.id)
        return rebuilt

    @staticmethod
    def _add_definition(engine: GuardedScheduler, definition: JobDefinition) -> Job:
        job: Job = engine.add_job(
            definition.func,
            trigger=definition.trigger.build(),
            id=definition.id,
            name=definition.name,
            kwargs=dict(definition.kwargs),
            replace_existing=True,
            **engine_options(definition.options),
        )
        return job

    # -- JobControl ------------------------------------------------------------------------
    @property
    def engine(self) -> GuardedScheduler:
        if self._engine is None:
            raise RuntimeError("this term has ended")
        return self._engine

    @property
    def functions(self) -> Mapping[str, Callable[..., Any]]:
        return self._registry.functions

    def view(self, job_id: str) -> JobView | None:
        return self._catalog.view(job_id)

    def replace_view(self, view: JobView) -> None:
        self._catalog.replace(view)

    def add_job(self, view: JobView, func: Callable[..., Any]) -> None:
        job: Job = self.engine.add_job(
            func,
            trigger=view.trigger.build(),
            id=view.id,
            name=view.name,
            kwargs=view.kwargs,
            **engine_options(view.options),
        )
        self._catalog.replace(with_next_run(view, job.next_run_time))

    def run_now(self, job_id: str) -> str:
        job = self.engine.get_job(job_id)
        view = self._catalog.view(job_id)
        if job is None or view is None:
            raise ValueError(f"unknown job {job_id!r}")
        moment = utcnow()
        invocation = Invocation(view, job.func, job.args, job.kwargs)
        asyncio.run_coroutine_threadsafe(
            self._runner.run(invocation, moment, manual=True), self._loop
        )
        return moment.isoformat()

    def care_for_queued(self, queue: QueueLaunch, interrupted: Collection[Run]) -> None:
        """Retry the runs dead workers left; record missed the runs nobody took (blocking)."""
        queue.retry_interrupted(interrupted, self._catalog.view)
        queue.miss_unstarted(self._catalog.view)

    # -- engine callbacks ------------------------------------------------------------------
    def _submit(self, due: Due) -> None:
        """Start handling every job of one wakeup (on the event loop)."""
        for job, run_times in due:
            view = self._catalog.view(job.id)
            if view is None:
                log.warning("run.unknown_job", job_id=job.id)
                continue
            invocation = Invocation(view, job.func, job.args, job.kwargs)
            self._runner.start(invocation, run_times, job.misfire_grace_time)
