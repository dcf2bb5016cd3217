#!/usr/bin/env python3
"""The "Sundial / Overview" Grafana dashboard, as code.

Run ``uv run python deploy/grafana/generate.py`` to rewrite
``dashboards/sundial-overview.json``; ``tests/unit/test_dashboard.py`` fails when the
committed file differs from this output. Selectors, uids and the thresholds it shares with
the alerts come from ``deploy/conventions.py``. Every panel and query names the provisioned
datasource by its fixed uid, so file provisioning needs no ``__inputs`` / ``${DS_...}``
placeholders.

``panel_queries()`` lists every query with its template variables filled in, for tests
that run them against a live Prometheus.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

# deploy/ is no package: this script runs by path, so it finds its sibling module there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import conventions as c

DASHBOARD_FILE = Path(__file__).with_name("dashboards") / "sundial-overview.json"
TITLE = "Sundial / Overview"
# Every panel reads the Prometheus that the `datasource` variable names: in the compose
# stack the provisioned one, in a Grafana of one's own whichever Prometheus it picks.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job_id=~"$job_id"'
RATE = "$__rate_interval"

# Values that stand for the template variables outside Grafana: every job, and the
# rate window Grafana would pick for a 15 s scrape interval.
VARIABLE_VALUES: Mapping[str, str] = {"job_id": ".*", "__rate_interval": "1m"}

# Panels whose queries are empty when all is well (nothing is running, or waiting, now).
EMPTY_WHEN_HEALTHY = frozenset({"Oldest running", "Oldest queued"})
# The Workers row reads series that exist only with the queue executor.
WORKER_PANELS = frozenset(
    {"Live workers", "Queued runs", "Oldest queued", "Dispatch lag", "Runs in progress by worker"}
)

Panel = dict[str, Any]
Queries = list[tuple[str, str]]


class PanelQuery(NamedTuple):
    title: str
    expr: str
    may_be_empty: bool
    #: empty unless runs execute on workers (SUNDIAL_EXECUTOR=queue)
    needs_workers: bool


def target(expr: str, ref: str, legend: str = "", *, table: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DATASOURCE, "refId": ref, "expr": expr}
    if table:
        t |= {"format": "table", "instant": True, "range": False}
    else:
        t |= {"legendFormat": legend or "__auto", "range": True}
    return t


def _targets(queries: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [target(expr, chr(ord("A") + i), legend) for i, (expr, legend) in enumerate(queries)]


def _thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def stat(
    title: str,
    queries: Sequence[tuple[str, str]],
    *,
    unit: str = "short",
    thresholds: dict[str, Any] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    description: str = "",
) -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": thresholds or _thresholds(("green", None)),
                "mappings": mappings or [],
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
        },
    }


def timeseries(
    title: str,
    queries: Sequence[tuple[str, str]],
    *,
    unit: str = "short",
    description: str = "",
    stack: bool = False,
) -> Panel:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"stacking": {"mode": "normal" if stack else "none"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["max"]}},
    }


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def _value_map(mapping: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    options = {k: {"text": text, "color": color} for k, (text, color) in mapping.items()}
    return [{"type": "value", "options": options}]


def _override(name: str, **props: Any) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k, "value": v} for k, v in props.items()],
    }


def jobs_table_columns(target: c.Target) -> list[tuple[str, str, dict[str, Any]]]:
    """The jobs table's columns after Job, Name, Trigger and Critical: title, query, style.

    Run columns read whoever ran the runs: the leader, or the workers.
    """
    scheduler, ran = target.scheduler, target.ran
    return [
        (
            "State",
            f"count by (job_id) (sundial_job_next_run_timestamp_seconds{{{scheduler},{JOB}}})\n"
            f"or on (job_id) 0 * max by (job_id) (sundial_job_info{{{scheduler},{JOB}}})",
            {"mappings": _value_map({"1": ("scheduled", "green"), "0": ("paused", "blue")})},
        ),
        (
            "Next run",
            f"1000 * max by (job_id) (sundial_job_next_run_timestamp_seconds{{{scheduler},{JOB}}})",
            {"unit": "dateTimeFromNow"},
        ),
        (
            "Last success",
            "1000 * max by (job_id) ("
            + ran(lambda s: f"sundial_job_last_success_timestamp_seconds{{{s},{JOB}}} > 0")
            + ")",
            {"unit": "dateTimeFromNow"},
        ),
        (
            "Last outcome",
            "sgn(\n"
            "  max by (job_id) ("
            + ran(lambda s: f"sundial_job_last_success_timestamp_seconds{{{s},{JOB}}}")
            + ")\n  - max by (job_id) ("
            + ran(lambda s: f"sundial_job_last_failure_timestamp_seconds{{{s},{JOB}}}")
            + ")\n)",
            {
                "mappings": _value_map(
                    {
                        "1": ("success", "green"),
                        "-1": ("failure", "red"),
                        "0": ("no run yet", "text"),
                    }
                )
            },
        ),
        (
            "Mean duration 24h",
            "sum by (job_id) ("
            + ran(lambda s: f"increase(sundial_job_duration_seconds_sum{{{s},{JOB}}}[1d])")
            + ")\n/ sum by (job_id) ("
            + ran(lambda s: f"increase(sundial_job_duration_seconds_count{{{s},{JOB}}}[1d])")
            + ")",
            {"unit": "s"},
        ),
        (
            "Failures 24h",
            "round(sum by (job_id) ("
            + ran(
                lambda s: (
                    f'increase(sundial_job_runs_total{{{s},{JOB},outcome=~"failure|timeout"}}[1d])'
                )
            )
            + "))",
            {
                "color": {"mode": "thresholds"},
                "custom.cellOptions": {"type": "color-text"},
                "thresholds": _thresholds(("green", None), ("red", 1)),
            },
        ),
        (
            "Missed 24h",
            "round(sum by (job_id) ("
            + ran(lambda s: f'increase(sundial_job_runs_total{{{s},{JOB},outcome="missed"}}[1d])')
            + "))",
            {
                "color": {"mode": "thresholds"},
                "custom.cellOptions": {"type": "color-text"},
                "thresholds": _thresholds(("green", None), ("orange", 1)),
            },
        ),
    ]


def jobs_table(selectors: c.Target) -> Panel:
    """One row per job: instant queries merged on job_id, then renamed."""
    info = (
        "max by (job_id, name, trigger, critical) "
        f"(sundial_job_info{{{selectors.scheduler},{JOB}}})"
    )
    targets = [target(info, "INFO", table=True)]
    renames = {"job_id": "Job", "name": "Name", "trigger": "Trigger", "critical": "Critical"}
    overrides = []
    for i, (column, expr, props) in enumerate(jobs_table_columns(selectors)):
        ref = chr(ord("A") + i)
        targets.append(target(expr, ref, table=True))
        renames[f"Value #{ref}"] = column
        overrides.append(_override(column, **props))
    return {
        "type": "table",
        "title": "Jobs",
        "description": "Failures count failed and timed-out runs.",
        "datasource": DATASOURCE,
        "targets": targets,
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value #INFO": True},
                    "renameByName": renames,
                },
            },
        ],
        "fieldConfig": {"defaults": {}, "overrides": overrides},
        "options": {"showHeader": True, "sortBy": [{"displayName": "Job", "desc": False}]},
    }


def quantiles(metric: str, by: str, select: Callable[[Callable[[str], str]], str]) -> Queries:
    """p50, p95 and p99 of a histogram ``by`` a label; ``select`` picks the series to sum
    from a selection of one process's series (``Target.ran``, or a single selector)."""
    group = f"{by}, le" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return [
        (
            f"histogram_quantile({q},\n  sum by ({group}) ("
            + select(lambda s: f"rate({metric}_bucket{{{s},{JOB}}}[{RATE}])")
            + "))",
            f"{legend}p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def health_row(target: c.Target) -> list[Panel]:
    scheduler, api = target.scheduler, target.api
    up_down = _thresholds(("red", None), ("green", 1))
    return [
        row("Health"),
        stat(
            "Schedulers up",
            [(f"count(up{{{scheduler}}} == 1) or vector(0)", "up")],
            thresholds=_thresholds(("red", None), ("orange", 1), ("green", 2)),
            description="Scheduler instances Prometheus can scrape (leader and standbys).",
        ),
        stat(
            "Leaders",
            [(f"sum(sundial_scheduler_leader{{{scheduler}}})", "leaders")],
            thresholds=_thresholds(("red", None), ("green", 1), ("red", 2)),
            description="Exactly one scheduler must hold the leader lock.",
        ),
        stat(
            "Backend up",
            [
                (f"min(sundial_backend_up{{{scheduler}}})", "from schedulers"),
                (f"min(sundial_catalog_backend_up{{{api}}})", "from API"),
            ],
            thresholds=up_down,
            mappings=_value_map({"1": ("up", "green"), "0": ("down", "red")}),
        ),
        stat(
            "Heartbeat age",
            [(f"min(sundial_catalog_scheduler_heartbeat_age_seconds{{{api}}})", "freshest")],
            unit="s",
            # Red when SundialSchedulerDown fires, orange halfway there.
            thresholds=_thresholds(
                ("green", None),
                ("orange", c.HEARTBEAT_STALE_SECONDS // 2),
                ("red", c.HEARTBEAT_STALE_SECONDS),
            ),
            description="Age of the freshest scheduler heartbeat in the backend, per the API.",
        ),
        stat(
            "Firing alerts",
            [('count(ALERTS{alertstate="firing", alertname!="Watchdog"}) or vector(0)', "firing")],
            thresholds=_thresholds(("green", None), ("red", 1)),
            description="Alerts firing in Prometheus, the always-firing Watchdog left out.",
        ),
        stat(
            "Jobs by state",
            [(f"max by (state) (sundial_jobs{{{scheduler}}})", "{{state}}")],
        ),
    ]


def runs_rows(target: c.Target) -> list[Panel]:
    ran = target.ran
    return [
        row("Jobs"),
        jobs_table(target),
        row("Runs"),
        timeseries(
            "Runs by outcome",
            [
                (
                    "60 * sum by (outcome) ("
                    + ran(lambda s: f"rate(sundial_job_runs_total{{{s},{JOB}}}[{RATE}])")
                    + ")",
                    "{{outcome}}",
                )
            ],
            unit="short",
            stack=True,
            description="Runs per minute.",
        ),
        timeseries(
            "Duration p50 / p95 / p99 by job",
            quantiles("sundial_job_duration_seconds", "job_id", ran),
            unit="s",
        ),
        timeseries(
            "Start lag p50 / p95 / p99 by job",
            quantiles("sundial_job_lag_seconds", "job_id", ran),
            unit="s",
            description="Actual start minus scheduled time (on a worker: the dispatch lag).",
        ),
        timeseries(
            "Running now",
            [
                (
                    "sum by (job_id) ("
                    + ran(lambda s: f"max by (job_id) (sundial_job_running{{{s},{JOB}}})")
                    + ")",
                    "{{job_id}}",
                )
            ],
            stack=True,
        ),
        timeseries(
            "Oldest running",
            [
                (f"sundial_job:running_for_seconds{{{JOB}}}", "{{job_id}} running for"),
                (
                    f"sundial_job:too_long_threshold_seconds{{{JOB}}}\n"
                    f"and on (job_id) sundial_job:running_for_seconds{{{JOB}}}",
                    "{{job_id}} alert threshold",
                ),
            ],
            unit="s",
            description=(
                "How long each running job's oldest run has been going, against the "
                "SundialJobTooLong threshold. Empty when nothing runs."
            ),
        ),
    ]


def workers_row(target: c.Target) -> list[Panel]:
    """The queue executor: workers alive, runs waiting for them, and how late they start."""
    api, worker = target.api, target.worker
    return [
        row("Workers"),
        stat(
            "Live workers",
            [(f"max(sundial_catalog_workers{{{api}}})", "live")],
            thresholds=_thresholds(("red", None), ("orange", 1), ("green", 2)),
            description=(
                "Workers whose heartbeat is recent, per the API; SundialNoWorker fires at 0. "
                "Empty with the local executor."
            ),
        ),
        timeseries(
            "Queued runs",
            [(f"max by (queue) (sundial_catalog_queued_runs{{{api}}})", "{{queue}}")],
            stack=True,
            description="Runs waiting for a worker, by workers' queue.",
        ),
        timeseries(
            "Oldest queued",
            [
                (
                    f"max by (queue) (sundial_catalog_oldest_queued_run_age_seconds{{{api}}})",
                    "{{queue}}",
                )
            ],
            unit="s",
            description=(
                "How long the run waiting longest in each queue has waited; "
                f"SundialRunsQueuedTooLong fires past {c.QUEUED_TOO_LONG_SECONDS} s. "
                "Empty when nothing waits."
            ),
        ),
        timeseries(
            "Dispatch lag",
            quantiles("sundial_job_lag_seconds", "", lambda select: select(worker)),
            unit="s",
            description="When a worker started the run minus its scheduled time, every job.",
        ),
        timeseries(
            "Runs in progress by worker",
            [(f"sundial_worker_runs_in_progress{{{worker}}}", "{{instance}}")],
            stack=True,
        ),
    ]


def api_row(target: c.Target) -> list[Panel]:
    api = target.api
    return [
        row("API"),
        timeseries(
            "API requests by status",
            [
                (
                    f"sum by (status) (rate(sundial_http_requests_total{{{api}}}[{RATE}]))",
                    "{{status}}",
                )
            ],
            unit="reqps",
            stack=True,
        ),
        timeseries(
            "API server error ratio",
            [
                (
                    f'(sum(rate(sundial_http_requests_total{{{api},status=~"5.."}}[{RATE}])) '
                    "or vector(0))\n"
                    f"/ sum(rate(sundial_http_requests_total{{{api}}}[{RATE}]))",
                    "5xx",
                )
            ],
            unit="percentunit",
        ),
        timeseries(
            "API latency p95 by route",
            [
                (
                    "histogram_quantile(0.95,\n"
                    "  sum by (route, le) (rate(sundial_http_request_duration_seconds_bucket"
                    f"{{{api}}}[{RATE}])))",
                    "{{route}}",
                )
            ],
            unit="s",
        ),
    ]


def resources_row(target: c.Target) -> list[Panel]:
    limited = target.limited()
    return [
        row("Resources"),
        timeseries(
            "Memory against limit",
            [
                *(
                    (
                        f"process_resident_memory_bytes{{{selector}}}",
                        job.component + " {{instance}}",
                    )
                    for job, selector in limited
                ),
                ("sundial:memory_limit_bytes", "{{component}} limit"),
            ],
            unit="bytes",
            description=(
                "Resident memory; SundialMemoryHigh fires at "
                f"{c.MEMORY_HIGH_RATIO:.0%} of the limit."
            ),
        ),
        timeseries(
            "CPU against limit",
            [
                *(
                    (
                        f"rate(process_cpu_seconds_total{{{selector}}}[{RATE}])",
                        job.component + " {{instance}}",
                    )
                    for job, selector in limited
                ),
                ("sundial:cpu_limit_cores", "{{component}} limit"),
            ],
            unit="short",
            description="CPU cores used.",
        ),
        timeseries(
            "Backend errors",
            [
                (
                    "sum by (operation) "
                    f"(rate(sundial_backend_errors_total{{{target.scheduler}}}[{RATE}])) "
                    "or vector(0)",
                    "{{operation}}",
                )
            ],
            unit="ops",
        ),
    ]


# Grid: 24 columns. Stats share a row; graphs come two to a row; the table is full width.
_WIDTH = {"row": 24, "stat": 4, "timeseries": 12, "table": 24}
_HEIGHT = {"row": 1, "stat": 4, "timeseries": 8, "table": 10}


def _layout(panels: list[Panel]) -> list[Panel]:
    x = y = line_height = 0
    for number, panel in enumerate(panels, start=1):
        w, h = _WIDTH[panel["type"]], _HEIGHT[panel["type"]]
        if x + w > 24:
            x, y, line_height = 0, y + line_height, 0
        panel["id"] = number
        panel["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        line_height = max(line_height, h)
    return panels


def dashboard(target: c.Target = c.DEFAULT_TARGET) -> dict[str, Any]:
    """The dashboard JSON model, selecting Sundial's series as ``target`` says."""
    panels = _layout(
        [
            *health_row(target),
            *runs_rows(target),
            *workers_row(target),
            *api_row(target),
            *resources_row(target),
        ]
    )
    jobs = f"label_values(sundial_job_info{{{target.scheduler}}}, job_id)"
    return {
        "uid": c.DASHBOARD_UID,
        "title": TITLE,
        "description": "Sundial scheduler health, jobs, runs, workers, API and resources.",
        "tags": ["sundial"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 38,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    # Grafana keeps this where a datasource has the uid, and takes its
                    # default Prometheus where none has (a dashboard imported elsewhere).
                    "current": {"text": "Prometheus", "value": c.DATASOURCE_UID},
                    "refresh": 1,
                    "regex": "",
                },
                {
                    "name": "job_id",
                    "label": "Job",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": jobs, "refId": "job_id"},
                    "definition": jobs,
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": VARIABLE_VALUES["job_id"],
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                },
            ]
        },
        "panels": panels,
    }


def render(target: c.Target = c.DEFAULT_TARGET) -> str:
    return json.dumps(dashboard(target), indent=2, ensure_ascii=False) + "\n"


def substitute(expr: str, values: Mapping[str, str] = VARIABLE_VALUES) -> str:
    """``expr`` with ``$name`` / ``${name}`` replaced by ``values[name]``."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def _walk(panels: Sequence[Panel]) -> Iterator[Panel]:
    for panel in panels:
        yield panel
        yield from _walk(panel.get("panels", []))


def _reads_only_workers(expr: str, target: c.Target) -> bool:
    others = (target.scheduler, target.api)
    return f"{{{target.worker}" in expr and not any(f"{{{s}" in expr for s in others)


def panel_queries(
    model: Mapping[str, Any] | None = None, target: c.Target = c.DEFAULT_TARGET
) -> list[PanelQuery]:
    """Every panel query of ``model`` (default: this dashboard for ``target``), variables
    filled in."""
    model = dashboard(target) if model is None else model
    return [
        PanelQuery(
            panel["title"],
            substitute(t["expr"]),
            may_be_empty=panel["title"] in EMPTY_WHEN_HEALTHY,
            # the Workers row, and a worker's own line in a panel of every process
            needs_workers=panel["title"] in WORKER_PANELS or _reads_only_workers(t["expr"], target),
        )
        for panel in _walk(model["panels"])
        for t in panel.get("targets", [])
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the Sundial / Overview dashboard for the compose stack or another "
        "Prometheus."
    )
    parser.add_argument(
        "--out", type=Path, default=DASHBOARD_FILE, help="file to write (default: %(default)s)"
    )
    c.add_selector_options(parser)
    options, target = c.parse_target(parser, argv)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(render(target), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
