"""Alerts end to end, as a human receives them, with every process real and on loopback.

One stack for the module: Sundial's scheduler (running ``alerting_jobs``) and API on a
fresh Postgres database, Prometheus scraping both every second with the committed rules
rendered with short ``for:`` and thresholds (``generate_rules.Tuning``), Alertmanager with
the committed routes rendered by ``render-config.sh`` to point at a webhook sink (for
Slack) and an SMTP sink (for e-mail). The tests run in file order and share that stack:

a. a failing critical job pages (webhook + e-mail) with a runbook link that opens its
   section, a failing ordinary job warns;
b. a hanging job raises ``SundialJobTooLong``;
e. every dashboard query returns data from that Prometheus;
c. killing the scheduler pages ``SundialSchedulerDown``, and ``SundialJobOverdue`` fires
   from the API's catalog while Alertmanager holds it back (inhibition);
d. restarting the scheduler sends the resolved notifications.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from alerting_sinks import Mail, Post, SmtpSink, WebhookSink
from alerting_stack import (
    Service,
    alertmanager_config,
    answers,
    api_service,
    free_port,
    fresh_database,
    get,
    metric_value,
    prometheus_config,
    scheduler_service,
    wait_for,
)
from deploy_modules import load_deploy_module
from monitoring_tools import command

pytestmark = pytest.mark.e2e

conventions = load_deploy_module("conventions", "conventions.py")
rules = load_deploy_module("generate_rules", "prometheus/generate_rules.py")
dashboard = load_deploy_module("grafana_generate", "grafana/generate.py")

# Alerts wait 3 s (not minutes) before firing; thresholds shrink to match.
FOR = "3s"
TUNING = rules.Tuning(
    # report_export has no timeout and no finished run: its threshold is the default.
    too_long_default_seconds=4,
    too_long_floor_seconds=4,
    recording_interval="1s",
)
WAIT = 90.0  # generous: a shared 2-core machine
T = TypeVar("T")

CRITICAL_JOB = "payments_sync"
ORDINARY_FAILING_JOB = "newsletter_send"
HANGING_JOB = "report_export"
PAGER_EMAIL = "oncall@example.com"
TEAM_EMAIL = "team@example.com"


@dataclass
class Stack:
    scheduler: Service
    scheduler_url: str
    api_url: str
    prometheus_url: str
    alertmanager_url: str
    webhook: WebhookSink
    smtp: SmtpSink

    # --- Prometheus ---

    def query(self, expr: str) -> dict[str, Any]:
        response = get(f"{self.prometheus_url}/api/v1/query", query=expr)
        assert response is not None, "Prometheus does not answer"
        body: dict[str, Any] = response.json()
        assert body["status"] == "success", f"{expr!r}: {body}"
        return body

    def alerts(self, name: str, state: str = "firing", **labels: str) -> list[dict[str, Any]]:
        response = get(f"{self.prometheus_url}/api/v1/alerts")
        assert response is not None and response.status_code == 200
        return [
            alert
            for alert in response.json()["data"]["alerts"]
            if alert["labels"].get("alertname") == name
            and alert["state"] == state
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]

    # --- Alertmanager ---

    def alertmanager_alerts(self, name: str) -> list[dict[str, Any]]:
        response = get(
            f"{self.alertmanager_url}/api/v2/alerts",
            filter=f'alertname="{name}"',
        )
        assert response is not None and response.status_code == 200
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    # --- what a human receives ---

    def slack(self, receiver: str, title_has: str, *, since: float = 0.0) -> list[Post]:
        """Posts to ``/<receiver>`` with an attachment title containing ``title_has``."""
        return [
            post
            for post in self.webhook.posts(f"/{receiver}", since=since)
            if any(title_has in title for title in post.titles)
        ]

    def mail(self, to: str, subject_has: str, *, since: float = 0.0) -> list[Mail]:
        return [
            mail
            for mail in self.smtp.mails(since=since)
            if to in mail.recipients and subject_has in mail.subject
        ]

    def diagnostics(self) -> str:
        """What was received so far, and what Prometheus has firing or pending."""
        posts = "\n".join(
            f"  {p.path}: {p.titles or p.body.get('status')}" for p in self.webhook.posts()
        )
        mails = "\n".join(f"  {m.recipients}: {m.subject}" for m in self.smtp.mails())
        response = get(f"{self.prometheus_url}/api/v1/alerts")
        alerts = (
            "\n".join(f"  {a['state']} {a['labels']}" for a in response.json()["data"]["alerts"])
            if response is not None and response.status_code == 200
            else "  (Prometheus does not answer)"
        )
        return f"webhook posts:\n{posts}\nmails:\n{mails}\nPrometheus alerts:\n{alerts}"

    def wait(self, what: str, probe: Callable[[], T | None], within: float = WAIT) -> T:
        """``wait_for`` whose failure shows what the human did receive."""
        try:
            return wait_for(what, probe, within=within)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.diagnostics()}") from None

    def restart_scheduler(self) -> None:
        self.scheduler.start()
        self.wait("the scheduler to lead", lambda: leading(self.scheduler_url))


@pytest.fixture(scope="module")
def database(postgres_server_url: str) -> Iterator[str]:
    with fresh_database(postgres_server_url, "sundial_alerting") as url:
        yield url


def leading(scheduler_url: str) -> bool:
    response = get(f"{scheduler_url}/metrics")
    if response is None or response.status_code != 200:
        return False
    return any(
        line.startswith("sundial_scheduler_leader{") and line.endswith(" 1.0")
        for line in response.text.splitlines()
    )


@pytest.fixture(scope="module")
def stack(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("alerting")
    ports = {name: free_port() for name in ("scheduler", "api", "prometheus", "alertmanager")}
    loopback = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    urls = {name: f"http://{address}" for name, address in loopback.items()}

    webhook = WebhookSink().start()
    smtp = SmtpSink().start()

    rule_file = work / "sundial-rules.yml"
    # Runbook links to this API, which serves the runbook, as the compose stack's do.
    links = conventions.Target(runbook_url=f"{urls['api']}/runbook")
    rule_file.write_text(rules.render(rules.build_groups(TUNING, links), for_override=FOR))
    prometheus_yml = work / "prometheus.yml"
    prometheus_yml.write_text(
        prometheus_config(
            targets={
                "prometheus": loopback["prometheus"],
                "alertmanager": loopback["alertmanager"],
                conventions.API.name: loopback["api"],
                conventions.SCHEDULER.name: loopback["scheduler"],
            },
            alertmanager=loopback["alertmanager"],
            rule_file=rule_file,
            # The local executor: the scheduler runs the jobs, no worker is scraped.
            absent=[conventions.WORKER.name],
        )
    )
    alertmanager_yml = work / "alertmanager.yml"
    alertmanager_yml.write_text(
        alertmanager_config(
            {
                "SUNDIAL_ALERT_SMTP_SMARTHOST": smtp.address,
                "SUNDIAL_ALERT_PAGER_SLACK_URL": f"{webhook.url}/pager",
                "SUNDIAL_ALERT_SLACK_URL": f"{webhook.url}/team",
                "SUNDIAL_ALERT_DEADMANSSWITCH_URL": f"{webhook.url}/watchdog",
            }
        )
    )
    for check in (
        [*command("promtool"), "check", "config", str(prometheus_yml)],
        [*command("amtool"), "check-config", str(alertmanager_yml)],
    ):
        result = subprocess.run(check, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    scheduler = scheduler_service(database, ports["scheduler"], work)
    services = [
        scheduler,
        api_service(database, ports["api"], work),
        Service(
            "alertmanager",
            [
                *command("alertmanager"),
                f"--config.file={alertmanager_yml}",
                f"--storage.path={work / 'alertmanager-data'}",
                f"--web.listen-address={loopback['alertmanager']}",
                "--cluster.listen-address=",
            ],
            {},
            work,
        ),
        Service(
            "prometheus",
            [
                *command("prometheus"),
                f"--config.file={prometheus_yml}",
                f"--storage.tsdb.path={work / 'prometheus-data'}",
                f"--web.listen-address={loopback['prometheus']}",
                # Alerts firing at the first evaluation, before Alertmanager is discovered,
                # would otherwise wait a minute for the next send.
                "--rules.alert.resend-delay=2s",
            ],
            {},
            work,
        ),
    ]
    ready = {
        "scheduler": lambda: leading(urls["scheduler"]),
        "api": lambda: answers(f"{urls['api']}/health"),
        "alertmanager": lambda: answers(f"{urls['alertmanager']}/-/ready"),
        "prometheus": lambda: answers(f"{urls['prometheus']}/-/ready"),
    }
    stack = Stack(
        scheduler=scheduler,
        scheduler_url=urls["scheduler"],
        api_url=urls["api"],
        prometheus_url=urls["prometheus"],
        alertmanager_url=urls["alertmanager"],
        webhook=webhook,
        smtp=smtp,
    )
    try:
        # In this order, so that Prometheus's first evaluations see everything up.
        for service in services:
            service.start()
            wait_for(f"{service.name} to be ready", ready[service.name], within=WAIT)
        yield stack
    except BaseException:
        print(stack.diagnostics())  # noqa: T201
        raise
    finally:
        for service in reversed(services):
            service.stop()
            print(f"--- {service.name} log (tail) ---\n{service.log_tail(15)}")  # noqa: T201
        webhook.stop()
        smtp.stop()


def test_a_failing_critical_job_pages_by_webhook_and_email(stack: Stack) -> None:
    # Slack-compatible post to the pager route, which only severity=critical reaches.
    (post, *_) = stack.wait(
        "SundialJobFailed for payments_sync at the pager webhook",
        lambda: stack.slack("pager", f"SundialJobFailed {CRITICAL_JOB}"),
    )
    title = next(t for t in post.titles if "SundialJobFailed" in t)
    assert title.startswith("[FIRING") and "critical" in title, title
    assert f"Sundial job {CRITICAL_JOB} failed" in post.text
    # The runbook link in the page opens the alert's section of the runbook.
    match = re.search(r"Runbook: (\S+)", post.text)
    assert match, post.text
    assert match.group(1) == f"{stack.api_url}/runbook#sundialjobfailed"
    page = get(match.group(1).split("#")[0])
    assert page is not None and page.status_code == 200
    assert '<h2 id="sundialjobfailed">' in page.text
    assert f"var-job_id={CRITICAL_JOB}" in post.text

    (mail, *_) = stack.wait(
        "the SundialJobFailed page in the mailbox",
        lambda: stack.mail(PAGER_EMAIL, f"SundialJobFailed {CRITICAL_JOB}"),
    )
    assert mail.subject.startswith("[PAGE] [FIRING"), mail.subject
    assert CRITICAL_JOB in mail.body and "failed or timed-out" in mail.body

    # Prometheus's own view: the critical variant only, for the critical job.
    firing = stack.alerts("SundialJobFailed", job_id=CRITICAL_JOB)
    assert [a["labels"]["severity"] for a in firing] == ["critical"]


def test_a_failing_ordinary_job_only_warns(stack: Stack) -> None:
    (post, *_) = stack.wait(
        "SundialJobFailed for newsletter_send at the team webhook",
        lambda: stack.slack("team", f"SundialJobFailed {ORDINARY_FAILING_JOB}"),
    )
    assert any("warning" in t for t in post.titles), post.titles
    stack.wait(
        "the warning in the team mailbox",
        lambda: stack.mail(TEAM_EMAIL, f"SundialJobFailed {ORDINARY_FAILING_JOB}"),
    )
    assert not stack.slack("pager", f"SundialJobFailed {ORDINARY_FAILING_JOB}")
    assert not stack.mail(PAGER_EMAIL, ORDINARY_FAILING_JOB)


def test_watchdog_reaches_the_dead_mans_switch(stack: Stack) -> None:
    (post, *_) = stack.wait(
        "the Watchdog at the dead man's switch",
        lambda: stack.webhook.posts("/watchdog"),
    )
    # Alertmanager's own webhook format, not Slack's.
    assert post.body["status"] == "firing"
    assert post.body["receiver"] == "deadmansswitch"
    assert [a["labels"]["alertname"] for a in post.body["alerts"]] == ["Watchdog"]
    assert not stack.slack("pager", "Watchdog") and not stack.slack("team", "Watchdog")


def test_b_a_hanging_job_is_reported_running_too_long(stack: Stack) -> None:
    (post, *_) = stack.wait(
        "SundialJobTooLong for report_export at the team webhook",
        lambda: stack.slack("team", f"SundialJobTooLong {HANGING_JOB}"),
    )
    assert f"Sundial job {HANGING_JOB} is running too long" in post.text
    (alert,) = stack.alerts("SundialJobTooLong", job_id=HANGING_JOB)
    assert float(alert["value"]) > TUNING.too_long_default_seconds
    # The quick jobs stay under the floor.
    assert not stack.alerts("SundialJobTooLong", job_id="inventory_refresh")


def test_e_every_dashboard_query_returns_data(stack: Stack) -> None:
    # This stack runs its jobs in the scheduler (local executor): the Workers row is the
    # compose smoke test's, where workers run them.
    queries = [q for q in dashboard.panel_queries() if not q.needs_workers]
    assert queries, "the dashboard has no queries"
    # Panels allowed to be empty, and why: "Oldest running" shows runs in progress, so it
    # is empty whenever nothing runs, and "Oldest queued" runs waiting for a worker. Here
    # report_export hangs, so "Oldest running" must have data too.
    assert dashboard.EMPTY_WHEN_HEALTHY == {"Oldest running", "Oldest queued"}, (
        "say why the new one may be empty"
    )
    assert all(q.title in dashboard.EMPTY_WHEN_HEALTHY for q in queries if q.may_be_empty)

    def empty_panels() -> list[str]:
        # Every query is valid (stack.query asserts status "success") and returns series.
        return [
            f"{q.title}: {q.expr}" for q in queries if not stack.query(q.expr)["data"]["result"]
        ]

    # Rate windows need a few scrapes; poll until every panel has data.
    deadline = time.monotonic() + WAIT
    while (empty := empty_panels()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not empty, "dashboard panels without data:\n" + "\n".join(empty)

    # The Job variable lists the test jobs.
    response = get(
        f"{stack.prometheus_url}/api/v1/label/job_id/values", **{"match[]": "sundial_job_info"}
    )
    assert response is not None
    assert {CRITICAL_JOB, HANGING_JOB} <= set(response.json()["data"])


def test_c_killing_the_scheduler_pages_and_jobs_become_overdue(stack: Stack) -> None:
    # Healthy so far: the catalog keeps up, nothing is overdue, the scheduler is up.
    assert not stack.alerts("SundialJobOverdue", state="pending")
    assert not stack.alerts("SundialJobOverdue")
    assert not stack.alerts("SundialSchedulerDown")

    killed_at = time.time()
    stack.scheduler.kill()

    (post, *_) = stack.wait(
        "SundialSchedulerDown at the pager webhook",
        lambda: stack.slack("pager", "SundialSchedulerDown", since=killed_at),
    )
    assert any(t.startswith("[FIRING") for t in post.titles), post.titles
    assert "No Sundial scheduler is working" in post.text
    stack.wait(
        "the SundialSchedulerDown page in the mailbox",
        lambda: stack.mail(PAGER_EMAIL, "SundialSchedulerDown", since=killed_at),
    )

    # Nothing exports per-job metrics now; the API's catalog still shows next run times.
    overdue = stack.wait(
        "SundialJobOverdue for payments_sync in Prometheus",
        lambda: stack.alerts("SundialJobOverdue", job_id=CRITICAL_JOB),
    )
    assert overdue[0]["labels"]["severity"] == "critical"  # remembered from job_info
    stack.wait(
        "SundialJobOverdue, as a warning, for an ordinary job",
        lambda: stack.alerts("SundialJobOverdue", job_id="inventory_refresh", severity="warning"),
    )

    # Alertmanager has it, inhibited by SundialSchedulerDown: one page for the cause.
    def inhibited() -> list[dict[str, Any]]:
        return [
            alert
            for alert in stack.alertmanager_alerts("SundialJobOverdue")
            if alert["status"]["state"] == "suppressed" and alert["status"]["inhibitedBy"]
        ]

    stack.wait("Alertmanager to inhibit SundialJobOverdue", inhibited)
    assert not stack.slack("pager", "SundialJobOverdue")
    assert not stack.slack("team", "SundialJobOverdue")


def test_d_recovery_sends_resolved_notifications(stack: Stack) -> None:
    if stack.scheduler.running:
        pytest.fail("the scheduler is still running: the kill scenario did not run")
    stack.wait(
        "SundialSchedulerDown to fire before the restart",
        lambda: stack.alerts("SundialSchedulerDown"),
    )
    restarted_at = time.time()
    stack.restart_scheduler()

    (post, *_) = stack.wait(
        "a resolved SundialSchedulerDown at the pager webhook",
        lambda: [
            p
            for p in stack.slack("pager", "SundialSchedulerDown", since=restarted_at)
            if any(t.startswith("[RESOLVED]") for t in p.titles)
        ],
    )
    assert post.body["attachments"][0].get("color") == "good"
    stack.wait(
        "the resolved SundialSchedulerDown mail",
        lambda: stack.mail(PAGER_EMAIL, "[RESOLVED] SundialSchedulerDown", since=restarted_at),
    )
    assert not stack.alerts("SundialSchedulerDown")

    # The restarted scheduler runs jobs again, and the catalog catches up.
    def runs_again() -> bool:
        response = get(f"{stack.scheduler_url}/metrics")
        series = f'sundial_job_runs_total{{job_id="{CRITICAL_JOB}",outcome="failure"}}'
        value = metric_value(response.text, series) if response is not None else None
        return value is not None and value >= 1

    stack.wait("the restarted scheduler to run payments_sync", runs_again)
    stack.wait(
        "SundialJobOverdue to clear",
        lambda: not stack.alerts("SundialJobOverdue") and not stack.alerts("SundialSchedulerDown"),
    )
