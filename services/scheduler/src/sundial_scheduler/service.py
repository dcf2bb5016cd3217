"""The scheduler process: leadership, the APScheduler engine, commands, shutdown.

Every instance heartbeats. The one holding the leader lock runs an APScheduler
instance on the shared job store; the others stand by and take over when the lock frees.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.job import Job
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from sundial import __version__
from sundial.backends import Backend, BackendError, open_backend
from sundial.config import Settings
from sundial.constants import dead_after, heartbeat_interval
from sundial.jobs import JobDefinition, Registry, default_registry
from sundial.metrics import SchedulerMetrics
from sundial.models import (
    Instance,
    InstanceRole,
    JobSource,
    JobState,
    JobView,
    Outcome,
    utcnow,
)
from sundial_scheduler.commands import CommandApplier, engine_options
from sundial_scheduler.engine import GuardedScheduler, SundialExecutor, TrackingJobStore
from sundial_scheduler.http import HealthServer
from sundial_scheduler.jobs.maintenance import register_maintenance
from sundial_scheduler.runner import Invocation, Runner
from sundial_scheduler.writer import BackendWriter

log = structlog.get_logger("sundial.scheduler")
T = TypeVar("T")

IO_THREADS = 4
COMMAND_BATCH = 100
COMMAND_WAIT_SECONDS = 1.0
SETUP_RETRY_MAX_SECONDS = 10.0
WRITER_FLUSH_SECONDS = 10.0
ORPHAN_SWEEP_TICKS = 5


class SundialScheduler:
    """One scheduler instance (leader or standby). Build with ``create_scheduler()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry = default_registry,
        backend: Backend | None = None,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        register_maintenance(registry, settings.run_retention_days)
        self.instance_id = settings.instance_id or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.backend = backend or open_backend(settings.backend_url)
        self.metrics_registry = metrics_registry or _process_registry()
        self.metrics = SchedulerMetrics(
            self.metrics_registry, instance_id=self.instance_id, backend=self.backend.kind
        )
        self.metrics.set_version(__version__)
        self.started_at = utcnow()
        self._lease = settings.leader_lease_seconds
        self._tick = heartbeat_interval(self._lease)
        self._job_pool = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="sundial-job")
        self._io_pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="sundial-io")
        self.writer = BackendWriter(self.backend, self.metrics.backend_error)
        self.runner = Runner(
            backend=self.backend,
            writer=self.writer,
            metrics=self.metrics,
            instance_id=self.instance_id,
            job_pool=self._job_pool,
            io_pool=self._io_pool,
            may_run=self.may_run,
        )
        self._commands = CommandApplier(self)
        self._views: dict[str, JobView] = {}
        self._views_lock = threading.Lock()
        self._engine: GuardedScheduler | None = None
        self._command_stop = threading.Event()
        self._command_thread: threading.Thread | None = None
        self._leading = False
        self._lease_until = 0.0
        self._ready = False
        self._last_tick = time.monotonic()
        self._ticks = 0
        # Bumped on every promotion and demotion: a start-up that finds it changed
        # belongs to a leadership that has ended, and discards its engine.
        self._generation = 0
        self._promotion: asyncio.Task[None] | None = None
        # An instance is taken for dead once its heartbeat is this old...
        self._silence = dead_after(self._lease)
        # ...but only by an instance that has itself reached the backend for that long
        # (monotonic start of the current streak of good ticks; None while failing):
        # after an outage every heartbeat is old, the live instances' included.
        self._reachable_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.http: HealthServer | None = None

    # -- state shared with the runner, commands and health checks ----------------------
    def may_run(self) -> bool:
        """True while this instance holds a lease it has renewed recently (fencing)."""
        return self._leading and time.monotonic() < self._lease_until

    @property
    def scheduling(self) -> bool:
        """True once this instance leads and its engine has taken over the job store."""
        return self._engine is not None and self.may_run()

    @property
    def role(self) -> InstanceRole:
        return InstanceRole.LEADER if self._leading else InstanceRole.STANDBY

    @property
    def engine(self) -> GuardedScheduler:
        if self._engine is None:
            raise RuntimeError("this instance is not the leader")
        return self._engine

    def view(self, job_id: str) -> JobView | None:
        with self._views_lock:
            return self._views.get(job_id)

    def views(self) -> list[JobView]:
        with self._views_lock:
            return list(self._views.values())

    # -- process lifecycle --------------------------------------------------------------
    def request_stop(self) -> None:
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or :meth:`request_stop`; returns the exit code."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._stop.set)
        self.http = HealthServer(
            host=self.settings.metrics_host,
            port=self.settings.metrics_port,
            registry=self.metrics_registry,
            alive=self._alive,
            ready=self._readiness,
        )
        self.http.start()
        log.info(
            "scheduler.starting",
            instance=self.instance_id,
            backend=self.backend.kind,
            metrics_port=self.http.port,
            jobs=len(self.registry.jobs),
        )
        if await self._setup_backend():
            self.writer.start()
            await self._lead_loop()
        await self._shutdown()
        return 0

    async def _setup_backend(self) -> bool:
        """Migrate the schema, retrying with backoff while the backend is unreachable."""
        delay = 0.5
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await self._io(self.backend.setup)
                return True
            except BackendError as error:
                self.metrics.backend_error("setup")
                log.error("backend.unreachable", error=str(error), retry_in_s=delay)
            await self._sleep(delay)
            delay = min(delay * 2, SETUP_RETRY_MAX_SECONDS)
        return False

    async def _lead_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            await self._leadership_tick()
            self._last_tick = time.monotonic()
            await self._sleep(self._tick)

    async def _leadership_tick(self) -> None:
        started = time.monotonic()
        try:
            if self._leading:
                if await self._io(self.backend.renew_leadership, self.instance_id, self._lease):
                    self._lease_until = started + self._lease
                else:
                    await self._demote("lost the leader lock")
            elif await self._io(self.backend.acquire_leadership, self.instance_id, self._lease):
                self._lease_until = started + self._lease
                self._begin_promotion()
            await self._io(self.backend.heartbeat, self._instance(self.role))
            self._ticks += 1
            if self._leading and self._ticks % ORPHAN_SWEEP_TICKS == 0:
                await self._interrupt_orphans()
        except Exception as error:
            if not isinstance(error, BackendError | TimeoutError):
                log.exception("leadership.failed")
            self._ready = False
            self._reachable_since = None
            self.metrics.backend_error("leadership")
            log.warning("backend.unreachable", error=str(error) or type(error).__name__)
            if self._leading and time.monotonic() >= self._lease_until:
                await self._demote("lease expired while the backend was unreachable")
            return
        self._ready = True
        if self._reachable_since is None:
            self._reachable_since = started
        self.metrics.backend_ok(True)
        self.metrics.heartbeat.set(time.time())
        if self._leading:
            self.metrics.set_job_counts(Counter(view.state for view in self.views()))

    async def _interrupt_orphans(self) -> None:
        """Mark runs of instances whose heartbeat stopped as interrupted."""
        since = self._reachable_since
        if since is None or time.monotonic() - since < self._silence:
            return  # the others may not have had the chance to heartbeat yet
        cutoff = utcnow() - timedelta(seconds=self._silence)
        instances = await self._io(self.backend.list_instances)
        live = {i.id for i in instances if i.last_seen >= cutoff} | {self.instance_id}
        interrupted = await self._io(self.backend.interrupt_orphaned_runs, live)
        if interrupted:
            log.warning("runs.interrupted", count=interrupted, reason="their instance stopped")

    def _begin_promotion(self) -> None:
        """Lead: start the engine in the background while the ticks keep renewing the lease.

        Starting on a store of many jobs takes a while; the lease must not lapse meanwhile.
        """
        log.info("leader.promoted", instance=self.instance_id)
        self._leading = True
        self._generation += 1
        self.metrics.set_leader(True)
        self._promotion = asyncio.create_task(self._promote(self._generation))

    async def _promote(self, generation: int) -> None:
        try:
            await self._interrupt_orphans()
            engine, synced = await self._loop_run(self._prepare_engine)
        except Exception as error:
            log.error("leader.start_failed", error=str(error), error_type=type(error).__name__)
            if generation == self._generation:
                await self._demote("could not start the scheduler engine")
            return
        if generation != self._generation:
            # Demoted while starting: this engine must never run a job.
            threading.Thread(target=engine.shutdown, kwargs={"wait": False}).start()
            return
        with self._views_lock:
            self._views = synced.views
        await self._loop_run(self._publish, synced)
        if generation != self._generation:
            return
        engine.resume()
        self._engine = engine
        self._command_stop = threading.Event()
        self._command_thread = threading.Thread(
            target=self._command_loop, args=(self._command_stop,), name="sundial-commands"
        )
        self._command_thread.start()

    def _stop_engine(self) -> None:
        """Stop APScheduler without waiting: its thread may be stuck in a store call."""
        engine, self._engine = self._engine, None
        self._command_stop.set()
        if engine is not None and engine.running:
            threading.Thread(
                target=engine.shutdown, kwargs={"wait": False}, name="sundial-engine-stop"
            ).start()

    async def _demote(self, reason: str) -> None:
        log.warning("leader.demoted", instance=self.instance_id, reason=reason)
        self._leading = False
        self._generation += 1
        self._lease_until = 0.0
        self.metrics.set_leader(False)
        self._stop_engine()
        with self._views_lock:
            self._views = {}
        self.metrics.forget_jobs()

    async def _shutdown(self) -> None:
        """SIGTERM: no new runs, hand leadership over at once, drain, record, leave."""
        log.info("scheduler.stopping", instance=self.instance_id)
        leading = self._leading
        self._leading = False
        self._generation += 1  # a start-up still under way discards its engine
        self._stop_engine()
        try:
            if leading:
                await self._io(self.backend.release_leadership, self.instance_id)
                self.metrics.set_leader(False)
        except (BackendError, TimeoutError) as error:
            log.warning("shutdown.backend_unreachable", error=str(error))
        # Heartbeats go on while draining, so the next leader leaves our runs alone.
        heartbeat = asyncio.create_task(self._heartbeat_while_stopping())
        interrupted = await self.runner.drain(self.settings.shutdown_grace_seconds)
        heartbeat.cancel()
        if interrupted:
            log.warning("shutdown.interrupted", runs=interrupted)
        saved = await self._loop_run(self.writer.stop, WRITER_FLUSH_SECONDS)
        try:
            await self._io(self.backend.remove_instance, self.instance_id)
        except (BackendError, TimeoutError) as error:
            log.warning("shutdown.backend_unreachable", error=str(error))
        if self._command_thread is not None:
            await self._loop_run(self._command_thread.join, COMMAND_WAIT_SECONDS * 5)
        if self.http is not None:
            self.http.stop()
        self._io_pool.shutdown(wait=False, cancel_futures=True)
        self._job_pool.shutdown(wait=False, cancel_futures=True)
        self.backend.close()
        log.info("scheduler.stopped", instance=self.instance_id, history_saved=saved)

    async def _heartbeat_while_stopping(self) -> None:
        while True:
            try:
                await self._io(self.backend.heartbeat, self._instance(InstanceRole.STOPPING))
            except (BackendError, TimeoutError):
                pass
            await asyncio.sleep(self._tick)

    # -- the engine (leader only) --------------------------------------------------------
    def _prepare_engine(self) -> tuple[GuardedScheduler, _Synced]:
        """APScheduler on the shared store, in step with the code, paused until published."""
        assert self._loop is not None
        store = TrackingJobStore(
            self.backend.create_jobstore(), self._job_changed, self.metrics.backend_error
        )
        defaults = self.settings.job_defaults
        engine = GuardedScheduler(
            may_run=self.may_run,
            on_error=self.metrics.backend_error,
            jobstores={"default": store},
            executors={"default": SundialExecutor(self._loop, self._submit)},
            job_defaults=defaults.model_dump(),
            timezone=ZoneInfo(self.settings.timezone),
        )
        engine.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)
        engine.start(paused=True)
        try:
            return engine, self._sync_definitions(engine)
        except BaseException:
            engine.shutdown(wait=False)
            raise

    def _sync_definitions(self, engine: GuardedScheduler) -> _Synced:
        """Apply SPEC §2: code defines jobs; run-time changes persist until the code changes."""
        catalog = {view.id: view for view in self.backend.iter_jobs()}
        stored: dict[str, Job] = {job.id: job for job in engine.get_jobs()}
        views: dict[str, JobView] = {}
        for definition in self.registry.jobs.values():
            kept = catalog.get(definition.id)
            job = stored.get(definition.id)
            if not (
                kept is not None
                and job is not None
                and kept.source is JobSource.CODE
                and kept.fingerprint == definition.fingerprint()
            ):
                job = self._add_definition(engine, definition)
                kept = definition.view()
            views[definition.id] = _with_next_run(kept, job.next_run_time)
        for job_id, job in stored.items():
            kept = catalog.get(job_id)
            if job_id in views:
                continue
            if kept is not None and kept.source is JobSource.API:
                views[job_id] = _with_next_run(kept, job.next_run_time)
            else:
                log.info("job.removed", job_id=job_id, reason="no longer defined in code")
                engine.remove_job(job_id)
        changed = [view for view in views.values() if catalog.get(view.id) != view]
        return _Synced(views, changed, catalog.keys() - views.keys())

    def _publish(self, synced: _Synced) -> None:
        """Write what the sync changed to the catalog, and make every job's metrics."""
        for job_id in synced.removed:
            self.writer.delete_job(job_id)
        for view in synced.changed:
            self.writer.save_job(view)
        for view in synced.views.values():
            self.metrics.job_known(view)
        for summary in self.backend.run_summaries(list(synced.views)).values():
            self.metrics.restore_last(
                summary.job_id,
                summary.last_success_at.timestamp() if summary.last_success_at else None,
                summary.last_failure_at.timestamp() if summary.last_failure_at else None,
            )
        log.info("jobs.synced", jobs=len(synced.views), changed=len(synced.changed))

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

    def _job_changed(self, job_id: str, next_run_time: datetime | None, removed: bool) -> None:
        with self._views_lock:
            view = self._views.get(job_id)
            if view is None:
                return
            if removed:
                del self._views[job_id]
            else:
                view = _with_next_run(view, next_run_time)
                self._views[job_id] = view
        if removed:
            self.writer.delete_job(job_id)
            self.metrics.job_removed(job_id)
        else:
            self.writer.save_job(view)
            self.metrics.set_next_run(job_id, next_run_time.timestamp() if next_run_time else None)

    def replace_view(self, view: JobView) -> None:
        """Store a changed catalog entry (from a command)."""
        view = view.model_copy(update={"updated_at": utcnow()})
        with self._views_lock:
            self._views[view.id] = view
        self.writer.save_job(view)
        self.metrics.job_known(view)

    def touch(self, job_id: str) -> None:
        view = self.view(job_id)
        if view is not None:
            self.replace_view(view)

    def add_job(self, view: JobView, func: Callable[..., Any]) -> None:
        job: Job = self.engine.add_job(
            func,
            trigger=view.trigger.build(),
            id=view.id,
            name=view.name,
            kwargs=view.kwargs,
            **engine_options(view.options),
        )
        self.replace_view(_with_next_run(view, job.next_run_time))

    def run_now(self, job_id: str) -> str:
        """Start a one-off run of ``job_id`` outside its schedule; returns its fire time."""
        assert self._loop is not None
        job = self.engine.get_job(job_id)
        view = self.view(job_id)
        if job is None or view is None:
            raise ValueError(f"unknown job {job_id!r}")
        moment = utcnow()
        invocation = Invocation(view, job.func, job.args, job.kwargs)
        asyncio.run_coroutine_threadsafe(
            self.runner.run(invocation, moment, manual=True), self._loop
        )
        return moment.isoformat()

    async def _submit(self, job: Job, run_times: list[datetime]) -> None:
        view = self.view(job.id)
        if view is None:
            log.warning("run.unknown_job", job_id=job.id)
            return
        invocation = Invocation(view, job.func, job.args, job.kwargs)
        await self.runner.fire(invocation, run_times, job.misfire_grace_time)

    def _on_max_instances(self, event: JobSubmissionEvent) -> None:
        view = self.view(event.job_id)
        limit = view.options.max_instances if view else None
        for scheduled in event.scheduled_run_times:
            self.runner.record_not_run(
                event.job_id,
                scheduled,
                Outcome.SKIPPED,
                f"previous run still running (max_instances={limit or 'default'})",
            )

    def _command_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                for command in self.backend.pending_commands(COMMAND_BATCH):
                    if stop.is_set() or not self.may_run():
                        return
                    state, reason = self._commands.apply(command)
                    self.backend.finish_command(command.id, state, reason)
                    log.info(
                        "command.finished",
                        command_id=command.id,
                        kind=command.kind.value,
                        job_id=command.job_id,
                        state=state.value,
                        reason=reason,
                    )
                self.backend.wait_for_commands(COMMAND_WAIT_SECONDS)
            except BackendError as error:
                self.metrics.backend_error("commands")
                log.warning("commands.backend_unreachable", error=str(error))
                stop.wait(COMMAND_WAIT_SECONDS)

    # -- health --------------------------------------------------------------------------
    def _instance(self, role: InstanceRole) -> Instance:
        return Instance(
            id=self.instance_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            role=role,
            version=__version__,
            started_at=self.started_at,
        )

    def _alive(self) -> tuple[bool, dict[str, Any]]:
        stalled = time.monotonic() - self._last_tick > max(30.0, self._lease * 3)
        return not stalled, {"status": "stalled" if stalled else "alive", "role": self.role}

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        body = {"ready": self._ready, "role": self.role, "instance": self.instance_id}
        return self._ready, body

    # -- helpers -------------------------------------------------------------------------
    async def _io(self, func: Callable[..., T], *args: Any) -> T:
        """Run a blocking backend call off the event loop, bounded by half the lease."""
        assert self._loop is not None
        call = self._loop.run_in_executor(self._io_pool, func, *args)
        return await asyncio.wait_for(call, timeout=max(self._lease / 2, 5.0))

    async def _loop_run(self, func: Callable[..., T], *args: Any) -> T:
        """Run a blocking call that bounds its own time on the default executor."""
        assert self._loop is not None
        return await self._loop.run_in_executor(None, func, *args)

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


@dataclass(frozen=True)
class _Synced:
    """The catalog as the code and the store say it should be, and what differs."""

    views: dict[str, JobView]
    changed: list[JobView]
    removed: Collection[str]


def _with_next_run(view: JobView, next_run_time: datetime | None) -> JobView:
    state = JobState.PAUSED if next_run_time is None else JobState.SCHEDULED
    return view.model_copy(update={"next_run_time": next_run_time, "state": state})


def _process_registry() -> CollectorRegistry:
    """A registry with the process_* metrics the memory and restart alerts use."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
