"""The scheduler process: its parts wired together, its ticks, and its shutdown.

Every instance heartbeats. The one holding the leader lock runs a :class:`LeaderTerm`
(APScheduler on the shared job store, and the command loop); the others stand by and
take over when the lock frees.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from prometheus_client import CollectorRegistry

from sundial import __version__
from sundial.backends import Backend, BackendError, open_backend
from sundial.config import Settings
from sundial.jobs import Registry
from sundial.metrics import SchedulerMetrics, process_registry
from sundial.models import InstanceRole, Run, utcnow
from sundial_scheduler.catalog import Catalog
from sundial_scheduler.http import HealthServer
from sundial_scheduler.jobs.maintenance import with_maintenance
from sundial_scheduler.leadership import Change, Leadership
from sundial_scheduler.lifecycle import StopSignals, instance_id, set_up_backend
from sundial_scheduler.loop_monitor import loop_monitor
from sundial_scheduler.presence import Presence
from sundial_scheduler.runner import Runner
from sundial_scheduler.term import LeaderTerm
from sundial_scheduler.writer import BackendWriter

log = structlog.get_logger("sundial.scheduler")
T = TypeVar("T")

IO_THREADS = 4
WRITER_FLUSH_SECONDS = 10.0
#: the leader sweeps for runs of dead instances every this many ticks
ORPHAN_SWEEP_TICKS = 5


class SundialScheduler:
    """One scheduler instance (leader or standby). Build with ``create_scheduler()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry,
        backend: Backend | None = None,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = with_maintenance(registry, settings.run_retention_days)
        self.instance_id = instance_id(settings)
        self.backend = backend or open_backend(settings.backend_url)
        self.metrics_registry = metrics_registry or process_registry()
        self.metrics = SchedulerMetrics(
            self.metrics_registry, instance_id=self.instance_id, backend=self.backend.kind
        )
        self.metrics.set_version(__version__)
        self._lease = settings.leader_lease_seconds
        self._job_pool = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="sundial-job")
        self._io_pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="sundial-io")
        self.leadership = Leadership(
            self.backend, instance_id=self.instance_id, lease_seconds=self._lease, io=self._io
        )
        self.presence = Presence(
            self.backend,
            instance_id=self.instance_id,
            started_at=utcnow(),
            lease_seconds=self._lease,
            io=self._io,
        )
        self.writer = BackendWriter(self.backend, self.metrics.backend_error)
        self.catalog = Catalog(self.backend, self.writer, self.metrics)
        self.loop_monitor = loop_monitor(settings, self.metrics)
        self.runner = Runner(
            backend=self.backend,
            writer=self.writer,
            metrics=self.metrics,
            instance_id=self.instance_id,
            job_pool=self._job_pool,
            io_pool=self._io_pool,
            may_run=self.leadership.may_run,
            loop_monitor=self.loop_monitor,
            executor=settings.executor,
            job_defaults=settings.job_defaults,
        )
        self._term: LeaderTerm | None = None
        self._promotion: asyncio.Task[None] | None = None
        self._ready = False
        self._last_tick = time.monotonic()
        self._ticks = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.http: HealthServer | None = None

    # -- what others may ask ---------------------------------------------------------------
    @property
    def scheduling(self) -> bool:
        """True once this instance leads and its engine has taken over the job store."""
        return self._term is not None and self._term.running and self.leadership.may_run()

    @property
    def role(self) -> InstanceRole:
        return InstanceRole.LEADER if self.leadership.leading else InstanceRole.STANDBY

    # -- process lifecycle -----------------------------------------------------------------
    def request_stop(self) -> None:
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or :meth:`request_stop`; returns the exit code."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        with StopSignals(self._stop):
            return await self._serve()

    async def _serve(self) -> int:
        assert self._stop is not None
        self.loop_monitor.start(asyncio.get_running_loop())
        self.http = HealthServer(
            host=self.settings.metrics_host,
            port=self.settings.metrics_port,
            exposition=self.metrics.exposition,
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
        if await set_up_backend(
            self.backend, stop=self._stop, io=self._io, on_error=self.metrics.backend_error
        ):
            self.writer.start()
            await self._lead_loop()
        await self._shutdown()
        return 0

    async def _lead_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            await self._leadership_tick()
            self._last_tick = time.monotonic()
            await self._sleep(self.presence.tick_seconds)

    async def _leadership_tick(self) -> None:
        started = time.monotonic()
        try:
            change = await self.leadership.step()
            if change is Change.PROMOTED:
                self._begin_term()
            elif change is Change.DEMOTED:
                self._end_term("lost the leader lock")
            await self.presence.heartbeat(self.role)
            self._ticks += 1
            if self._term is not None and self._ticks % ORPHAN_SWEEP_TICKS == 0:
                await self._care(self._term, await self.presence.interrupt_orphans())
        except Exception as error:
            if not isinstance(error, BackendError | TimeoutError):
                log.exception("leadership.failed")
            self._ready = False
            self.presence.lost()
            self.metrics.backend_error("leadership")
            log.warning("backend.unreachable", error=str(error) or type(error).__name__)
            if self.leadership.lapsed():
                self.leadership.step_down()
                self._end_term("lease expired while the backend was unreachable")
            return
        self._ready = True
        self.presence.reached(started)
        self.metrics.backend_ok(True)
        self.metrics.heartbeat.set(time.time())
        if self.leadership.leading:
            self.metrics.set_job_counts(Counter(view.state for view in self.catalog.views()))

    # -- terms -------------------------------------------------------------------------------
    def _begin_term(self) -> None:
        """Lead: start the term in the background while the ticks keep renewing the lease.

        Starting on a store of many jobs takes a while; the lease must not lapse meanwhile.
        """
        log.info("leader.promoted", instance=self.instance_id)
        self.metrics.set_leader(True)
        self._promotion = asyncio.create_task(
            self._start_term(self.leadership.term, self._promotion)
        )

    async def _start_term(self, number: int, previous: asyncio.Task[None] | None) -> None:
        """Build, publish and resume the term ``number``, unless it ends first.

        Terms start one after another: a start-up that outlived its term is done
        (and has cleaned up after itself) before the next one touches the catalog.
        """
        assert self._loop is not None
        if previous is not None:
            await previous
        term = LeaderTerm(
            settings=self.settings,
            backend=self.backend,
            registry=self.registry,
            catalog=self.catalog,
            runner=self.runner,
            metrics=self.metrics,
            may_run=self.leadership.may_run,
            loop=self._loop,
        )
        try:
            interrupted = await self.presence.interrupt_orphans()
            await self._loop_run(term.prepare)
            if self.leadership.in_term(number):
                await self._loop_run(term.publish)
                await self._care(term, interrupted)
        except Exception as error:
            log.error("leader.start_failed", error=str(error), error_type=type(error).__name__)
            term.stop()
            if self.leadership.in_term(number):
                self.leadership.step_down()
                self._end_term("could not start the scheduler engine")
            return
        if not self.leadership.in_term(number):
            # Demoted while starting: this term's engine must never run a job, and what
            # it published belongs to no term.
            term.stop()
            self.catalog.clear()
            return
        term.resume()
        self._term = term

    async def _care(self, term: LeaderTerm, interrupted: list[Run]) -> None:
        """The leader's care of runs on workers: retries of the interrupted, missed runs."""
        if self.runner.queue is not None:
            await self._io(term.care_for_queued, self.runner.queue, interrupted)

    def _end_term(self, reason: str) -> None:
        log.warning("leader.demoted", instance=self.instance_id, reason=reason)
        self.metrics.set_leader(False)
        self._stop_term()
        self.catalog.clear()

    def _stop_term(self) -> None:
        term, self._term = self._term, None
        if term is not None:
            term.stop()

    async def _shutdown(self) -> None:
        """SIGTERM: no new runs, hand leadership over at once, drain, record, leave."""
        log.info("scheduler.stopping", instance=self.instance_id)
        leading = self.leadership.leading
        self.leadership.step_down()  # a term still starting discards its engine
        term, self._term = self._term, None
        if term is not None:
            term.stop()
        try:
            if leading:
                await self.leadership.release()
                self.metrics.set_leader(False)
        except (BackendError, TimeoutError) as error:
            log.warning("shutdown.backend_unreachable", error=str(error))
        # Heartbeats go on while draining, so the next leader leaves our runs alone.
        heartbeat = asyncio.create_task(self.presence.heartbeat_while_stopping())
        interrupted = await self.runner.drain(self.settings.shutdown_grace_seconds)
        heartbeat.cancel()
        if interrupted:
            log.warning("shutdown.interrupted", runs=interrupted)
        saved = await self._loop_run(self.writer.stop, WRITER_FLUSH_SECONDS)
        try:
            await self._io(self.backend.remove_instance, self.instance_id)
        except (BackendError, TimeoutError) as error:
            log.warning("shutdown.backend_unreachable", error=str(error))
        if term is not None:
            await self._loop_run(term.join)
        if self.http is not None:
            self.http.stop()
        self.loop_monitor.stop()
        self._io_pool.shutdown(wait=False, cancel_futures=True)
        self._job_pool.shutdown(wait=False, cancel_futures=True)
        self.backend.close()
        log.info("scheduler.stopped", instance=self.instance_id, history_saved=saved)

    # -- health ------------------------------------------------------------------------------
    def _alive(self) -> tuple[bool, dict[str, Any]]:
        stalled = time.monotonic() - self._last_tick > max(30.0, self._lease * 3)
        return not stalled, {"status": "stalled" if stalled else "alive", "role": self.role}

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        body = {"ready": self._ready, "role": self.role, "instance": self.instance_id}
        return self._ready, body

    # -- helpers -----------------------------------------------------------------------------
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
