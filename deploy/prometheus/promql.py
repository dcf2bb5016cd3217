"""The metric names Sundial's rules and dashboards may use, and a way to find them in PromQL.

Tests compare every name used in ``rules/`` and ``deploy/grafana/`` with these, so a typo
in a query (which Prometheus would answer with an empty result, not an error) fails fast.
Standard library only.
"""

from __future__ import annotations

import re

# SPEC §7: scheduler (:9100/metrics).
SCHEDULER_METRICS = frozenset(
    {
        "sundial_build_info",
        "sundial_scheduler_leader",
        "sundial_scheduler_heartbeat_timestamp_seconds",
        "sundial_backend_up",
        "sundial_backend_errors_total",
        "sundial_jobs",
        "sundial_job_info",
        "sundial_job_next_run_timestamp_seconds",
        "sundial_job_runs_total",
        "sundial_job_running",
        "sundial_job_running_since_timestamp_seconds",
        "sundial_job_last_success_timestamp_seconds",
        "sundial_job_last_failure_timestamp_seconds",
        "sundial_job_expected_interval_seconds",
        "sundial_job_timeout_seconds",
    }
)
# SPEC §7: API (:8000/metrics).
API_METRICS = frozenset(
    {
        "sundial_http_requests_total",
        "sundial_catalog_job_next_run_timestamp_seconds",
        "sundial_catalog_job_last_success_timestamp_seconds",
        "sundial_catalog_job_consecutive_failures",
        "sundial_catalog_scheduler_heartbeat_age_seconds",
        "sundial_catalog_backend_up",
    }
)
HISTOGRAMS = frozenset(
    {
        "sundial_job_duration_seconds",
        "sundial_job_lag_seconds",
        "sundial_http_request_duration_seconds",
    }
)
# prometheus_client's process collector, and Prometheus's own series.
STANDARD_METRICS = frozenset(
    {
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "up",
        "ALERTS",
    }
)

KNOWN_METRICS = (
    SCHEDULER_METRICS
    | API_METRICS
    | STANDARD_METRICS
    | {f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
)

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
