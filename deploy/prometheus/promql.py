"""The metrics Sundial's rules and dashboards may use, who exports them, and a way to find
them in PromQL.

Tests compare every name used in ``rules/`` and ``deploy/grafana/`` with these, and every
metric selected from one of Sundial's scrape jobs with what that job exports, so a typo or
a wrong ``job`` matcher in a query (which Prometheus would answer with an empty result, not
an error) fails fast. ``tests/e2e/test_metrics_lint.py`` checks the lists against the real
``/metrics`` of each service.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

# deploy/ is no package: this module is loaded by path, so it finds its sibling there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import conventions as c

# prometheus_client's process collector, which each Sundial process registers.
PROCESS_METRICS = frozenset(
    {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    }
)
# What the scheduler and every worker export alike: a worker's run metrics are those of
# the runs it executes, the scheduler's those of the runs it executes itself.
_RUNNER_METRICS = PROCESS_METRICS | {
    "sundial_build_info",
    "sundial_scheduler_leader",
    "sundial_scheduler_heartbeat_timestamp_seconds",
    "sundial_backend_up",
    "sundial_backend_errors_total",
    "sundial_jobs",
    "sundial_job_info",
    "sundial_job_next_run_timestamp_seconds",
    "sundial_job_runs_total",
    "sundial_job_duration_seconds",
    "sundial_job_lag_seconds",
    "sundial_job_running",
    "sundial_job_running_since_timestamp_seconds",
    "sundial_job_last_success_timestamp_seconds",
    "sundial_job_last_failure_timestamp_seconds",
    "sundial_job_expected_interval_seconds",
    "sundial_job_timeout_seconds",
    "sundial_job_event_loop_blocked_seconds_total",
}
#: Metric families (as ``# TYPE`` lines name them) by the scrape job that exports them.
EXPORTED: Mapping[str, frozenset[str]] = {
    # The scheduler, on :9100/metrics.
    c.SCHEDULER.name: _RUNNER_METRICS,
    # Each worker, on :9101/metrics.
    c.WORKER.name: _RUNNER_METRICS | {"sundial_worker_runs_in_progress"},
    # The API, on :8000/metrics; catalog gauges are read from the backend.
    c.API.name: PROCESS_METRICS
    | {
        "sundial_http_requests_total",
        "sundial_http_request_duration_seconds",
        "sundial_catalog_job_next_run_timestamp_seconds",
        "sundial_catalog_job_last_success_timestamp_seconds",
        "sundial_catalog_job_consecutive_failures",
        "sundial_catalog_job_overdue_after_seconds",
        "sundial_catalog_scheduler_heartbeat_age_seconds",
        "sundial_catalog_backend_up",
        "sundial_catalog_workers",
        "sundial_catalog_queued_runs",
        "sundial_catalog_oldest_queued_run_age_seconds",
    },
}
HISTOGRAMS = frozenset(
    {
        "sundial_job_duration_seconds",
        "sundial_job_lag_seconds",
        "sundial_http_request_duration_seconds",
    }
)
_HISTOGRAM_SUFFIXES = ("bucket", "sum", "count")
# Series Prometheus makes itself: `up` for every target, `ALERTS` for every alert.
PROMETHEUS_METRICS = frozenset({"up", "ALERTS"})


def _series(family: str) -> set[str]:
    if family in HISTOGRAMS:
        return {f"{family}_{suffix}" for suffix in _HISTOGRAM_SUFFIXES}
    return {family}


def _family(series: str) -> str:
    base, _, suffix = series.rpartition("_")
    return base if suffix in _HISTOGRAM_SUFFIXES and base in HISTOGRAMS else series


KNOWN_METRICS = PROMETHEUS_METRICS | {
    series for families in EXPORTED.values() for family in families for series in _series(family)
}

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
_SELECTION = re.compile(r'([A-Za-z_:][A-Za-z0-9_:]*)\s*\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}')
_JOB_MATCHER = re.compile(r'\bjob\s*(=~|=)\s*"([^"]*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (function and keyword names left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    text = _OFFSET.sub("", text)
    text = _NUMBER.sub("", text)
    names = set()
    for match in _NAME.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def misplaced_metrics(expr: str) -> set[str]:
    """``metric from job`` for each metric ``expr`` selects from a Sundial scrape job that
    does not export it (a ``job=~"a|b"`` matcher counts as each of its Sundial jobs)."""
    misplaced = set()
    for selection in _SELECTION.finditer(expr):
        metric, matchers = selection.groups()
        if metric in PROMETHEUS_METRICS:
            continue
        for operator, value in _JOB_MATCHER.findall(matchers):
            jobs = value.split("|") if operator == "=~" else [value]
            misplaced |= {
                f"{metric} from {job}"
                for job in jobs
                if job in EXPORTED and _family(metric) not in EXPORTED[job]
            }
    return misplaced
