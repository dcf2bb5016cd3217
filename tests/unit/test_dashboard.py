"""Grafana provisioning and the "Sundial / Overview" dashboard: generated, self-contained
(fixed datasource uid, no import placeholders), every promised panel present, and every
query valid PromQL over known metrics, each selected from the scrape job that exports it.

Query parsing uses ``promtool`` (``.ci/install-monitoring.sh``); it fails, not skips,
without it. ``deploy/grafana/generate.py``'s ``panel_queries()`` gives the same queries to
tests that run them against a live Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import monitoring_tools
import pytest
from deploy_modules import DEPLOY, load_deploy_module

GRAFANA = DEPLOY / "grafana"

conventions = load_deploy_module("conventions", "conventions.py")
generate = load_deploy_module("grafana_generate", "grafana/generate.py")
promql = load_deploy_module("promql", "prometheus/promql.py")
rules = load_deploy_module("generate_rules", "prometheus/generate_rules.py")
DATASOURCE_UID = conventions.DATASOURCE_UID


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The committed dashboard, as Grafana will load it."""
    data: dict[str, Any] = json.loads(generate.DASHBOARD_FILE.read_text(encoding="utf-8"))
    return data


def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))


def test_committed_dashboard_is_the_generators_output() -> None:
    assert generate.DASHBOARD_FILE.read_text(encoding="utf-8") == generate.render(), (
        "deploy/grafana/dashboards/sundial-overview.json is stale: run "
        "python deploy/grafana/generate.py"
    )


def test_identity(model: dict[str, Any]) -> None:
    assert (model["uid"], model["title"]) == ("sundial-overview", "Sundial / Overview")


def test_no_import_placeholders() -> None:
    for path in (GRAFANA / "dashboards").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert "__inputs" not in text and "${DS_" not in text, path.name


def test_every_panel_and_query_reads_the_datasource_variable(model: dict[str, Any]) -> None:
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for panel in walk(model["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]
    for variable in model["templating"]["list"][1:]:
        assert variable["datasource"] == expected, variable["name"]


def test_the_datasource_variable_starts_on_the_provisioned_prometheus(
    model: dict[str, Any],
) -> None:
    variable = model["templating"]["list"][0]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    assert variable["current"]["value"] == DATASOURCE_UID


def test_the_dashboard_imports_into_another_grafana_as_it_is(model: dict[str, Any]) -> None:
    # An import keeps the uid (alert links name it) and must neither ask for inputs nor
    # collide with a dashboard id of the Grafana it was exported from.
    assert "id" not in model and "__inputs" not in model
    assert model["uid"] == conventions.DASHBOARD_UID
    text = json.dumps(model["panels"])
    assert DATASOURCE_UID not in text, "a panel names the provisioned datasource itself"


OTHER_SELECTORS = {
    "scheduler": 'namespace="prod",service="sundial-scheduler"',
    "api": 'namespace="prod",service="sundial-api"',
    "worker": 'namespace="prod",service="sundial-worker"',
}


def test_other_selectors_replace_every_default_one(tmp_path: Path) -> None:
    out = tmp_path / "board.json"
    options = [arg for name, v in OTHER_SELECTORS.items() for arg in (f"--{name}-selector", v)]
    assert generate.main(["--out", str(out), *options]) == 0
    # The same dashboard, the selectors aside: no query keeps a default one.
    expected = generate.render()
    for name, selector in OTHER_SELECTORS.items():
        default = getattr(conventions.DEFAULT_TARGET, name)
        expected = expected.replace(json.dumps(default)[1:-1], json.dumps(selector)[1:-1])
    assert out.read_text(encoding="utf-8") == expected
    assert 'job=\\"sundial-' not in expected


def test_a_selector_that_is_no_label_matcher_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        generate.main(["--scheduler-selector", "job=sundial-scheduler"])
    assert "not a label matcher list: 'job=sundial-scheduler'" in capsys.readouterr().err


def test_datasource_provisioning_has_the_fixed_uid() -> None:
    text = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert re.search(rf"^\s+uid: {DATASOURCE_UID}$", text, re.M)
    assert re.search(r"^\s+url: http://prometheus:9090$", text, re.M)


def test_dashboard_provider_loads_the_dashboards_directory() -> None:
    text = (GRAFANA / "provisioning" / "dashboards" / "sundial.yml").read_text()
    assert re.search(r"^\s+type: file$", text, re.M)
    assert re.search(r"^\s+path: /var/lib/grafana/dashboards$", text, re.M)


def test_panels_have_unique_ids_and_fit_the_grid(model: dict[str, Any]) -> None:
    panels = list(walk(model["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def test_promised_panels_are_present(model: dict[str, Any]) -> None:
    titles = {p["title"] for p in walk(model["panels"])}
    assert {
        "Schedulers up",
        "Leaders",
        "Backend up",
        "Heartbeat age",
        "Firing alerts",
        "Jobs",
        "Runs by outcome",
        "Duration p50 / p95 / p99 by job",
        "Start lag p50 / p95 / p99 by job",
        "Running now",
        "Oldest running",
        "API requests by status",
        "API server error ratio",
        "API latency p95 by route",
        "Memory against limit",
        "CPU against limit",
        "Live workers",
        "Queued runs",
        "Oldest queued",
        "Dispatch lag",
    } <= titles
    (table,) = [p for p in walk(model["panels"]) if p["title"] == "Jobs" and p["type"] == "table"]
    organize = next(t for t in table["transformations"] if t["id"] == "organize")
    columns = set(organize["options"]["renameByName"].values())
    assert {
        "Job",
        "State",
        "Next run",
        "Last success",
        "Last outcome",
        "Mean duration 24h",
        "Failures 24h",
        "Missed 24h",
    } <= columns
    assert all(t.get("format") == "table" and t.get("instant") for t in table["targets"])
    assert {"id": "merge", "options": {}} in table["transformations"]


def test_firing_alerts_panel_reads_alerts_series(model: dict[str, Any]) -> None:
    (panel,) = [p for p in walk(model["panels"]) if p["title"] == "Firing alerts"]
    assert 'ALERTS{alertstate="firing"' in panel["targets"][0]["expr"]


def test_panel_queries_fill_every_variable(model: dict[str, Any]) -> None:
    queries = generate.panel_queries(model)
    expressions = [t["expr"] for p in walk(model["panels"]) for t in p.get("targets", [])]
    assert len(queries) == len(expressions)
    assert all("$" not in q.expr for q in queries)
    assert {q.title for q in queries if q.may_be_empty} == {"Oldest running", "Oldest queued"}
    # the Workers row, and the workers' lines of the resource panels
    assert {q.title for q in queries if q.needs_workers} == generate.WORKER_PANELS | {
        "Memory against limit",
        "CPU against limit",
    }


def test_run_panels_read_the_workers_series_too(model: dict[str, Any]) -> None:
    # With the queue executor the runs, and so their metrics, are the workers'.
    worker = conventions.DEFAULT_TARGET.worker
    for query in generate.panel_queries(model):
        runs = {"sundial_job_runs_total", "sundial_job_duration_seconds_bucket"}
        if promql.metric_names(query.expr) & runs:
            assert f"{{{worker}" in query.expr, query.title


def test_every_query_is_valid_promql(model: dict[str, Any], tmp_path: Path) -> None:
    # promtool parses rule expressions: each query becomes a recording rule.
    group = {
        "name": "dashboard-queries",
        "rules": [
            {"record": f"dashboard_query_{i}", "expr": q.expr}
            for i, q in enumerate(generate.panel_queries(model))
        ],
    }
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [group]}), encoding="utf-8")  # JSON is YAML
    result = subprocess.run(
        [*monitoring_tools.command("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_query_uses_known_metrics(model: dict[str, Any]) -> None:
    recorded = {r.record for g in rules.GROUPS for r in g.rules if isinstance(r, rules.Record)}
    known = promql.KNOWN_METRICS | recorded
    for query in generate.panel_queries(model):
        unknown = promql.metric_names(query.expr) - known
        assert not unknown, f"{query.title}: {unknown}"
        misplaced = promql.misplaced_metrics(query.expr)
        assert not misplaced, f"{query.title}: {misplaced}"
    variable_queries = [
        v["definition"] for v in model["templating"]["list"] if v["type"] == "query"
    ]
    for definition in variable_queries:
        (metric,) = re.findall(r"label_values\((\w+)\{", definition)
        assert metric in known
