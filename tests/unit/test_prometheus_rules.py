"""Prometheus config and alert rules: generated, valid, complete, and unit-tested by promtool.

Needs ``promtool``, from the PATH or from the Prometheus image (``monitoring_tools``); the
tests fail, not skip, without it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import monitoring_tools
import pytest
import yaml
from deploy_modules import DEPLOY, load_deploy_module

from sundial.constants import default_overdue_after

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
    "SundialJobBlocksEventLoop",
    "SundialJobLagHigh",
    "SundialMemoryHigh",
    "SundialSchedulerRestarting",
    "SundialRunHistoryNotPruned",
    "SundialApiDown",
    "SundialApiErrorsHigh",
    "SundialApiLatencyHigh",
    "SundialNoWorker",
    "SundialWorkerDown",
    "SundialRunsQueuedTooLong",
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
def promtool() -> list[str]:
    return monitoring_tools.command("promtool")


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
        assert notes["runbook_url"] == f"{conventions.RUNBOOK_URL}#{alert.alert.lower()}"
        assert notes["dashboard_url"].startswith(
            f"{conventions.GRAFANA_URL}/d/{conventions.DASHBOARD_UID}"
        )
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


def test_the_overdue_unit_tests_use_the_librarys_default_grace() -> None:
    text = (PROMETHEUS / "tests" / "jobs.yml").read_text(encoding="utf-8")

    def grace(job_id: str) -> float:
        series = rf'sundial_catalog_job_overdue_after_seconds\{{[^}}]*job_id="{job_id}"\}}'
        match = re.search(series + r"\n\s+values: (\d+)x", text)
        assert match, f"no overdue_after series for {job_id}"
        return float(match.group(1))

    assert grace("per_minute") == default_overdue_after(60)
    assert grace("daily_reports") == default_overdue_after(86400)


def test_runbook_has_one_section_per_alert() -> None:
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    assert sorted(headings) == sorted(ALERTS)


def test_prometheus_config_is_valid(promtool: list[str]) -> None:
    result = run(*promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_rule_files_are_valid(promtool: list[str]) -> None:
    files = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    result = run(*promtool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: list[str]) -> None:
    files = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert files
    result = run(*promtool, "test", "rules", *files)
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


def test_for_override_shortens_every_pending_period(promtool: list[str], tmp_path: Path) -> None:
    fast = tmp_path / "fast.yml"
    fast.write_text(rules.render(for_override="5s"), encoding="utf-8")
    durations = set(re.findall(r"^\s+for: (\S+)$", fast.read_text(), re.M))
    assert durations == {"5s"}
    result = run(*promtool, "check", "rules", str(fast))
    assert result.returncode == 0, result.stdout + result.stderr


# A Prometheus that finds Sundial through Kubernetes service discovery: one scrape job for
# every pod, the namespace and the Service telling the processes apart.
OTHER_TARGET = conventions.Target(
    scheduler='namespace="prod",service="sundial-scheduler"',
    api='namespace="prod",service="sundial-api"',
    worker='namespace="prod",service="sundial-worker"',
    runbook_url="https://wiki.example.org/sundial/runbook",
    grafana_url="https://grafana.example.org",
)
RELABEL = {
    conventions.SCHEDULER.name: {
        "job": "pods",
        "namespace": "prod",
        "service": "sundial-scheduler",
    },
    conventions.API.name: {"job": "pods", "namespace": "prod", "service": "sundial-api"},
    conventions.WORKER.name: {"job": "pods", "namespace": "prod", "service": "sundial-worker"},
}
_DEFAULT_JOB = re.compile(r'job="({})"'.format("|".join(RELABEL)))


def relabelled(path: Path, rule_file: Path) -> dict[str, Any]:
    """The promtool test file at ``path`` as OTHER_TARGET's Prometheus would see it."""
    # Every scalar as text: YAML 1.1 would read promtool's `0x30` (0, thirty times) as 48.
    data: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    data["rule_files"] = [str(rule_file)]

    def labels(match: re.Match[str]) -> str:
        return ", ".join(f'{k}="{v}"' for k, v in RELABEL[match.group(1)].items())

    for test in data["tests"]:
        for series in test.get("input_series", []):
            series["series"] = _DEFAULT_JOB.sub(labels, series["series"])
            assert not _DEFAULT_JOB.search(series["series"])
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts", []):
                expected = alert.get("exp_labels", {})
                if expected.get("job") in RELABEL:
                    new = dict(RELABEL[expected.pop("job")])
                    if "instance" not in expected:
                        # From absent(): labelled with the selector's own matchers only.
                        del new["job"]
                    expected.update(new)
                notes = alert.get("exp_annotations", {})
                for key, default in (
                    ("runbook_url", conventions.RUNBOOK_URL),
                    ("dashboard_url", conventions.GRAFANA_URL),
                ):
                    if key in notes:
                        notes[key] = notes[key].replace(
                            default, getattr(OTHER_TARGET, key.replace("dashboard", "grafana"))
                        )
    return data


def test_rules_for_other_selectors_pass_the_same_unit_tests(
    promtool: list[str], tmp_path: Path
) -> None:
    rule_file = tmp_path / "rules.yml"
    assert (
        rules.main(
            [
                "--out",
                str(rule_file),
                "--scheduler-selector",
                OTHER_TARGET.scheduler,
                "--api-selector",
                OTHER_TARGET.api,
                "--worker-selector",
                OTHER_TARGET.worker,
                "--runbook-url",
                OTHER_TARGET.runbook_url,
                "--grafana-url",
                OTHER_TARGET.grafana_url,
            ]
        )
        == 0
    )
    text = rule_file.read_text(encoding="utf-8")
    assert 'job="sundial-' not in text and "localhost" not in text
    result = run(*promtool, "check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr

    tests = []
    for path in sorted((PROMETHEUS / "tests").glob("*.yml")):
        relabelled_file = tmp_path / path.name
        relabelled_file.write_text(json.dumps(relabelled(path, rule_file)), encoding="utf-8")
        tests.append(str(relabelled_file))
    result = run(*promtool, "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_default_rules_select_only_the_default_scrape_jobs() -> None:
    # With OTHER_TARGET's selectors swapped back, the two rule files are one.
    other = rules.render(rules.build_groups(target=OTHER_TARGET))
    for name in ("scheduler", "api", "worker", "runbook_url", "grafana_url"):
        other = other.replace(
            getattr(OTHER_TARGET, name), getattr(conventions.DEFAULT_TARGET, name)
        )
    assert other == rules.render()


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("--api-selector", "job=sundial-api", "not a label matcher list"),
        ("--runbook-url", "wiki/runbook", "runbook_url must be an http(s) URL"),
    ],
)
def test_the_generator_refuses_what_prometheus_could_not_use(
    option: str, value: str, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        rules.main(["--out", str(tmp_path / "rules.yml"), option, value])
    assert error in capsys.readouterr().err
    assert not (tmp_path / "rules.yml").exists()


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
