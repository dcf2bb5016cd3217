"""The scheduler's Prometheus metrics, registered on a registry passed in.

Every metric is described for operators in ``docs/metrics.md``.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from sundial.models import FINAL_OUTCOMES, JobState, JobView, Outcome, Run


def process_registry() -> CollectorRegistry:
    """A registry with the ``process_*`` metrics that the memory and restart alerts use."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class SchedulerMetrics:
    """Scheduler metrics; per-job series exist at 0 from the moment a job is known."""

    def __init__(self, registry: CollectorRegistry, *, instance_id: str, backend: str) -> None:
        self.instance_id = instance_id
        self.backend = backend
        self._jobs: set[str] = set()

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        self.build_info = gauge("sundial_build_info", "Sundial version", ("version",))
        self.leader = gauge("sundial_scheduler_leader", "1 if this instance leads", ("instance",))
        self.heartbeat = gauge(
            "sundial_scheduler_heartbeat_timestamp_seconds", "Last successful heartbeat"
        )
        self.backend_up = gauge("sundial_backend_up", "1 if the backend answers", ("backend",))
        self.backend_errors = Counter(
            "sundial_backend_errors",
            "Failed backend operations",
            ("operation",),
            registry=registry,
        )
        self.jobs = gauge("sundial_jobs", "Jobs by state", ("state",))
        self.job_info = gauge(
            "sundial_job_info", "Job metadata", ("job_id", "name", "trigger", "critical")
        )
        self.next_run = gauge(
            "sundial_job_next_run_timestamp_seconds", "Next fire time", ("job_id",)
        )
        self.runs = Counter(
            "sundial_job_runs", "Runs by outcome", ("job_id", "outcome"), registry=registry
        )
        self.duration = Histogram(
            "sundial_job_duration_seconds",
            "Run duration",
            ("job_id",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.lag = Histogram(
            "sundial_job_lag_seconds",
            "Actual start minus scheduled time",
            ("job_id",),
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.running = gauge("sundial_job_running", "Runs in progress", ("job_id",))
        self.running_since = gauge(
            "sundial_job_running_since_timestamp_seconds",
            "Start of the oldest run in progress (0 when none)",
            ("job_id",),
        )
        self.last_success = gauge(
            "sundial_job_last_success_timestamp_seconds", "Last successful finish", ("job_id",)
        )
        self.last_failure = gauge(
            "sundial_job_last_failure_timestamp_seconds",
            "Last failed or timed-out finish",
            ("job_id",),
        )
        self.expected_interval = gauge(
            "sundial_job_expected_interval_seconds", "Usual time between fires", ("job_id",)
        )
        self.timeout = gauge("sundial_job_timeout_seconds", "Run timeout (0 = none)", ("job_id",))
        self._per_job = (
            self.next_run,
            self.duration,
            self.lag,
            self.running,
            self.running_since,
            self.last_success,
            self.last_failure,
            self.expected_interval,
            self.timeout,
        )
        self._info: dict[str, tuple[str, str, str, str]] = {}
        self._running_starts: dict[str, list[float]] = {}
        for state in JobState:
            self.jobs.labels(state.value).set(0)
        self.backend_up.labels(backend).set(0)
        self.leader.labels(instance_id).set(0)

    def set_version(self, version: str) -> None:
        self.build_info.labels(version).set(1)

    def set_leader(self, leading: bool) -> None:
        self.leader.labels(self.instance_id).set(1 if leading else 0)

    def backend_ok(self, ok: bool) -> None:
        self.backend_up.labels(self.backend).set(1 if ok else 0)

    def backend_error(self, operation: str) -> None:
        self.backend_errors.labels(operation).inc()
        self.backend_ok(False)

    def job_known(self, view: JobView) -> None:
        """Create or refresh every series of a job (at 0 for counts it has not seen)."""
        info = (view.id, view.name, view.trigger_text, str(view.options.critical).lower())
        old = self._info.get(view.id)
        if old is not None and old != info:
            self.job_info.remove(*old)
        self._info[view.id] = info
        self.job_info.labels(*info).set(1)
        if view.id not in self._jobs:
            self._jobs.add(view.id)
            for outcome in FINAL_OUTCOMES:
                self.runs.labels(view.id, outcome.value)
            for metric in (self.duration, self.lag, self.running, self.running_since):
                metric.labels(view.id)
            self.last_success.labels(view.id)
            self.last_failure.labels(view.id)
        self.timeout.labels(view.id).set(view.options.timeout_seconds or 0)
        if view.expected_interval_seconds:
            self.expected_interval.labels(view.id).set(view.expected_interval_seconds)
        else:
            _remove(self.expected_interval, view.id)
        self.set_next_run(view.id, view.next_run_time.timestamp() if view.next_run_time else None)

    def set_next_run(self, job_id: str, timestamp: float | None) -> None:
        if job_id not in self._jobs:
            return
        if timestamp is None:
            # A paused job has no next run; an absent series keeps overdue alerts quiet.
            _remove(self.next_run, job_id)
        else:
            self.next_run.labels(job_id).set(timestamp)

    def job_removed(self, job_id: str) -> None:
        self._jobs.discard(job_id)
        self._running_starts.pop(job_id, None)
        info = self._info.pop(job_id, None)
        if info is not None:
            self.job_info.remove(*info)
        for outcome in FINAL_OUTCOMES:
            _remove(self.runs, job_id, outcome.value)
        for metric in self._per_job:
            _remove(metric, job_id)

    def forget_jobs(self) -> None:
        """Drop every per-job series (when this instance stops leading)."""
        for job_id in list(self._jobs):
            self.job_removed(job_id)
        for state in JobState:
            self.jobs.labels(state.value).set(0)

    def set_job_counts(self, counts: dict[JobState, int]) -> None:
        for state in JobState:
            self.jobs.labels(state.value).set(counts.get(state, 0))

    def run_started(self, run: Run) -> None:
        if run.job_id not in self._jobs or run.started_at is None:
            return
        started = run.started_at.timestamp()
        if run.attempt == 1:
            lag = (run.started_at - run.scheduled_time).total_seconds()
            self.lag.labels(run.job_id).observe(max(lag, 0.0))
        starts = self._running_starts.setdefault(run.job_id, [])
        starts.append(started)
        self.running.labels(run.job_id).set(len(starts))
        self.running_since.labels(run.job_id).set(min(starts))

    def run_finished(
        self, run: Run, *, was_running: bool = True, final: bool = True, still_running: bool = False
    ) -> None:
        """Account for a finished attempt.

        ``was_running`` is False for missed and skipped fire times. Only the ``final``
        attempt of a fire time counts in ``sundial_job_runs_total`` and the last
        success/failure times: a failure that a retry then fixes pages nobody.
        ``still_running`` keeps a timed-out ``def`` job's thread counted as running
        until :meth:`run_stopped`.
        """
        job_id = run.job_id
        if job_id not in self._jobs:
            return
        if final:
            self.runs.labels(job_id, run.outcome.value).inc()
        if was_running and run.started_at is not None:
            if not still_running:
                self.run_stopped(run)
            if run.duration_seconds is not None:
                self.duration.labels(job_id).observe(run.duration_seconds)
        if not final:
            return
        finished = (run.finished_at or run.scheduled_time).timestamp()
        if run.outcome is Outcome.SUCCESS:
            self.last_success.labels(job_id).set(finished)
        elif run.outcome in (Outcome.FAILURE, Outcome.TIMEOUT):
            self.last_failure.labels(job_id).set(finished)

    def run_stopped(self, run: Run) -> None:
        """The work of ``run`` is no longer executing."""
        starts = self._running_starts.get(run.job_id)
        if run.job_id not in self._jobs or starts is None or run.started_at is None:
            return
        started = run.started_at.timestamp()
        if started in starts:
            starts.remove(started)
        self.running.labels(run.job_id).set(len(starts))
        self.running_since.labels(run.job_id).set(min(starts) if starts else 0)

    def restore_last(self, job_id: str, success: float | None, failure: float | None) -> None:
        """Seed last success/failure from history, so a restart does not reset them."""
        if job_id not in self._jobs:
            return
        if success:
            self.last_success.labels(job_id).set(success)
        if failure:
            self.last_failure.labels(job_id).set(failure)


def _remove(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
