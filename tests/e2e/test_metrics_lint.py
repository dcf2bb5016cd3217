"""``promtool check metrics`` on the real ``/metrics`` of both services.

The scheduler runs the alerting test jobs (failing, hanging, succeeding, so that every
counter, histogram and gauge has samples); the API serves catalog gauges read from the
same Postgres database, after a few requests of its own. The exposition must lint clean
and carry every metric family ``deploy/prometheus/promql.py`` says its scrape job exports
(listed in docs/metrics.md), which the alert rules and the dashboard rely on.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from alerting_stack import (
    Service,
    answers,
    api_service,
    free_port,
    fresh_database,
    get,
    metric_value,
    scheduler_service,
    wait_for,
)
from deploy_modules import load_deploy_module
from monitoring_tools import command

pytestmark = pytest.mark.e2e

conventions = load_deploy_module("conventions", "conventions.py")
promql = load_deploy_module("promql", "prometheus/promql.py")


@pytest.fixture(scope="module")
def services(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Base URLs of a running scheduler and API sharing one fresh database."""
    scheduler_port, api_port = free_port(), free_port()
    logs = tmp_path_factory.mktemp("metrics-lint")
    started: list[Service] = []
    with contextlib.ExitStack() as cleanup:
        database = cleanup.enter_context(fresh_database(postgres_server_url, "sundial_lint"))
        cleanup.callback(_stop, started)
        scheduler = scheduler_service(database, scheduler_port, logs)
        # With the queue executor, so that the worker gauges are exported too.
        api = api_service(database, api_port, logs, executor="queue")
        started.append(scheduler.start())
        scheduler_url = f"http://127.0.0.1:{scheduler_port}"
        wait_for("the scheduler to be ready", lambda: answers(f"{scheduler_url}/readyz"))
        started.append(api.start())
        api_url = f"http://127.0.0.1:{api_port}"
        wait_for("the API to be healthy", lambda: answers(f"{api_url}/health"))
        yield scheduler_url, api_url


def _stop(services: list[Service]) -> None:
    # The log tails are shown by pytest only when a test fails.
    for service in reversed(services):
        service.stop()
        print(f"--- {service.name} log (tail) ---\n{service.log_tail()}")  # noqa: T201


def lint(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def families(text: str) -> set[str]:
    """Metric family names declared by ``# TYPE`` lines."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def scheduler_metrics_once_jobs_ran(url: str) -> str:
    def ready() -> str | None:
        response = get(f"{url}/metrics")
        if response is None or response.status_code != 200:
            return None
        text = response.text
        done = [
            metric_value(text, 'sundial_job_runs_total{job_id="payments_sync",outcome="failure"}'),
            metric_value(
                text, 'sundial_job_runs_total{job_id="inventory_refresh",outcome="success"}'
            ),
            metric_value(text, 'sundial_job_runs_total{job_id="report_export",outcome="skipped"}'),
            metric_value(text, 'sundial_job_running{job_id="report_export"}'),
        ]
        return text if all(value and value >= 1 for value in done) else None

    return wait_for("the test jobs to fail, succeed, hang and skip", ready, within=60)


def test_scheduler_metrics_lint_clean(services: tuple[str, str]) -> None:
    scheduler_url, _ = services
    text = scheduler_metrics_once_jobs_ran(scheduler_url)

    result = lint(text)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr

    missing = promql.EXPORTED[conventions.SCHEDULER.name] - families(text)
    assert not missing, f"metrics the scheduler does not export: {sorted(missing)}"


def test_api_metrics_lint_clean(services: tuple[str, str]) -> None:
    scheduler_url, api_url = services
    scheduler_metrics_once_jobs_ran(scheduler_url)
    # Traffic of every kind, so that the HTTP counter and histogram have samples.
    for path in ("/health", "/api/v1/jobs", "/api/v1/jobs/payments_sync", "/no/such/route"):
        httpx.get(f"{api_url}{path}", timeout=10)

    def catalog_with_history() -> str | None:
        response = get(f"{api_url}/metrics")
        if response is None or response.status_code != 200:
            return None
        text = response.text
        failures = metric_value(
            text, 'sundial_catalog_job_consecutive_failures{job_id="payments_sync"}'
        )
        success = metric_value(
            text, 'sundial_catalog_job_last_success_timestamp_seconds{job_id="inventory_refresh"}'
        )
        return text if failures and failures >= 1 and success else None

    text = wait_for("catalog gauges with run history", catalog_with_history, within=60)

    result = lint(text)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr

    expected = promql.EXPORTED[conventions.API.name]
    missing = expected - families(text)
    assert not missing, f"metrics the API does not export: {sorted(missing)}"
    assert 'route="/api/v1/jobs/{job_id}"' in text, "requests are not labelled by route template"
    assert "sundial_catalog_scheduler_heartbeat_age_seconds " in text
    assert "sundial_catalog_backend_up 1.0" in text


def test_api_exports_process_metrics(services: tuple[str, str]) -> None:
    _, api_url = services
    response = get(f"{api_url}/metrics")
    assert response is not None and response.status_code == 200
    missing = promql.PROCESS_METRICS - families(response.text)
    assert not missing, f"process metrics the API does not export: {sorted(missing)}"
