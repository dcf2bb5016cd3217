"""The scheduler's Prometheus metrics, registered on a registry passed in.

Every metric is described for operators in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from sundial.job_series import JobSeries
from sundial.models import FINAL_OUTCOMES, JobState, JobView, Outcome, Run


def process_registry() -> CollectorRegistry:
    """A registry with the ``process_*`` metrics that the memory and restart alerts use."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class SchedulerMetrics:
    """Scheduler metrics; per-job series exist at 0 from the moment a job is known.

    The per-job series live in :class:`~sundial.job_series.JobSeries` (a few numbers per
    job); :meth:`exposition` renders the registry with them for ``/metrics``.
    """

    def __init__(self, registry: CollectorRegistry, *, instance_id: str, backend: str) -> None:
        self.instance_id = instance_id
        self.backend = backend
        self.registry = registry

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
        self.series = JobSeries()
        registry.register(self.series)
        for state in JobState:
            self.jobs.labels(state.value).set(0)
        self.backend_up.labels(backend).set(0)
        self.leader.labels(instance_id).set(0)

    def exposition(self) -> Iterator[bytes]:
        """The registry in the text format, in chunks; per-job series without sample objects."""
        with self.series.rendered_apart():
            yield generate_latest(self.registry)
        yield from self.series.text()

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
        info = (view.id, view.name, view.trigger_text, "true" if view.options.critical else "false")
        record = self.series.add(info)
        record.info = info
        record.timeout = float(view.options.timeout_seconds or 0)
        record.expected_interval = (
            float(view.expected_interval_seconds) if view.expected_interval_seconds else None
        )
        record.next_run = view.next_run_time.timestamp() if view.next_run_time else None

    def set_next_run(self, job_id: str, timestamp: float | None) -> None:
        """A paused job has no next run; an absent series keeps overdue alerts quiet."""
        if (record := self.series.jobs.get(job_id)) is not None:
            record.next_run = timestamp

    def job_removed(self, job_id: str) -> None:
        self.series.remove(job_id)

    def forget_jobs(self) -> None:
        """Drop every per-job series (when this instance stops leading)."""
        self.series.clear()
        for state in JobState:
            self.jobs.labels(state.value).set(0)

    def set_job_counts(self, counts: dict[JobState, int]) -> None:
        for state in JobState:
            self.jobs.labels(state.value).set(counts.get(state, 0))

    def run_started(self, run: Run) -> None:
        record = self.series.jobs.get(run.job_id)
        if record is None or run.started_at is None:
            return
        if run.attempt == 1:
            lag = (run.started_at - run.scheduled_time).total_seconds()
            record.observe_lag(max(lag, 0.0))
        record.running = [*(record.running or ()), run.started_at.timestamp()]

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
        record = self.series.jobs.get(run.job_id)
        if record is None:
            return
        if final and (index := _OUTCOME_INDEX.get(run.outcome)) is not None:
            record.runs[index] += 1
        if was_running and run.started_at is not None:
            if not still_running:
                self.run_stopped(run)
            if run.duration_seconds is not None:
                record.observe_duration(run.duration_seconds)
        if not final:
            return
        finished = (run.finished_at or run.scheduled_time).timestamp()
        if run.outcome is Outcome.SUCCESS:
            record.last_success = finished
        elif run.outcome in (Outcome.FAILURE, Outcome.TIMEOUT):
            record.last_failure = finished

    def run_stopped(self, run: Run) -> None:
        """The work of ``run`` is no longer executing."""
        record = self.series.jobs.get(run.job_id)
        if record is None or not record.running or run.started_at is None:
            return
        starts = list(record.running)
        started = run.started_at.timestamp()
        if started in starts:
            starts.remove(started)
        record.running = starts or None

    def loop_blocked(self, job_id: str, seconds: float) -> None:
        """An async run of ``job_id`` held the event loop for ``seconds``."""
        if (record := self.series.jobs.get(job_id)) is not None:
            record.blocked += seconds

    def restore_last(self, job_id: str, success: float | None, failure: float | None) -> None:
        """Seed last success/failure from history, so a restart does not reset them."""
        record = self.series.jobs.get(job_id)
        if record is None:
            return
        if success:
            record.last_success = success
        if failure:
            record.last_failure = failure


_OUTCOME_INDEX: dict[Outcome, int] = {outcome: i for i, outcome in enumerate(FINAL_OUTCOMES)}
