"""Smoke test of the compose stack: what a user sees after `make up`, then `make down`.

Runs the README's verbs for real (``make up`` / ``make down``) as a stack of its own
(project ``sundial-smoke``, free loopback ports for what it publishes, an env file that
``make up`` writes from ``.env.example`` with secrets of its own, as on first start), so
it neither touches a user's ``.env`` nor collides with a running stack.
The backing services' ports keep their defaults, 5432 and 6379, and are taken by another
program meanwhile (the machine's own servers, or this test), as on a developer's laptop.
Images come from the usual variables (``POSTGRES_IMAGE``, ``GRAFANA_IMAGE``, ...):
upstream by default, the stand-ins of ``.ci/images.sh`` in CI, where Grafana and Mailpit
are stand-ins that answer only the calls made here (see ``.ci/images/grafana`` and
``.ci/images/mailpit``).

To see an alert delivered within a minute or two, the stack gets two test-only parts
through an extra compose file: a job module (mounted like a user's ``./jobs``) with a
critical job that always fails, and the rule file rendered with every ``for:`` at 10s.
Marked ``smoke``; not part of ``make test``. Run it with ``make smoke``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from deploy_modules import load_deploy_module

pytestmark = [pytest.mark.smoke, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "sundial-smoke"
FAILING_JOB = "smoke_always_fails"
EXAMPLE_JOBS = {"heartbeat_ping", "sync_inventory"}
PORTS = (
    "API_PORT",
    "GRAFANA_PORT",
    "PROMETHEUS_PORT",
    "ALERTMANAGER_PORT",
    "MAILPIT_PORT",
    "MAILPIT_SMTP_PORT",
)
# The defaults of .env.example, which the stack must not need.
BACKEND_PORTS = (5432, 6379)
JOB_MODULE = f'''
"""A critical job that always fails: the smoke test waits for its alert."""

from sundial import every, job


@job(every(seconds=10), id="{FAILING_JOB}", critical=True)
def always_fails() -> None:
    raise RuntimeError("smoke test: this job always fails")
'''

T = TypeVar("T")


@dataclass(frozen=True)
class Stack:
    env: dict[str, str]
    env_file: Path
    make_args: list[str]

    def url(self, port_var: str, path: str) -> str:
        return f"http://127.0.0.1:{self.env[port_var]}{path}"

    def make(self, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", target, *self.make_args, *extra],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    def containers(self, service: str | None = None) -> list[str]:
        filters = ["--filter", f"label=com.docker.compose.project={PROJECT}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        out = subprocess.run(
            ["docker", "ps", "-a", "-q", *filters], capture_output=True, text=True, check=True
        )
        return out.stdout.split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def eventually(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except OSError as error:  # not listening yet, connection reset, HTTP errors
            last_error, result = error, None
        if result:
            return result
        time.sleep(3)
    pytest.fail(f"not seen within {timeout:.0f}s: {what} (last error: {last_error})")


def prometheus_query(stack: Stack, expr: str) -> Any:
    query = urllib.parse.urlencode({"query": expr})
    answer = get_json(stack.url("PROMETHEUS_PORT", f"/api/v1/query?{query}"))
    assert answer["status"] == "success", answer
    return answer


def dashboard_queries() -> list[Any]:
    return list(load_deploy_module("grafana_generate", "grafana/generate.py").panel_queries())


def render_short_rules(target: Path) -> None:
    module = load_deploy_module("generate_rules", "prometheus/generate_rules.py")
    target.write_text(module.render(for_override="10s"), encoding="utf-8")


@pytest.fixture(scope="module")
def backend_ports_taken() -> Iterator[None]:
    """5432 and 6379 held by another program for as long as the stack runs."""
    with contextlib.ExitStack() as held:
        for port in BACKEND_PORTS:
            sock = held.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken already, as on this machine's CI
            sock.listen()
        yield


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, backend_ports_taken: None) -> Iterator[Stack]:
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True).returncode
    ):
        # `make smoke` asks for this test by name: not running it must not look like a pass.
        pytest.fail("the compose smoke test needs a running Docker engine (`docker info` failed)")
    work = tmp_path_factory.mktemp("smoke")
    work.chmod(0o755)  # the containers' users read the mounted files
    jobs, rules = work / "jobs", work / "rules"
    jobs.mkdir(mode=0o755)
    rules.mkdir(mode=0o755)
    (jobs / "smoke_jobs.py").write_text(JOB_MODULE, encoding="utf-8")
    render_short_rules(rules / "sundial.yml")
    override = work / "compose.smoke.yaml"
    override.write_text(
        f"services:\n  prometheus:\n    volumes:\n      - {rules}:/etc/prometheus/rules:ro\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        **{name: str(free_port()) for name in PORTS},
        "SUNDIAL_JOBS_DIR": str(jobs),
        "SUNDIAL_JOB_MODULES": "sundial_scheduler.jobs.examples,smoke_jobs",
    }
    for name in (
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
        "COMPOSE_PROFILES",
        "POSTGRES_PORT",
        "REDIS_PORT",
        "SUNDIAL_RUNBOOK_URL",
        "SUNDIAL_GRAFANA_URL",
    ):
        env.pop(name, None)
    make_args = [
        f"PROJECT={PROJECT}",
        f"ENV_FILE={work / 'smoke.env'}",  # missing: `make up` writes it
        f"COMPOSE_OVERRIDE={override}",
        "DOWN_ARGS=--volumes",
    ]
    running = Stack(env=env, env_file=work / "smoke.env", make_args=make_args)
    up = running.make("up")
    try:
        assert up.returncode == 0, f"make up failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
        yield running
    finally:
        running.make("down")


def test_make_up_brings_every_service_up_healthy(stack: Stack) -> None:
    services = {
        "postgres",
        "api",
        "scheduler",
        "worker",
        "prometheus",
        "alertmanager",
        "grafana",
        "mailpit",
        "webhook-sink",
    }
    for service in services:
        ids = stack.containers(service)
        expected = 2 if service in ("scheduler", "worker") else 1
        assert len(ids) == expected, f"{service}: {len(ids)} containers, expected {expected}"
        health = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Health.Status}}", *ids],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert health == ["healthy"] * expected, f"{service}: {health}"


def test_the_stack_runs_on_the_secrets_make_up_generated(stack: Stack) -> None:
    written = dict(
        line.split("=", 1) for line in stack.env_file.read_text().splitlines() if "=" in line
    )
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert len(written[name]) >= 32, name
    assert written["POSTGRES_PASSWORD"] in written["SUNDIAL_BACKEND_URL"]
    token = written["SUNDIAL_API_TOKEN"]
    run_now = urllib.request.Request(
        stack.url("API_PORT", "/api/v1/jobs/heartbeat_ping/run"),
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(run_now, timeout=10) as ran:
        assert ran.status in (200, 202)


def test_example_jobs_and_the_mounted_job_module_run_on_the_workers(stack: Stack) -> None:
    wanted = {(job_id, "success") for job_id in EXAMPLE_JOBS} | {(FAILING_JOB, "failure")}

    def runs_seen() -> list[dict[str, Any]] | None:
        page = get_json(stack.url("API_PORT", "/api/v1/runs?limit=200"))
        seen = {(run["job_id"], run["outcome"]) for run in page["items"]}
        return page["items"] if wanted <= seen else None

    runs = eventually(
        runs_seen, timeout=150, what="example jobs succeeding and the smoke job failing"
    )
    workers = get_json(stack.url("API_PORT", "/api/v1/workers"))
    assert workers["live"] == 2, workers
    assert {tuple(worker["queues"]) for worker in workers["workers"]} == {("default",)}
    # SUNDIAL_EXECUTOR=queue, the compose default: the workers ran them, not the scheduler.
    worker_ids = {worker["id"] for worker in workers["workers"]}
    ran_by = {run["instance_id"] for run in runs if (run["job_id"], run["outcome"]) in wanted}
    assert ran_by and ran_by <= worker_ids, f"runs by {ran_by}, workers {worker_ids}"


def test_prometheus_scrapes_every_target(stack: Stack) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = get_json(stack.url("PROMETHEUS_PORT", "/api/v1/targets"))["data"]
        active = targets["activeTargets"]
        jobs = [target["labels"]["job"] for target in active]
        healthy = all(target["health"] == "up" for target in active)
        enough = (
            jobs.count("sundial-scheduler") == 2
            and jobs.count("sundial-worker") == 2
            and {"sundial-api", "alertmanager"} <= set(jobs)
        )
        return active if healthy and enough else None

    eventually(
        all_up, timeout=90, what="both schedulers, both workers, the API and Alertmanager scraped"
    )


def test_the_workers_row_of_the_dashboard_has_data(stack: Stack) -> None:
    queries = [
        query for query in dashboard_queries() if query.needs_workers and not query.may_be_empty
    ]
    assert queries

    def empty() -> list[str] | None:
        missing = [
            f"{query.title}: {query.expr}"
            for query in queries
            if not prometheus_query(stack, query.expr)["data"]["result"]
        ]
        return None if missing else ["none"]

    eventually(empty, timeout=90, what="data in every panel of the Workers row")


def test_grafana_serves_the_provisioned_dashboard(stack: Stack) -> None:
    assert get_json(stack.url("GRAFANA_PORT", "/api/health"))["database"] == "ok"
    board = eventually(
        lambda: get_json(stack.url("GRAFANA_PORT", "/api/dashboards/uid/sundial-overview")),
        timeout=60,
        what="dashboard sundial-overview provisioned",
    )
    assert board["dashboard"]["title"] == "Sundial / Overview"


def test_every_alert_link_opens_its_runbook_section_and_the_dashboard(stack: Stack) -> None:
    # The rules as the stack's Prometheus loaded them, links rendered at its start.
    groups = eventually(
        lambda: get_json(stack.url("PROMETHEUS_PORT", "/api/v1/rules"))["data"]["groups"],
        timeout=60,
        what="Prometheus's rules",
    )
    alerts = [rule for group in groups for rule in group["rules"] if rule["type"] == "alerting"]
    assert alerts
    board = get_json(stack.url("GRAFANA_PORT", "/api/dashboards/uid/sundial-overview"))
    uid = board["dashboard"]["uid"]
    pages: dict[str, str] = {}
    for alert in alerts:
        runbook = alert["annotations"]["runbook_url"]
        page, anchor = runbook.split("#")
        assert page == stack.url("API_PORT", "/runbook").replace("127.0.0.1", "localhost")
        if page not in pages:
            with urllib.request.urlopen(page, timeout=10) as response:
                pages[page] = response.read().decode()
        assert f'id="{anchor}"' in pages[page], f"{alert['name']}: no #{anchor} at {page}"
        dashboard = urllib.parse.urlsplit(alert["annotations"]["dashboard_url"])
        assert dashboard.netloc == f"localhost:{stack.env['GRAFANA_PORT']}", alert["name"]
        assert dashboard.path == f"/d/{uid}", alert["name"]


def test_the_backend_ports_stay_the_hosts(stack: Stack) -> None:
    published = subprocess.run(
        ["docker", "port", *stack.containers("postgres")], capture_output=True, text=True
    ).stdout
    assert published == "", f"postgres publishes {published!r} without PUBLISH_BACKENDS"


def test_a_failing_critical_job_pages_by_mail_and_webhook(stack: Stack) -> None:
    def page_mail() -> dict[str, Any] | None:
        messages = get_json(stack.url("MAILPIT_PORT", "/api/v1/messages"))["messages"]
        return next(
            (
                message
                for message in messages
                if "SundialJobFailed" in message["Subject"]
                and FAILING_JOB in message["Subject"]
                and "[PAGE]" in message["Subject"]
            ),
            None,
        )

    mail = eventually(page_mail, timeout=240, what=f"a [PAGE] mail for {FAILING_JOB}")
    assert [to["Address"] for to in mail["To"]] == ["oncall@example.com"]

    def pager_webhook() -> bool:
        logs = subprocess.run(
            ["docker", "logs", *stack.containers("webhook-sink")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return any(
            '"/pager"' in line and "SundialJobFailed" in line and FAILING_JOB in line
            for line in logs.splitlines()
        )

    eventually(pager_webhook, timeout=60, what="the pager webhook for SundialJobFailed")


def test_no_worker_pages_while_both_are_stopped_and_resolves_when_they_return(
    stack: Stack,
) -> None:
    workers = stack.containers("worker")
    assert len(workers) == 2

    def no_worker_firing() -> bool:
        alerts = prometheus_query(stack, 'ALERTS{alertname="SundialNoWorker"}')["data"]["result"]
        return any(alert["metric"]["alertstate"] == "firing" for alert in alerts)

    assert not no_worker_firing()
    # SIGTERM: each removes its heartbeat record on the way out.
    subprocess.run(["docker", "stop", "--time", "5", *workers], capture_output=True, check=True)
    try:
        eventually(no_worker_firing, timeout=120, what="SundialNoWorker firing")
    finally:
        subprocess.run(["docker", "start", *workers], capture_output=True, check=True)
    eventually(lambda: not no_worker_firing(), timeout=120, what="SundialNoWorker resolved")


def test_make_down_leaves_nothing_running(stack: Stack) -> None:
    down = stack.make("down")
    assert down.returncode == 0, down.stderr[-2000:]
    assert stack.containers() == []
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert volumes == []
