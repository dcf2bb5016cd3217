"""``sundial-worker``: executes the runs the leader queued (``SUNDIAL_EXECUTOR=queue``).

A worker takes messages of its queues (``SUNDIAL_WORKER_QUEUES``) from the backend's task
engine, moves each run ``queued -> running`` only if it is still queued (a message
delivered twice, or a run the leader already gave up on, starts nothing), runs it under
the job's timeout and records the outcome like the scheduler does. A failed attempt
with retries left is queued again after its backoff, for any worker. The worker
heartbeats as an instance with role ``worker`` from a thread of its own, so that a job
blocking the event loop cannot make it look dead; on SIGTERM it takes no new messages,
lets running jobs finish within ``SUNDIAL_SHUTDOWN_GRACE_SECONDS``, records the rest
``interrupted`` and queues their next attempt.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Gauge

from sundial import __version__
from sundial.backends import Backend, BackendError, history, open_backend
from sundial.backends.queue import RunMessage
from sundial.config import (
    ConfigurationError,
    Settings,
    exit_on_configuration_error,
    load_settings,
)
from sundial.jobs import Registry
from sundial.logging import configure_logging
from sundial.metrics import SchedulerMetrics, process_registry
from sundial.models import InstanceRole, JobView, Outcome, Run, utcnow
from sundial_scheduler.execution import Executor, Invocation
from sundial_scheduler.http import HealthServer
from sundial_scheduler.jobs.maintenance import with_maintenance
from sundial_scheduler.lifecycle import StopSignals, instance_id, set_up_backend
from sundial_scheduler.loop_monitor import loop_monitor
from sundial_scheduler.main import load_job_modules
from sundial_scheduler.presence import Presence
from sundial_scheduler.writer import BackendWriter

log = structlog.get_logger("sundial.worker")
T = TypeVar("T")

IO_THREADS = 4
WRITER_FLUSH_SECONDS = 10.0


class WorkerMetrics(SchedulerMetrics):
    """The scheduler's run metrics, for the runs this worker executes, and its load."""

    def __init__(self, registry: CollectorRegistry, *, instance_id: str, backend: str) -> None:
        super().__init__(registry, instance_id=instance_id, backend=backend)
        self.in_progress = Gauge(
            "sundial_worker_runs_in_progress", "Runs this worker executes now", registry=registry
        )


class SundialWorker:
    """One worker process. Build with :func:`create_worker`."""

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
        self.queue = self.backend.run_queue()
        self.metrics_registry = metrics_registry or process_registry()
        self.metrics = WorkerMetrics(
            self.metrics_registry, instance_id=self.instance_id, backend=self.backend.kind
        )
        self.metrics.set_version(__version__)
        self._job_pool = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="sundial-job")
        self._io_pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="sundial-io")
        self.writer = BackendWriter(self.backend, self.metrics.backend_error)
        self.loop_monitor = loop_monitor(settings, self.metrics)
        self._executor = Executor(
            backend=self.backend,
            writer=self.writer,
            metrics=self.metrics,
            job_pool=self._job_pool,
            shutdown_reason="worker shut down",
            loop_monitor=self.loop_monitor,
        )
        self.presence = Presence(
            self.backend,
            instance_id=self.instance_id,
            started_at=utcnow(),
            lease_seconds=settings.leader_lease_seconds,
            io=self._io,
            queues=settings.worker_queues,
        )
        self._known_jobs: set[str] = set()
        self._ready = False
        self._alive_at = time.monotonic()
        self._beating = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.http: HealthServer | None = None

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
            port=self.settings.worker_metrics_port,
            exposition=self.metrics.exposition,
            alive=self._alive,
            ready=self._readiness,
            port_setting="SUNDIAL_WORKER_METRICS_PORT",
        )
        self.http.start()
        log.info(
            "worker.starting",
            instance=self.instance_id,
            backend=self.backend.kind,
            queues=",".join(self.settings.worker_queues),
            concurrency=self.settings.worker_concurrency,
            metrics_port=self.http.port,
        )
        heartbeat = threading.Thread(target=self._heartbeat, name="sundial-heartbeat")
        if await set_up_backend(
            self.backend, stop=self._stop, io=self._io, on_error=self.metrics.backend_error
        ):
            self.writer.start()
            heartbeat.start()
            await self.queue.consume(
                queues=self.settings.worker_queues,
                concurrency=self.settings.worker_concurrency,
                handle=self._handle,
                stop=self._stop,
                grace=self.settings.shutdown_grace_seconds,
            )
        await self._shutdown(heartbeat)
        return 0

    async def _handle(self, message: RunMessage) -> None:
        """Run the attempt a message names, if it is still queued."""
        view: JobView | None = await self._io(self.backend.get_job, message.job_id)
        run = await self._start(message)
        if run is None:
            log.info("run.not_queued", job_id=message.job_id, run_id=message.run_id)
            return
        func = self.registry.functions.get(view.func) if view is not None else None
        if view is None or func is None:
            self._unknown(run, view)
            return
        if view.id not in self._known_jobs:
            self._known_jobs.add(view.id)
            self.metrics.job_known(view)
        last = run.attempt >= 1 + view.options.retries
        self.metrics.in_progress.inc()
        try:
            finished = await self._executor.attempt(
                Invocation(view, func, (), view.kwargs), run, last=last
            )
        except asyncio.CancelledError:
            await self._retry(run, view)  # interrupted by shutdown: another worker goes on
            raise
        finally:
            self.metrics.in_progress.dec()
        if finished.outcome is not Outcome.SUCCESS:
            await self._retry(finished, view)

    async def _start(self, message: RunMessage) -> Run | None:
        """The ``queued -> running`` transition; a shutdown that cuts in waits for its end.

        The transition commits on an I/O thread whatever happens to this task, so a
        cancellation must not leave a run this worker started ``running``: it is recorded
        ``interrupted`` and its next attempt queued, as for a run cut short.
        """
        starting = asyncio.ensure_future(
            self._io(self.backend.start_run, message.run_id, self.instance_id)
        )
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            run = await starting
            if run is not None:
                self._executor.interrupt(run)
                view = await self._io(self.backend.get_job, message.job_id)
                if view is not None:
                    await self._retry(run, view)
            raise

    async def _retry(self, run: Run, view: JobView) -> None:
        nxt = history.next_attempt(run, view.options, self.instance_id)
        if nxt is None:
            return
        try:
            await self._io(self.backend.queue_runs, [nxt])
        except BackendError as error:
            # The attempt is lost only if the leader's sweep cannot see it either: it
            # retries runs interrupted on dead workers, not failures seen here.
            self.metrics.backend_error("queue_retry")
            log.error("run.retry_not_queued", job_id=run.job_id, error=str(error))
            return
        log.info("run.retrying", job_id=run.job_id, attempt=nxt.attempt, due_at=str(nxt.due_at))

    def _unknown(self, run: Run, view: JobView | None) -> None:
        what = f"job {run.job_id!r} is not in the catalog"
        if view is not None:
            what = (
                f"function {view.func} of job {run.job_id!r} is not registered on this "
                "worker; list its module in SUNDIAL_JOB_MODULES"
            )
        failed = run.finish(Outcome.FAILURE, error=LookupError(what))
        self._executor.done(failed, time.perf_counter(), final=True)

    def _heartbeat(self) -> None:
        """Heartbeat on a thread: an async job blocking the loop must not look like death."""
        instance = self.presence.instance(InstanceRole.WORKER)
        while True:
            try:
                self.backend.heartbeat(instance)
            except BackendError as error:
                self._ready = False
                self.metrics.backend_error("heartbeat")
                log.warning("backend.unreachable", error=str(error))
            else:
                self._ready = True
                self._alive_at = time.monotonic()
                self.metrics.backend_ok(True)
                self.metrics.heartbeat.set(time.time())
            if self._beating.wait(self.presence.tick_seconds):
                return

    async def _shutdown(self, heartbeat: threading.Thread) -> None:
        log.info("worker.stopping", instance=self.instance_id)
        self._beating.set()
        if heartbeat.is_alive():
            await self._loop_run(heartbeat.join, self.presence.tick_seconds * 3)
        saved = await self._loop_run(self.writer.stop, WRITER_FLUSH_SECONDS)
        try:
            await self._io(self.backend.remove_instance, self.instance_id)
        except (BackendError, TimeoutError) as error:
            log.warning("shutdown.backend_unreachable", error=str(error))
        if self.http is not None:
            self.http.stop()
        self.loop_monitor.stop()
        self._io_pool.shutdown(wait=False, cancel_futures=True)
        self._job_pool.shutdown(wait=False, cancel_futures=True)
        self.backend.close()
        log.info("worker.stopped", instance=self.instance_id, history_saved=saved)

    def _alive(self) -> tuple[bool, dict[str, Any]]:
        lease = self.settings.leader_lease_seconds
        stalled = time.monotonic() - self._alive_at > max(30.0, lease * 3)
        return not stalled, {"status": "stalled" if stalled else "alive", "role": "worker"}

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        return self._ready, {"ready": self._ready, "role": "worker", "instance": self.instance_id}

    async def _io(self, func: Callable[..., T], *args: Any) -> T:
        assert self._loop is not None
        call = self._loop.run_in_executor(self._io_pool, func, *args)
        return await asyncio.wait_for(call, timeout=max(self.settings.leader_lease_seconds / 2, 5))

    async def _loop_run(self, func: Callable[..., T], *args: Any) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(None, func, *args)


def create_worker(settings: Settings | None = None) -> SundialWorker:
    """The configured worker, with the job modules imported (not yet running)."""
    settings = settings or load_settings()
    return SundialWorker(settings, registry=load_job_modules(settings.job_modules))


def main() -> None:
    settings = load_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level, write_behind=True)
    try:
        worker = create_worker(settings)
    except BackendError as error:
        raise SystemExit(f"invalid configuration: SUNDIAL_BACKEND_URL: {error}") from None
    try:
        code = asyncio.run(worker.run())
    except ConfigurationError as error:
        exit_on_configuration_error(error)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
