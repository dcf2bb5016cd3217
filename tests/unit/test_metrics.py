"""Scheduler metrics on a fresh registry: series lifecycle, counts and gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sundial.metrics import SchedulerMetrics
from sundial.models import FINAL_OUTCOMES, JobOptions, JobState, JobView, Outcome, Run
from sundial.triggers import CronSpec, DateSpec, IntervalSpec

T0 = datetime(2025, 6, 1, 12, tzinfo=UTC)
NEXT_RUN = T0 + timedelta(minutes=15)

PER_JOB_GAUGES = (
    "sundial_job_next_run_timestamp_seconds",
    "sundial_job_running",
    "sundial_job_running_since_timestamp_seconds",
    "sundial_job_last_success_timestamp_seconds",
    "sundial_job_last_failure_timestamp_seconds",
    "sundial_job_expected_interval_seconds",
    "sundial_job_timeout_seconds",
    "sundial_job_duration_seconds_count",
    "sundial_job_lag_seconds_count",
)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> SchedulerMetrics:
    return SchedulerMetrics(registry, instance_id="sched-1", backend="fake")


def make_view(job_id: str = "sync", **changes: Any) -> JobView:
    trigger = changes.pop("trigger", IntervalSpec(seconds=900))
    options = changes.pop("options", JobOptions(timeout_seconds=60, critical=True))
    return JobView(
        id=job_id,
        name=changes.pop("name", "Sync"),
        func="jobs:sync",
        trigger=trigger,
        trigger_text=trigger.describe(),
        options=options,
        next_run_time=changes.pop("next_run_time", NEXT_RUN),
        expected_interval_seconds=changes.pop("expected_interval_seconds", 900),
        **changes,
    )


def make_run(job_id: str = "sync", **changes: Any) -> Run:
    values: dict[str, Any] = {"job_id": job_id, "scheduled_time": T0, "started_at": T0}
    values.update(changes)
    return Run(**values)


def finished(run: Run, outcome: Outcome, seconds: float = 2.0) -> Run:
    assert run.started_at is not None
    end = run.started_at + timedelta(seconds=seconds)
    return run.model_copy(
        update={"outcome": outcome, "finished_at": end, "duration_seconds": seconds}
    )


def value(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


def runs_total(registry: CollectorRegistry, job_id: str, outcome: Outcome) -> float | None:
    return value(registry, "sundial_job_runs_total", job_id=job_id, outcome=outcome.value)


def series(registry: CollectorRegistry, name: str, job_id: str) -> list[dict[str, str]]:
    """Label sets of every sample called ``name`` for ``job_id``."""
    return [
        sample.labels
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name and sample.labels.get("job_id") == job_id
    ]


# -- a job becomes known ----------------------------------------------------------------


def test_every_outcome_series_exists_at_zero_once_a_job_is_known(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    assert runs_total(registry, "sync", Outcome.SUCCESS) is None

    metrics.job_known(make_view())

    for outcome in FINAL_OUTCOMES:
        assert runs_total(registry, "sync", outcome) == 0.0
    assert runs_total(registry, "sync", Outcome.RUNNING) is None
    assert value(registry, "sundial_job_running", job_id="sync") == 0.0
    assert value(registry, "sundial_job_last_success_timestamp_seconds", job_id="sync") == 0.0
    assert value(registry, "sundial_job_last_failure_timestamp_seconds", job_id="sync") == 0.0
    assert value(registry, "sundial_job_duration_seconds_count", job_id="sync") == 0.0


def test_job_known_publishes_info_next_run_interval_and_timeout(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())

    info = {"job_id": "sync", "name": "Sync", "trigger": "every 15 minutes", "critical": "true"}
    assert value(registry, "sundial_job_info", **info) == 1.0
    assert value(registry, "sundial_job_next_run_timestamp_seconds", job_id="sync") == (
        NEXT_RUN.timestamp()
    )
    assert value(registry, "sundial_job_expected_interval_seconds", job_id="sync") == 900
    assert value(registry, "sundial_job_timeout_seconds", job_id="sync") == 60


def test_a_job_without_timeout_reports_zero(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view(options=JobOptions()))

    assert value(registry, "sundial_job_timeout_seconds", job_id="sync") == 0.0
    (labels,) = series(registry, "sundial_job_info", "sync")
    assert labels["critical"] == "false"


def test_job_counts_by_state(metrics: SchedulerMetrics, registry: CollectorRegistry) -> None:
    assert value(registry, "sundial_jobs", state="paused") == 0.0

    metrics.set_job_counts({JobState.SCHEDULED: 4, JobState.PAUSED: 1})

    assert value(registry, "sundial_jobs", state="scheduled") == 4.0
    assert value(registry, "sundial_jobs", state="paused") == 1.0


def test_instance_gauges(metrics: SchedulerMetrics, registry: CollectorRegistry) -> None:
    assert value(registry, "sundial_scheduler_leader", instance="sched-1") == 0.0
    assert value(registry, "sundial_backend_up", backend="fake") == 0.0

    metrics.set_leader(True)
    metrics.backend_ok(True)
    metrics.set_version("1.2.3")

    assert value(registry, "sundial_scheduler_leader", instance="sched-1") == 1.0
    assert value(registry, "sundial_backend_up", backend="fake") == 1.0
    assert value(registry, "sundial_build_info", version="1.2.3") == 1.0

    metrics.backend_error("save_runs")

    assert value(registry, "sundial_backend_up", backend="fake") == 0.0
    assert value(registry, "sundial_backend_errors_total", operation="save_runs") == 1.0


# -- runs -------------------------------------------------------------------------------


def test_runs_are_counted_by_outcome(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())

    for outcome in (Outcome.SUCCESS, Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT):
        run = make_run()
        metrics.run_started(run)
        metrics.run_finished(finished(run, outcome))
    metrics.run_finished(make_run(outcome=Outcome.MISSED, started_at=None), was_running=False)

    assert runs_total(registry, "sync", Outcome.SUCCESS) == 2.0
    assert runs_total(registry, "sync", Outcome.FAILURE) == 1.0
    assert runs_total(registry, "sync", Outcome.TIMEOUT) == 1.0
    assert runs_total(registry, "sync", Outcome.MISSED) == 1.0
    assert runs_total(registry, "sync", Outcome.SKIPPED) == 0.0
    assert value(registry, "sundial_job_duration_seconds_count", job_id="sync") == 4.0
    assert value(registry, "sundial_job_duration_seconds_sum", job_id="sync") == 8.0


def test_only_the_final_attempt_counts(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())
    first = make_run(attempt=1)
    metrics.run_started(first)
    metrics.run_finished(finished(first, Outcome.FAILURE), final=False)

    assert runs_total(registry, "sync", Outcome.FAILURE) == 0.0
    assert value(registry, "sundial_job_last_failure_timestamp_seconds", job_id="sync") == 0.0
    assert value(registry, "sundial_job_running", job_id="sync") == 0.0

    second = make_run(attempt=2, started_at=T0 + timedelta(seconds=30))
    metrics.run_started(second)
    metrics.run_finished(finished(second, Outcome.SUCCESS))

    assert runs_total(registry, "sync", Outcome.FAILURE) == 0.0
    assert runs_total(registry, "sync", Outcome.SUCCESS) == 1.0
    # Both attempts took time; only the first start of a fire time measures lag.
    assert value(registry, "sundial_job_duration_seconds_count", job_id="sync") == 2.0
    assert value(registry, "sundial_job_lag_seconds_count", job_id="sync") == 1.0


def test_running_gauges_go_up_and_back_to_zero(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())
    early = make_run(started_at=T0)
    late = make_run(started_at=T0 + timedelta(seconds=40))

    metrics.run_started(early)
    metrics.run_started(late)

    assert value(registry, "sundial_job_running", job_id="sync") == 2.0
    assert value(registry, "sundial_job_running_since_timestamp_seconds", job_id="sync") == (
        T0.timestamp()
    )

    metrics.run_finished(finished(early, Outcome.SUCCESS))

    assert value(registry, "sundial_job_running", job_id="sync") == 1.0
    assert value(registry, "sundial_job_running_since_timestamp_seconds", job_id="sync") == (
        late.started_at.timestamp()  # type: ignore[union-attr]
    )

    metrics.run_finished(finished(late, Outcome.FAILURE))

    assert value(registry, "sundial_job_running", job_id="sync") == 0.0
    assert value(registry, "sundial_job_running_since_timestamp_seconds", job_id="sync") == 0.0


def test_lag_is_start_minus_scheduled_time(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())

    metrics.run_started(make_run(started_at=T0 + timedelta(seconds=3)))

    assert value(registry, "sundial_job_lag_seconds_sum", job_id="sync") == 3.0
    assert value(registry, "sundial_job_lag_seconds_bucket", job_id="sync", le="2.5") == 0.0
    assert value(registry, "sundial_job_lag_seconds_bucket", job_id="sync", le="5.0") == 1.0


def test_last_success_and_failure_timestamps(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())
    ok = finished(make_run(), Outcome.SUCCESS, seconds=5)
    timed_out = finished(make_run(started_at=T0 + timedelta(minutes=1)), Outcome.TIMEOUT)
    skipped = make_run(
        started_at=None, outcome=Outcome.SKIPPED, finished_at=T0 + timedelta(minutes=2)
    )

    metrics.run_finished(ok)
    metrics.run_finished(timed_out)
    metrics.run_finished(skipped, was_running=False)

    assert value(registry, "sundial_job_last_success_timestamp_seconds", job_id="sync") == (
        ok.finished_at.timestamp()  # type: ignore[union-attr]
    )
    assert value(registry, "sundial_job_last_failure_timestamp_seconds", job_id="sync") == (
        timed_out.finished_at.timestamp()  # type: ignore[union-attr]
    )


def test_restore_last_seeds_timestamps_after_a_restart(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())

    metrics.restore_last("sync", success=1_700_000_000.0, failure=None)

    assert value(registry, "sundial_job_last_success_timestamp_seconds", job_id="sync") == (
        1_700_000_000.0
    )
    assert value(registry, "sundial_job_last_failure_timestamp_seconds", job_id="sync") == 0.0


# -- next run ---------------------------------------------------------------------------


def test_next_run_series_is_absent_while_paused(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())

    metrics.set_next_run("sync", None)

    assert value(registry, "sundial_job_next_run_timestamp_seconds", job_id="sync") is None

    metrics.set_next_run("sync", NEXT_RUN.timestamp())

    assert value(registry, "sundial_job_next_run_timestamp_seconds", job_id="sync") == (
        NEXT_RUN.timestamp()
    )


def test_a_job_known_while_paused_has_no_next_run(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view(next_run_time=None, state=JobState.PAUSED))

    assert value(registry, "sundial_job_next_run_timestamp_seconds", job_id="sync") is None
    assert runs_total(registry, "sync", Outcome.SUCCESS) == 0.0


# -- removal ----------------------------------------------------------------------------


def test_removing_a_job_removes_every_series(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view("sync"))
    metrics.job_known(make_view("report", name="Report"))
    run = make_run("sync")
    metrics.run_started(run)
    metrics.run_finished(finished(run, Outcome.FAILURE))

    metrics.job_removed("sync")

    for outcome in FINAL_OUTCOMES:
        assert runs_total(registry, "sync", outcome) is None
    for name in PER_JOB_GAUGES:
        assert value(registry, name, job_id="sync") is None, name
    assert series(registry, "sundial_job_info", "sync") == []
    # The other job is untouched.
    assert runs_total(registry, "report", Outcome.SUCCESS) == 0.0
    assert value(registry, "sundial_job_timeout_seconds", job_id="report") == 60


def test_a_removed_job_is_not_resurrected_by_late_events(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())
    run = make_run()
    metrics.run_started(run)
    metrics.job_removed("sync")

    metrics.run_finished(finished(run, Outcome.SUCCESS))
    metrics.set_next_run("sync", NEXT_RUN.timestamp())
    metrics.restore_last("sync", 1.0, 1.0)

    assert runs_total(registry, "sync", Outcome.SUCCESS) is None
    for name in PER_JOB_GAUGES:
        assert value(registry, name, job_id="sync") is None, name


def test_a_job_known_again_after_removal_starts_from_zero(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())
    metrics.run_finished(finished(make_run(), Outcome.SUCCESS))
    metrics.job_removed("sync")

    metrics.job_known(make_view())

    assert runs_total(registry, "sync", Outcome.SUCCESS) == 0.0
    assert len(series(registry, "sundial_job_info", "sync")) == 1


def test_forget_jobs_drops_every_job(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view("sync"))
    metrics.job_known(make_view("report", name="Report"))
    metrics.set_job_counts({JobState.SCHEDULED: 2})

    metrics.forget_jobs()

    for job_id in ("sync", "report"):
        assert runs_total(registry, job_id, Outcome.SUCCESS) is None
        assert series(registry, "sundial_job_info", job_id) == []
        for name in PER_JOB_GAUGES:
            assert value(registry, name, job_id=job_id) is None, name
    assert value(registry, "sundial_jobs", state="scheduled") == 0.0
    assert value(registry, "sundial_jobs", state="paused") == 0.0


# -- changes ----------------------------------------------------------------------------


def test_renaming_a_job_leaves_one_info_series(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view(name="Sync"))

    metrics.job_known(make_view(name="Inventory sync"))

    (labels,) = series(registry, "sundial_job_info", "sync")
    assert labels["name"] == "Inventory sync"
    old = {"job_id": "sync", "name": "Sync", "trigger": "every 15 minutes", "critical": "true"}
    assert value(registry, "sundial_job_info", **old) is None


def test_rescheduling_relabels_the_trigger_and_keeps_counts(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())
    metrics.run_finished(finished(make_run(), Outcome.SUCCESS))
    hourly = CronSpec(expression="0 * * * *")

    metrics.job_known(make_view(trigger=hourly, expected_interval_seconds=3600))

    (labels,) = series(registry, "sundial_job_info", "sync")
    assert labels["trigger"] == "cron '0 * * * *' (UTC)"
    assert value(registry, "sundial_job_expected_interval_seconds", job_id="sync") == 3600
    assert runs_total(registry, "sync", Outcome.SUCCESS) == 1.0


def test_rescheduling_to_a_one_off_drops_the_expected_interval(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    # A stale interval would make SundialJobNotSucceededRecently fire for a one-off job.
    metrics.job_known(make_view())
    once = DateSpec(run_at=T0 + timedelta(days=3))

    metrics.job_known(make_view(trigger=once, expected_interval_seconds=None))

    assert value(registry, "sundial_job_expected_interval_seconds", job_id="sync") is None


def test_changing_the_timeout_updates_the_gauge(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view())

    metrics.job_known(make_view(options=JobOptions(timeout_seconds=300, critical=True)))

    assert value(registry, "sundial_job_timeout_seconds", job_id="sync") == 300


# -- the /metrics text ------------------------------------------------------------------


def test_the_exposition_text_carries_the_same_samples_as_the_registry(
    metrics: SchedulerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_known(make_view("sync"))
    metrics.job_known(make_view("odd", name='A "quoted"\\name', expected_interval_seconds=None))
    metrics.set_next_run("odd", None)
    run = make_run("sync", started_at=T0 + timedelta(seconds=1))
    metrics.run_started(run)
    metrics.run_finished(finished(run, Outcome.SUCCESS, seconds=42))
    metrics.run_started(make_run("odd"))

    def samples(families: Any) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {
            (sample.name, tuple(sorted(sample.labels.items())), sample.value)
            for family in families
            for sample in family.samples
            if not sample.name.endswith("_created")
        }

    parsed = samples(text_string_to_metric_families(b"".join(metrics.exposition()).decode()))
    assert parsed == samples(registry.collect())
    assert ("sundial_job_duration_seconds_bucket", (("job_id", "sync"), ("le", "30.0")), 0.0) in (
        parsed
    )
    assert ("sundial_job_duration_seconds_bucket", (("job_id", "sync"), ("le", "120.0")), 1.0) in (
        parsed
    )
    info = (("critical", "true"), ("job_id", "odd"), ("name", 'A "quoted"\\name'))
    assert ("sundial_job_info", (*info, ("trigger", "every 15 minutes")), 1.0) in parsed
