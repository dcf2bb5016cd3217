#!/usr/bin/env python3
"""Sundial's Prometheus recording and alerting rules, as code.

Run ``uv run python deploy/prometheus/generate_rules.py`` to rewrite ``rules/sundial.yml``;
``tests/unit/test_prometheus_rules.py`` fails when the committed file differs from this
module's output. Selectors, limits, thresholds and links come from ``deploy/conventions.py``.

Conventions (explained for operators in docs/metrics.md):
- the Prometheus ``job`` label names the scrape job; Sundial's own label is ``job_id``;
- per-job metrics come from the current leader only, so job expressions aggregate
  ``by (job_id)`` and survive a fail-over (the ``instance`` label changes);
- run metrics come from the process that ran the run: the leader with the local
  executor, a worker with the queue executor, so run expressions read both
  (``Target.ran``) and aggregate them ``by (job_id)``;
- job alerts whose urgency depends on the job are emitted twice under one name:
  ``severity: critical`` for jobs declared ``critical=True``, ``warning`` otherwise;
- every alert has summary, description, runbook_url and dashboard_url annotations.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

# deploy/ is no package: this script runs by path, so it finds its sibling module there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import conventions as c

RULES_FILE = Path(__file__).with_name("rules") / "sundial.yml"


def _critical_jobs(scheduler: str) -> str:
    # `critical` is a property of a job's code; remember it for a day so that catalog-based
    # alerts keep their severity while every scheduler (the only exporter of job_info) is
    # down.
    return f'last_over_time(sundial_job_info{{{scheduler},critical="true"}}[1d])'


def _duration(seconds: float) -> str:
    """``seconds`` as Prometheus writes a duration in the largest whole unit: 5m, 1h, 30s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Tuning:
    """Thresholds and windows that end-to-end tests shrink; the defaults are production's.

    The committed rule file is always rendered with :data:`PRODUCTION`; a test renders
    ``render(build_groups(Tuning(...)), for_override="3s")`` into a file of its own.
    """

    heartbeat_stale_seconds: float = c.HEARTBEAT_STALE_SECONDS
    too_long_floor_seconds: float = c.TOO_LONG_FLOOR_SECONDS
    too_long_default_seconds: float = c.TOO_LONG_DEFAULT_SECONDS
    recording_interval: str = "1m"


PRODUCTION = Tuning()


@dataclass(frozen=True)
class Record:
    """A recording rule."""

    record: str
    expr: str
    comment: str = ""


@dataclass(frozen=True)
class Alert:
    """An alerting rule; ``summary`` and ``description`` are Go templates."""

    alert: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str = "0m"
    comment: str = ""
    dashboard_query: str = ""
    #: Where the links point; build_groups() sets the target's.
    links: c.Target = c.DEFAULT_TARGET

    @property
    def annotations(self) -> dict[str, str]:
        return {
            "summary": self.summary,
            "description": self.description,
            # The runbook's heading of each alert is its name; GitHub and the API's
            # rendering (route /runbook) both make its anchor the name in lower case.
            "runbook_url": f"{self.links.runbook_url}#{self.alert.lower()}",
            "dashboard_url": self.links.dashboard_url + self.dashboard_query,
        }


@dataclass(frozen=True)
class Group:
    name: str
    rules: Sequence[Record | Alert]
    interval: str = ""


JOB_DASHBOARD = "?var-job_id={{ $labels.job_id }}"


def by_criticality(alert: Alert, scheduler: str) -> list[Alert]:
    """The alert twice: critical for jobs declared critical, warning for the others."""
    inner = f"(\n{_indent(alert.expr.strip())}\n)"
    critical = _critical_jobs(scheduler)
    return [
        replace(alert, severity="critical", expr=f"{inner}\nand on (job_id) {critical}"),
        replace(alert, severity="warning", expr=f"{inner}\nunless on (job_id) {critical}"),
    ]


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def _limit_series(limits: Iterable[tuple[c.ScrapeJob, float]]) -> str:
    parts = [
        f'label_replace(vector({value}), "component", "{job.component}", "", "")'
        for job, value in limits
    ]
    return "\nor ".join(parts)


def recording_group(t: Tuning, target: c.Target) -> Group:
    """Recording rules shared by alerts and the dashboard."""
    return Group(
        name="sundial-recording",
        interval=t.recording_interval,
        rules=[
            Record(
                record="sundial_job:duration_seconds:p95_1d",
                expr=(
                    "histogram_quantile(0.95,\n"
                    "  sum by (job_id, le) ("
                    + target.ran(lambda s: f"rate(sundial_job_duration_seconds_bucket{{{s}}}[1d])")
                    + ")\n) > 0"
                ),
                comment="Usual duration; `> 0` drops the NaN of jobs that did not run in the day.",
            ),
            Record(
                record="sundial:memory_limit_bytes",
                expr=_limit_series((job, job.memory_limit_bytes) for job in c.LIMITED),
                comment="Memory limits per component (deploy/conventions.py).",
            ),
            Record(
                record="sundial:cpu_limit_cores",
                expr=_limit_series((job, job.cpu_limit_cores) for job in c.LIMITED),
                comment="CPU limits per component (deploy/conventions.py).",
            ),
        ],
    )


def scheduler_group(t: Tuning, target: c.Target) -> Group:
    """Scheduler, backend and process alerts."""
    scheduler, api = target.scheduler, target.api
    return Group(
        name="sundial-scheduler",
        rules=[
            Alert(
                alert="SundialSchedulerDown",
                expr=(
                    f"absent(up{{{scheduler}}} == 1)\n"
                    f"or min(sundial_catalog_scheduler_heartbeat_age_seconds{{{api}}}) "
                    f"> {t.heartbeat_stale_seconds}"
                ),
                for_="1m",
                severity="critical",
                summary="No Sundial scheduler is working",
                description=(
                    "Prometheus can scrape no scheduler instance, or none has written "
                    "a heartbeat to the backend for "
                    f"{_duration(t.heartbeat_stale_seconds)} (dead, hung or cut off from it): "
                    "no job is being run."
                ),
                comment=(
                    "Scrapes catch dead targets, including compose replicas gone from DNS; the "
                    "API's view of heartbeats catches schedulers that answer scrapes but are hung."
                ),
            ),
            Alert(
                alert="SundialSchedulerDown",
                expr=(f"up{{{scheduler}}} == 0\nand on () count(up{{{scheduler}}} == 1) > 0"),
                for_="5m",
                severity="warning",
                summary="Sundial scheduler instance {{ $labels.instance }} is down",
                description=(
                    "Scheduler instance {{ $labels.instance }} has been unreachable for 5 minutes. "
                    "Others are up, so jobs still run, but there is "
                    "less or no standby to fail over to."
                ),
                comment="One replica down while another is up: no job stops, so it does not page.",
            ),
            Alert(
                alert="SundialNoLeader",
                expr=f"sum(sundial_scheduler_leader{{{scheduler}}}) == 0",
                for_="1m",
                severity="critical",
                summary="No Sundial scheduler holds the leader lock",
                description=(
                    "Scheduler instances are up but none has been leader for a minute "
                    "(fail-over should take SUNDIAL_LEADER_LEASE_SECONDS): no job is being run."
                ),
            ),
            Alert(
                alert="SundialMultipleLeaders",
                expr=f"sum(sundial_scheduler_leader{{{scheduler}}}) > 1",
                for_="1m",
                severity="critical",
                summary="{{ $value }} Sundial schedulers claim to be leader",
                description=(
                    "{{ $value }} scheduler instances have reported leader=1 for a minute. "
                    "Run claims keep each fire time to one run, but schedules and commands may "
                    "be applied twice: find the instance that lost its lock."
                ),
            ),
            *(
                Alert(
                    alert="SundialBackendUnreachable",
                    expr=f"{metric}{{{selector}}} == 0",
                    for_="1m",
                    severity="critical",
                    summary=f"Sundial {component} cannot reach its backend",
                    description=(
                        f"The {component} instance {{{{ $labels.instance }}}} has not reached "
                        "the backend for a minute: runs cannot be claimed or recorded and the "
                        "catalog is stale."
                    ),
                )
                for component, metric, selector in (
                    ("scheduler", "sundial_backend_up", scheduler),
                    ("API", "sundial_catalog_backend_up", api),
                )
            ),
            Alert(
                alert="SundialSchedulerRestarting",
                expr=f"changes(process_start_time_seconds{{{scheduler}}}[15m]) >= 2",
                severity="warning",
                summary="Sundial scheduler {{ $labels.instance }} keeps restarting",
                description=(
                    "Scheduler instance {{ $labels.instance }} restarted {{ $value }} times in 15 "
                    "minutes (crash loop, OOM kill or failing health check)."
                ),
            ),
            *(
                Alert(
                    alert="SundialMemoryHigh",
                    expr=(
                        f"process_resident_memory_bytes{{{selector}}}\n"
                        "/ on () group_left () "
                        f'sundial:memory_limit_bytes{{component="{job.component}"}}\n'
                        f"> {c.MEMORY_HIGH_RATIO}"
                    ),
                    for_="10m",
                    severity="warning",
                    summary=f"Sundial {job.component} memory is near its limit",
                    description=(
                        f"The {job.component} instance {{{{ $labels.instance }}}} uses "
                        "{{ $value | humanizePercentage }} of its memory limit; at the limit it "
                        "is killed and its running jobs are interrupted."
                    ),
                )
                for job, selector in target.limited()
            ),
            Alert(
                alert="SundialRunHistoryNotPruned",
                expr=(
                    "time() - max by (job_id) ("
                    + target.ran(
                        lambda s: (
                            "sundial_job_last_success_timestamp_seconds"
                            f'{{{s},job_id="{c.MAINTENANCE_JOB_ID}"}} > 0'
                        )
                    )
                    + f")\n> {c.MAINTENANCE_STALE_SECONDS}"
                ),
                for_="15m",
                severity="warning",
                comment=(
                    "A maintenance job that never ran or never succeeded is SundialJobOverdue "
                    "or SundialJobFailed."
                ),
                summary=(
                    "Sundial run history has not been pruned for {{ $value | humanizeDuration }}"
                ),
                description=(
                    f"The built-in {c.MAINTENANCE_JOB_ID} job last succeeded "
                    "{{ $value | humanizeDuration }} ago "
                    f"(it runs every {c.MAINTENANCE_INTERVAL_HOURS}h): run history and old "
                    "commands are growing in the backend."
                ),
            ),
        ],
    )


def job_group(t: Tuning, target: c.Target) -> Group:
    """Per-job alerts, and the recording rules they need in the same group."""
    scheduler, api = target.scheduler, target.api
    return Group(
        name="sundial-jobs",
        rules=[
            # Here rather than in recording_group(): rules of one group run in order, so
            # SundialJobTooLong sees this evaluation's values, not the previous one's.
            Record(
                record="sundial_job:too_long_threshold_seconds",
                expr=(
                    f"max by (job_id) (sundial_job_timeout_seconds{{{scheduler}}} > 0)\n"
                    f"or clamp_min({c.TOO_LONG_FACTOR} * max by (job_id) "
                    "(max_over_time(sundial_job:duration_seconds:p95_1d[7d])), "
                    f"{t.too_long_floor_seconds})\n"
                    f"or {t.too_long_default_seconds} * max by (job_id) "
                    f"(sundial_job_info{{{scheduler}}})"
                ),
                comment=(
                    f"Its timeout when set; else {c.TOO_LONG_FACTOR} x the p95 of the "
                    "last week (daily jobs included), "
                    f"at least {_duration(t.too_long_floor_seconds)}; "
                    f"else {_duration(t.too_long_default_seconds)}."
                ),
            ),
            Record(
                record="sundial_job:running_for_seconds",
                expr=(
                    "time() - max by (job_id) ("
                    + target.ran(
                        lambda s: f"sundial_job_running_since_timestamp_seconds{{{s}}} > 0"
                    )
                    + ")"
                ),
                comment=(
                    "How long the oldest running instance of each running job has been running."
                ),
            ),
            *by_criticality(
                Alert(
                    alert="SundialJobFailed",
                    expr=(
                        "sum by (job_id) ("
                        + target.ran(
                            lambda s: (
                                "increase(sundial_job_runs_total"
                                f'{{{s},outcome=~"failure|timeout"}}[15m])'
                            )
                        )
                        + ") > 0"
                    ),
                    severity="",
                    summary="Sundial job {{ $labels.job_id }} failed",
                    description=(
                        "Job {{ $labels.job_id }} had {{ $value | printf "
                        '"%.0f" }} failed or timed-out '
                        "run(s) in the last 15 minutes."
                    ),
                    dashboard_query=JOB_DASHBOARD,
                ),
                scheduler,
            ),
            *by_criticality(
                Alert(
                    alert="SundialJobFailingRepeatedly",
                    expr=(
                        "max by (job_id) "
                        f"(sundial_catalog_job_consecutive_failures{{{api}}}) "
                        f">= {c.FAILING_REPEATEDLY_RUNS}"
                    ),
                    severity="",
                    summary="Sundial job {{ $labels.job_id }} failed {{ $value }} times in a row",
                    description=(
                        "The last {{ $value }} runs of job {{ $labels.job_id }} all failed; "
                        "it is not recovering on its own."
                    ),
                    dashboard_query=JOB_DASHBOARD,
                ),
                scheduler,
            ),
            *by_criticality(
                Alert(
                    alert="SundialJobOverdue",
                    expr=(
                        "time() - max by (job_id) "
                        f"(sundial_catalog_job_next_run_timestamp_seconds{{{api}}})\n"
                        "> on (job_id) max by (job_id) "
                        f"(sundial_catalog_job_overdue_after_seconds{{{api}}})"
                    ),
                    for_="1m",
                    severity="",
                    summary="Sundial job {{ $labels.job_id }} is overdue",
                    description=(
                        "Job {{ $labels.job_id }} was due {{ $value | humanizeDuration }} ago and "
                        "has not run (the catalog's next run time did not move)."
                    ),
                    comment=(
                        "From the API's catalog, so it fires when every scheduler is dead. "
                        "Each job's grace comes from its definition (overdue_after, or derived "
                        "from its interval). Paused jobs have no next run time and never fire."
                    ),
                    dashboard_query=JOB_DASHBOARD,
                ),
                scheduler,
            ),
            *by_criticality(
                Alert(
                    alert="SundialJobNotSucceededRecently",
                    expr=(
                        "(time() - max by (job_id) ("
                        + target.ran(
                            lambda s: f"sundial_job_last_success_timestamp_seconds{{{s}}} > 0"
                        )
                        + "))\n"
                        "> on (job_id) 2 * max by (job_id) "
                        f"(sundial_job_expected_interval_seconds{{{scheduler}}} > 0)\n"
                        "and on (job_id) max by (job_id) "
                        f"(sundial_job_next_run_timestamp_seconds{{{scheduler}}})"
                    ),
                    for_="5m",
                    severity="",
                    summary="Sundial job {{ $labels.job_id }} has not succeeded recently",
                    description=(
                        "Job {{ $labels.job_id }} last succeeded {{ $value | humanizeDuration }} "
                        "ago, more than twice its expected interval."
                    ),
                    comment=(
                        "Scaled by each job's interval, so hourly and daily jobs are both right. "
                        "Paused jobs (no next run) and jobs that never succeeded are left to "
                        "SundialJobOverdue and SundialJobFailed."
                    ),
                    dashboard_query=JOB_DASHBOARD,
                ),
                scheduler,
            ),
            Alert(
                alert="SundialJobTooLong",
                expr=(
                    "sundial_job:running_for_seconds\n"
                    "> on (job_id) sundial_job:too_long_threshold_seconds"
                ),
                for_="2m",
                severity="warning",
                summary="Sundial job {{ $labels.job_id }} is running too long",
                description=(
                    "Job {{ $labels.job_id }} has been running for {{ "
                    "$value | humanizeDuration }}, "
                    f"past its timeout, or when it has none, past {c.TOO_LONG_FACTOR}x its usual "
                    f"(p95) duration with a {_duration(t.too_long_floor_seconds)} floor."
                ),
                comment=(
                    "Past its timeout means the runner could not stop it (a blocking sync job)."
                ),
                dashboard_query=JOB_DASHBOARD,
            ),
            Alert(
                alert="SundialJobMissedRuns",
                expr=(
                    "sum by (job_id) ("
                    + target.ran(
                        lambda s: f'increase(sundial_job_runs_total{{{s},outcome="missed"}}[1h])'
                    )
                    + ") > 0"
                ),
                severity="warning",
                summary="Sundial job {{ $labels.job_id }} missed runs",
                description=(
                    "Job {{ $labels.job_id }} missed {{ $value | "
                    'printf "%.0f" }} run(s) in the last '
                    "hour: they could not start, or no worker took them, within misfire_grace_time "
                    "of their scheduled time."
                ),
                dashboard_query=JOB_DASHBOARD,
            ),
            Alert(
                alert="SundialJobSkippedOverlap",
                expr=(
                    "sum by (job_id) ("
                    + target.ran(
                        lambda s: f'increase(sundial_job_runs_total{{{s},outcome="skipped"}}[1h])'
                    )
                    + ") > 0"
                ),
                severity="warning",
                summary="Sundial job {{ $labels.job_id }} skipped runs",
                description=(
                    "Job {{ $labels.job_id }} skipped {{ $value | "
                    'printf "%.0f" }} run(s) in the last '
                    "hour because earlier runs were still going (max_instances reached)."
                ),
                dashboard_query=JOB_DASHBOARD,
            ),
            Alert(
                alert="SundialJobBlocksEventLoop",
                expr=(
                    "sum by (job_id) (increase(sundial_job_event_loop_blocked_seconds_total"
                    f"{{{scheduler}}}[1h]) or increase(sundial_job_event_loop_blocked_seconds_total"
                    f"{{{target.worker}}}[1h])) > 0"
                ),
                severity="warning",
                summary="Sundial job {{ $labels.job_id }} blocks the event loop",
                description=(
                    "Async job {{ $labels.job_id }} held the event loop for "
                    '{{ $value | printf "%.1f" }}s in the last hour, stalling every other '
                    "async job of its process: blocking code in an async def job."
                ),
                dashboard_query=JOB_DASHBOARD,
            ),
            Alert(
                alert="SundialJobLagHigh",
                expr=(
                    "histogram_quantile(0.95,\n"
                    "  sum by (job_id, le) ("
                    + target.ran(lambda s: f"rate(sundial_job_lag_seconds_bucket{{{s}}}[30m])")
                    + f")\n) > {c.LAG_P95_SECONDS}"
                ),
                for_="5m",
                severity="warning",
                comment=(
                    "The lag histogram's last finite bucket is 60s "
                    "(sundial.job_series.LAG_BUCKETS): a quantile never reads above it, "
                    "so the threshold must stay below."
                ),
                summary="Sundial job {{ $labels.job_id }} starts late",
                description=(
                    "95% of the runs of job {{ $labels.job_id }} in "
                    "the last 30 minutes started up to "
                    "{{ $value | humanizeDuration }} after their scheduled time "
                    f"(more than {_duration(c.LAG_P95_SECONDS)}): "
                    "the worker pool is saturated or the scheduler is starved."
                ),
                dashboard_query=JOB_DASHBOARD,
            ),
        ],
    )


def worker_group(target: c.Target) -> Group:
    """The queue executor's alerts: workers alive, reachable, and taking the queued runs.

    They read series that exist only with the queue executor (the API exports worker
    gauges only then, workers only run then), so a deployment on the local executor never
    sees them fire.
    """
    worker, api = target.worker, target.api
    return Group(
        name="sundial-workers",
        rules=[
            Alert(
                alert="SundialNoWorker",
                expr=f"max(sundial_catalog_workers{{{api}}}) == 0",
                for_="1m",
                severity="critical",
                summary="No Sundial worker is alive",
                description=(
                    "The scheduler hands every run to workers (SUNDIAL_EXECUTOR=queue), and no "
                    "worker has written a heartbeat to the backend for a minute: runs wait in "
                    "their queues and are recorded missed once their grace has passed."
                ),
                comment="From the backend's heartbeats, as the API reads them.",
            ),
            Alert(
                alert="SundialWorkerDown",
                expr=f"up{{{worker}}} == 0",
                for_="5m",
                severity="warning",
                summary="Sundial worker {{ $labels.instance }} is down",
                description=(
                    "Prometheus has not reached worker {{ $labels.instance }} for 5 minutes. "
                    "Its runs were interrupted and retried where their job allows; the other "
                    "workers of its queues take the new runs."
                ),
                comment=(
                    "A replica that compose's DNS or Kubernetes still lists; when none is left, "
                    "SundialNoWorker pages."
                ),
            ),
            Alert(
                alert="SundialRunsQueuedTooLong",
                expr=(
                    "max by (queue) "
                    f"(sundial_catalog_oldest_queued_run_age_seconds{{{api}}}) "
                    f"> {c.QUEUED_TOO_LONG_SECONDS}"
                ),
                for_="2m",
                severity="warning",
                summary="Runs wait in Sundial queue {{ $labels.queue }}",
                description=(
                    "The oldest run in queue {{ $labels.queue }} has waited "
                    "{{ $value | humanizeDuration }} for a worker, past its grace: no live "
                    "worker takes runs from this queue (SUNDIAL_WORKER_QUEUES), its workers "
                    "are all busy, or no leader records the runs nobody took as missed."
                ),
                comment=(
                    f"Past {_duration(c.QUEUED_TOO_LONG_SECONDS)}, twice the default misfire "
                    "grace: the leader records runs missed at their grace, so only a long grace "
                    "or a leader that does not sweep lets a run wait this long."
                ),
            ),
        ],
    )


def api_group(target: c.Target) -> Group:
    """The API's own alerts."""
    api = target.api
    return Group(
        name="sundial-api",
        rules=[
            Alert(
                alert="SundialApiDown",
                expr=f"up{{{api}}} == 0 or absent(up{{{api}}})",
                for_="2m",
                severity="critical",
                summary="Sundial API is down",
                description=(
                    "Prometheus cannot scrape the Sundial API: the CLI and dashboard cannot "
                    "manage jobs, and the catalog alerts (SundialJobOverdue) are blind."
                ),
            ),
            Alert(
                alert="SundialApiErrorsHigh",
                expr=(
                    f'sum(rate(sundial_http_requests_total{{{api},status=~"5.."}}[5m]))\n'
                    f"/ sum(rate(sundial_http_requests_total{{{api}}}[5m]))\n"
                    f"> {c.API_ERROR_RATIO}"
                ),
                for_="5m",
                severity="warning",
                summary="Sundial API answers with server errors",
                description=(
                    "{{ $value | humanizePercentage }} of the Sundial API's requests in the last "
                    "5 minutes ended in a 5xx status."
                ),
            ),
            Alert(
                alert="SundialApiLatencyHigh",
                expr=(
                    "histogram_quantile(0.95,\n"
                    "  sum by (route, le) (rate(sundial_http_request_duration_seconds_bucket"
                    f'{{{api},route!~"{c.SLOW_BY_DESIGN_ROUTES}"}}[5m]))\n'
                    f") > {c.API_LATENCY_P95_SECONDS}"
                ),
                for_="10m",
                severity="warning",
                summary="Sundial API route {{ $labels.route }} is slow",
                description=(
                    "The 95th percentile latency of {{ $labels.route }} has been "
                    "{{ $value | humanizeDuration }} for 10 minutes "
                    f"(over {_duration(c.API_LATENCY_P95_SECONDS)})."
                ),
                comment="Streams and waiting command reads are slow by design and left out.",
            ),
        ],
    )


META_ALERTS = Group(
    name="sundial-meta",
    rules=[
        Alert(
            alert="Watchdog",
            expr="vector(1)",
            severity="none",
            summary="Alerting pipeline heartbeat",
            description=(
                "Always firing. Alertmanager sends it to the dead man's switch every minute; "
                "if that stops, Prometheus or Alertmanager is broken."
            ),
        ),
    ],
)


def build_groups(tuning: Tuning = PRODUCTION, target: c.Target = c.DEFAULT_TARGET) -> list[Group]:
    """Every rule group, with ``tuning``'s thresholds and ``target``'s selectors and links."""
    groups = [
        recording_group(tuning, target),
        scheduler_group(tuning, target),
        job_group(tuning, target),
        worker_group(target),
        api_group(target),
        META_ALERTS,
    ]
    return [
        replace(
            group,
            rules=[
                replace(rule, links=target) if isinstance(rule, Alert) else rule
                for rule in group.rules
            ],
        )
        for group in groups
    ]


GROUPS: list[Group] = build_groups()


def alert_names(groups: Iterable[Group] = GROUPS) -> list[str]:
    """Each alert name once, in file order."""
    names: list[str] = []
    for group in groups:
        for rule in group.rules:
            if isinstance(rule, Alert) and rule.alert not in names:
                names.append(rule.alert)
    return names


# --- YAML output: a fixed shape, so a few lines of emitter beat a dependency. ---

_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .,/:()+-]*$")


def _scalar(value: str) -> str:
    if _PLAIN.match(value) and ": " not in value and not value.endswith(":"):
        return value
    return json.dumps(value, ensure_ascii=False)


def _block(key: str, text: str, indent: str, *, literal: bool = False) -> list[str]:
    if "\n" not in text and not literal:
        return [f"{indent}{key}: {_scalar(text)}"]
    return [f"{indent}{key}: |-", *(f"{indent}  {line}" for line in text.splitlines())]


def _rule_lines(rule: Record | Alert, for_override: str | None) -> list[str]:
    lines = textwrap.wrap(rule.comment, 94, initial_indent="  # ", subsequent_indent="  # ")
    if isinstance(rule, Record):
        lines.append(f"  - record: {rule.record}")
        lines += _block("expr", rule.expr, "    ", literal=True)
        return lines
    lines.append(f"  - alert: {rule.alert}")
    lines += _block("expr", rule.expr, "    ", literal=True)
    for_ = rule.for_ if for_override is None or rule.for_ == "0m" else for_override
    if for_ != "0m":
        lines.append(f"    for: {for_}")
    lines.append("    labels:")
    lines.append(f"      severity: {rule.severity}")
    lines.append("    annotations:")
    for key, value in rule.annotations.items():
        if key.endswith("_url"):
            # Always quoted, so that render-links.sh can rebase them with one pattern.
            lines.append(f"      {key}: {json.dumps(value)}")
        else:
            lines += _block(key, value, "      ")
    return lines


def render_groups(groups: Iterable[Group], *, for_override: str | None = None) -> list[str]:
    """The lines of the ``groups:`` mapping, as a rule file and a PrometheusRule hold it."""
    out = ["groups:"]
    for group in groups:
        out.append(f"- name: {group.name}")
        if group.interval:
            out.append(f"  interval: {group.interval}")
        out.append("  rules:")
        for rule in group.rules:
            out += _rule_lines(rule, for_override)
    return out


def render(groups: Iterable[Group] = GROUPS, *, for_override: str | None = None) -> str:
    """The rule file text; ``for_override`` replaces every non-zero ``for:`` (for e2e tests)."""
    out = [
        "# Generated by deploy/prometheus/generate_rules.py from deploy/conventions.py: edit",
        "# those, then run the generator.",
        "# Runbook: deploy/prometheus/RUNBOOK.md. Tests: deploy/prometheus/tests/.",
        *render_groups(groups, for_override=for_override),
    ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write Sundial's Prometheus rules for the compose stack or another Prometheus."
    )
    parser.add_argument(
        "--out", type=Path, default=RULES_FILE, help="rule file to write (default: %(default)s)"
    )
    c.add_selector_options(parser)
    c.add_link_options(parser)
    options, target = c.parse_target(parser, argv)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(render(build_groups(target=target)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
