"""The API's Prometheus metrics: HTTP traffic by route template, and catalog gauges.

Catalog gauges are read from the backend when Prometheus scrapes, so they stay true
while every scheduler is down. A reading costs a paged catalog scan, one
``run_summaries()`` and one ``list_instances()`` (and, with the queue executor, one
``queued_by_queue()``), and is reused for :data:`CATALOG_CACHE_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sundial.backends import Backend
from sundial.constants import dead_after
from sundial.models import Instance, InstanceRole, JobState, JobView, QueueDepth, RunSummary
from sundial_api.views import utc

log = structlog.get_logger(__name__)

CATALOG_CACHE_SECONDS = 5.0
UNMATCHED_ROUTE = "unmatched"


class HttpMetrics:
    """Request count and latency, labelled with the route template."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "sundial_http_requests_total",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "sundial_http_request_duration_seconds",
            "Time to the response headers, by route template and method",
            ["route", "method"],
            registry=registry,
        )


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Counts every HTTP response; latency is measured to the response headers so that
    long-lived event streams do not distort it."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and not status:
                status.append(int(message["status"]))
                self._observe(scope, status[0], started)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if not status:
                self._observe(scope, 500, started)
            raise

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = route_template(scope)
        method = str(scope.get("method", ""))
        self.metrics.requests.labels(route, method, str(status)).inc()
        self.metrics.duration.labels(route, method).observe(time.perf_counter() - started)


@dataclass(frozen=True)
class CatalogReading:
    up: bool
    jobs: list[JobView] = field(default_factory=list)
    summaries: dict[str, RunSummary] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    #: None with the local executor: no run waits for a worker there
    queued: dict[str, QueueDepth] | None = None


def read_catalog(backend: Backend, *, workers: bool) -> CatalogReading:
    try:
        jobs = list(backend.iter_jobs())
        summaries = backend.run_summaries() if jobs else {}
        instances = backend.list_instances()
        queued = backend.queued_by_queue() if workers else None
    except Exception as error:  # any failure means "backend down" for this scrape
        log.warning("catalog_read_failed", error=str(error))
        return CatalogReading(up=False)
    return CatalogReading(
        up=True, jobs=jobs, summaries=summaries, instances=instances, queued=queued
    )


class CatalogCollector(Collector):
    """``sundial_catalog_*`` gauges, computed at scrape time from a cached reading.

    ``sundial_catalog_scheduler_heartbeat_age_seconds`` is the age of the freshest
    heartbeat of any scheduler instance; it is absent when no scheduler is recorded (and
    while the backend is down), so alert on ``absent(...) or ... > N``.

    With the queue executor (``workers=True``) it also counts live workers and, per
    workers' queue, the runs waiting and the age of the one waiting longest; a queue a
    live worker serves shows 0 waiting runs rather than no series. With the local
    executor these are absent, so that no worker alert can fire where no worker belongs.
    """

    def __init__(
        self,
        backend: Callable[[], Backend | None],
        *,
        workers: bool = False,
        lease_seconds: float = 10.0,
        cache_seconds: float = CATALOG_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._workers = workers
        self._dead_after = dead_after(lease_seconds)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._reading: CatalogReading | None = None
        self._read_at = 0.0

    def describe(self) -> Iterable[Metric]:
        return []

    def reading(self) -> CatalogReading:
        with self._lock:
            now = self._clock()
            if self._reading is None or now - self._read_at >= self._cache_seconds:
                backend = self._backend()
                self._reading = (
                    read_catalog(backend, workers=self._workers)
                    if backend
                    else CatalogReading(up=False)
                )
                self._read_at = now
            return self._reading

    def collect(self) -> Iterable[Metric]:
        reading = self.reading()
        up = GaugeMetricFamily(
            "sundial_catalog_backend_up", "1 if the API can read the backend, else 0"
        )
        up.add_metric([], 1.0 if reading.up else 0.0)
        yield up
        if not reading.up:
            return
        yield from _job_gauges(reading)
        now = datetime.now(UTC)
        schedulers = [i for i in reading.instances if i.role is not InstanceRole.WORKER]
        if schedulers:
            freshest = max(utc(instance.last_seen) for instance in schedulers)
            age = GaugeMetricFamily(
                "sundial_catalog_scheduler_heartbeat_age_seconds",
                "Seconds since the freshest heartbeat of any scheduler instance",
            )
            age.add_metric([], max(0.0, (now - freshest).total_seconds()))
            yield age
        if reading.queued is not None:
            yield from _worker_gauges(reading.instances, reading.queued, now, self._dead_after)


def _job_gauges(reading: CatalogReading) -> Iterable[Metric]:
    next_run = GaugeMetricFamily(
        "sundial_catalog_job_next_run_timestamp_seconds",
        "Next fire time of each scheduled job, from the catalog",
        labels=["job_id"],
    )
    last_success = GaugeMetricFamily(
        "sundial_catalog_job_last_success_timestamp_seconds",
        "Finish time of each job's last successful run",
        labels=["job_id"],
    )
    failures = GaugeMetricFamily(
        "sundial_catalog_job_consecutive_failures",
        "Failed or timed-out runs of each job since its last success",
        labels=["job_id"],
    )
    overdue_after = GaugeMetricFamily(
        "sundial_catalog_job_overdue_after_seconds",
        "How long past its next run time each job may go without running",
        labels=["job_id"],
    )
    for job in reading.jobs:
        if job.state is JobState.SCHEDULED and job.next_run_time is not None:
            next_run.add_metric([job.id], utc(job.next_run_time).timestamp())
        summary = reading.summaries.get(job.id)
        if summary is not None and summary.last_success_at is not None:
            last_success.add_metric([job.id], utc(summary.last_success_at).timestamp())
        failures.add_metric([job.id], float(summary.consecutive_failures if summary else 0))
        overdue_after.add_metric([job.id], job.overdue_after_seconds())
    return (next_run, last_success, failures, overdue_after)


def _worker_gauges(
    instances: Iterable[Instance],
    queued: dict[str, QueueDepth],
    now: datetime,
    dead_after: float,
) -> Iterable[Metric]:
    live = [
        instance
        for instance in instances
        if instance.role is InstanceRole.WORKER
        and (now - utc(instance.last_seen)).total_seconds() <= dead_after
    ]
    workers = GaugeMetricFamily(
        "sundial_catalog_workers", "Workers whose heartbeat is recent, from the backend"
    )
    workers.add_metric([], float(len(live)))
    waiting = GaugeMetricFamily(
        "sundial_catalog_queued_runs",
        "Runs waiting for a worker, by workers' queue",
        labels=["queue"],
    )
    oldest = GaugeMetricFamily(
        "sundial_catalog_oldest_queued_run_age_seconds",
        "Seconds since the run waiting longest in each queue became due",
        labels=["queue"],
    )
    served = {queue for instance in live for queue in instance.queues}
    for queue in sorted(served | set(queued)):
        depth = queued.get(queue)
        waiting.add_metric([queue], float(depth.runs if depth else 0))
        if depth is not None:
            age = (now - utc(depth.oldest_due)).total_seconds()
            oldest.add_metric([queue], max(0.0, age))
    return (workers, waiting, oldest)
