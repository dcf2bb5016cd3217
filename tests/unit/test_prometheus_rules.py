"""Prometheus config and alert rules: generated, valid, complete, and unit-tested by promtool.

Needs ``promtool`` (``.ci/install-monitoring.sh``); the tests fail, not skip, without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_modules import DEPLOY, load_deploy_module

ROOT = DEPLOY.parent
PROMETHEUS = DEPLOY / "prometheus"
RUNBOOK = PROMETHEUS / "RUNBOOK.md"
METRICS_REFERENCE = ROOT / "docs" / "metrics.md"

# Every alert operators are promised, by name: adding or dropping one changes what they
# are told about, so it is a change to this list and to docs/metrics.md#alerts.
ALERTS = {
    "SundialSchedulerDown",
    "SundialNoLeader",
    "SundialMultipleLeaders",
    "SundialBackendUnreachable",
    "SundialJobFailed",
    "SundialJobFailingRepeatedly",
    "SundialJobTooLong",
    "SundialJobOverdue",
    "SundialJobNotSucceededRecently",
    "SundialJobMissedRuns",
    "SundialJobSkippedOverlap",
    "SundialJobLagHigh",
    "SundialMemoryHigh",
    "SundialSchedulerRestarting",
    "SundialRunHistoryNotPruned",
    "SundialApiDown",
    "SundialApiErrorsHigh",
    "SundialApiLatencyHigh",
    "Watchdog",
}
ALWAYS_FIRING = {"Watchdog"}
SEVERITIES = {"critical", "warning", "info", "none"}

conventions = load_deploy_module("conventions", "conventions.py")
rules = load_deploy_module("generate_rules", "prometheus/generate_rules.py")
promql = load_deploy_module("promql", "prometheus/promql.py")


def alerts() -> list:
    return [r for g in rules.GROUPS for r in g.rules if isinstance(r, rules.Alert)]


def recorded_names() -> set[str]:
    return {r.record for g in rules.GROUPS for r in g.rules if isinstance(r, rules.Record)}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: run .ci/install-monitoring.sh"
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_committed_rules_are_the_generators_output() -> None:
    assert rules.RULES_FILE.read_text(encoding="utf-8") == rules.render(), (
        "deploy/prometheus/rules/sundial.yml is stale: run "
        "python deploy/prometheus/generate_rules.py"
    )


def test_every_promised_alert_is_defined_and_no_other() -> None:
    assert set(rules.alert_names()) == ALERTS


def test_every_alert_has_severity_and_annotations() -> None:
    for alert in alerts():
        assert alert.severity in SEVERITIES, alert.alert
        notes = alert.annotations
        assert notes["summary"] and notes["description"], alert.alert
        assert notes["runbook_url"].endswith("RUNBOOK.md#" + alert.alert.lower())
        assert notes["runbook_url"].startswith(conventions.RUNBOOK_URL)
        assert notes["dashboard_url"].startswith(conventions.DASHBOARD_URL)
        if alert.alert.startswith("SundialJob"):
            assert "{{ $labels.job_id }}" in notes["summary"], alert.alert
            assert "var-job_id={{ $labels.job_id }}" in notes["dashboard_url"], alert.alert


def test_job_failed_pages_for_critical_jobs_and_warns_for_others() -> None:
    severities = {a.severity for a in alerts() if a.alert == "SundialJobFailed"}
    assert severities == {"critical", "warning"}


def test_watchdog_always_fires_with_severity_none() -> None:
    (watchdog,) = [a for a in alerts() if a.alert == "Watchdog"]
    assert (watchdog.expr, watchdog.severity, watchdog.for_) == ("vector(1)", "none", "0m")


def test_rules_use_only_known_metrics() -> None:
    known = promql.KNOWN_METRICS | recorded_names()
    for group in rules.GROUPS:
        for rule in group.rules:
            unknown = promql.metric_names(rule.expr) - known
            assert not unknown, f"{getattr(rule, 'alert', None) or rule.record}: {unknown}"


def test_rules_select_each_metric_from_the_scrape_job_that_exports_it() -> None:
    for group in rules.GROUPS:
        for rule in group.rules:
            misplaced = promql.misplaced_metrics(rule.expr)
            assert not misplaced, f"{getattr(rule, 'alert', None) or rule.record}: {misplaced}"


def test_metrics_reference_describes_every_alert_and_metric() -> None:
    text = METRICS_REFERENCE.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Za-z0-9_:]+)`", text))
    assert ALERTS - documented == set(), "alerts docs/metrics.md does not describe"
    exported = set().union(*promql.EXPORTED.values()) - promql.PROCESS_METRICS
    assert exported - documented == set(), "metrics docs/metrics.md does not describe"
    recorded = {r.record for g in rules.GROUPS for r in g.rules if isinstance(r, rules.Record)}
    assert recorded - documented == set(), "recording rules docs/metrics.md does not describe"


def test_runbook_has_one_section_per_alert() -> None:
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    assert sorted(headings) == sorted(ALERTS)


def test_prometheus_config_is_valid(promtool: str) -> None:
    result = run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_rule_files_are_valid(promtool: str) -> None:
    files = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    result = run(promtool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    files = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert files
    result = run(promtool, "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        text = path.read_text(encoding="utf-8")
        for name, expected in re.findall(r"alertname: (\w+)\n\s+exp_alerts:(.*)", text):
            (quiet if expected.strip() == "[]" else firing).add(name)
    assert ALERTS - firing == set(), "alerts never seen firing"
    assert ALERTS - ALWAYS_FIRING - quiet == set(), "alerts never seen quiet"


def test_for_override_shortens_every_pending_period(promtool: str, tmp_path: Path) -> None:
    fast = tmp_path / "fast.yml"
    fast.write_text(rules.render(for_override="5s"), encoding="utf-8")
    durations = set(re.findall(r"^\s+for: (\S+)$", fast.read_text(), re.M))
    assert durations == {"5s"}
    result = run(promtool, "check", "rules", str(fast))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (job_id) (rate(a_total{x="y{z}"}[5m:1m] offset 5m)) > 1e3', {"a_total"}),
        ("histogram_quantile(0.9, sum by (le) (rate(b_bucket[5m]))) or vector(0)", {"b_bucket"}),
        ("c and on (job_id) d:recorded unless ignoring (x) e", {"c", "d:recorded", "e"}),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert promql.metric_names(expr) == names


SCHEDULER = conventions.SCHEDULER
API = conventions.API


@pytest.mark.parametrize(
    ("expr", "misplaced"),
    [
        (
            f"sundial_catalog_backend_up{{{SCHEDULER.selector}}} == 0",
            {f"sundial_catalog_backend_up from {SCHEDULER.name}"},
        ),
        (
            f'rate(sundial_job_lag_seconds_bucket{{le="1",{API.selector}}}[5m])',
            {f"sundial_job_lag_seconds_bucket from {API.name}"},
        ),
        (
            f'sundial_job_runs_total{{job=~"{SCHEDULER.name}|{API.name}"}}',
            {f"sundial_job_runs_total from {API.name}"},
        ),
        (f"up{{{API.selector}}} == 0 or process_start_time_seconds{{{API.selector}}}", set()),
        ('sundial_job_runs_total{job="someone-else"} or sundial_job_runs_total', set()),
    ],
)
def test_metrics_selected_from_a_job_that_does_not_export_them_are_found(
    expr: str, misplaced: set[str]
) -> None:
    assert promql.misplaced_metrics(expr) == misplaced
