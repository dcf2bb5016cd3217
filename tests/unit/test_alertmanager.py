"""Alertmanager config: valid, routes each severity and the Watchdog, renders env values,
and (with a real Alertmanager on loopback) groups by alertname/job_id and inhibits job
alerts while the scheduler or backend is down.

Needs ``amtool`` and ``alertmanager``, from the PATH or from the Alertmanager image
(``monitoring_tools``); the tests fail, not skip, without them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitoring_tools import command

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER = ROOT / "deploy" / "alertmanager"
CONFIG = ALERTMANAGER / "alertmanager.yml"
RENDER = ALERTMANAGER / "render-config.sh"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


def check_config(path: Path) -> None:
    result = run(*command("amtool"), "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_is_valid() -> None:
    check_config(CONFIG)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=SundialJobFailed", "job_id=daily_reports"], "pager"),
        (["severity=warning", "alertname=SundialJobFailed", "job_id=sync_inventory"], "team"),
        (["severity=critical", "alertname=SundialSchedulerDown"], "pager"),
        (["severity=warning", "alertname=SundialSchedulerDown", "instance=s1:9100"], "team"),
        (["severity=info", "alertname=SomethingInformational"], "team"),
        (["alertname=UnlabelledAlert"], "team"),
        (["severity=none", "alertname=Watchdog"], "deadmansswitch"),
    ],
)
def test_routes(labels: list[str], receiver: str) -> None:
    result = run(
        *command("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def render(env: dict[str, str], out: Path) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SUNDIAL_ALERT_")}
    result = run("sh", str(RENDER), str(CONFIG), str(out), env=clean | env)
    assert result.returncode == 0, result.stderr
    return out.read_text(encoding="utf-8")


def test_render_without_env_keeps_the_compose_defaults(tmp_path: Path) -> None:
    assert render({}, tmp_path / "am.yml") == CONFIG.read_text(encoding="utf-8")


def test_render_takes_smtp_and_webhook_settings_from_env(tmp_path: Path) -> None:
    out = tmp_path / "am.yml"
    text = render(
        {
            "SUNDIAL_ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
            "SUNDIAL_ALERT_SMTP_REQUIRE_TLS": "true",
            "SUNDIAL_ALERT_SMTP_PASSWORD": 'it\'s "secret" \\ &',
            "SUNDIAL_ALERT_SLACK_URL": "https://hooks.slack.com/services/T0/B0/XYZ",
            "SUNDIAL_ALERT_PAGER_EMAIL_TO": "oncall@example.org",
        },
        out,
    )
    check_config(out)
    assert "smtp_smarthost: 'smtp.example.org:587'" in text
    assert "smtp_require_tls: true " in text
    assert "smtp_auth_password: 'it''s \"secret\" \\ &'" in text
    assert "api_url: 'https://hooks.slack.com/services/T0/B0/XYZ'" in text
    assert "to: 'oncall@example.org'" in text
    assert "http://webhook-sink:8080/pager" in text, "unset variables keep their default"


# --- A real Alertmanager, for what amtool cannot show: grouping and inhibition. ---------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def api(base: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [
            *command("alertmanager"),
            f"--config.file={CONFIG}",
            f"--storage.path={tmp_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                api(base, "/api/v2/status")
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
                assert time.monotonic() < deadline, "alertmanager did not become ready"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def alert(**labels: str) -> dict[str, Any]:
    return {"labels": labels, "annotations": {"summary": labels["alertname"]}}


def states(base: str, until: tuple[str, str, str] | None = None) -> dict[tuple[str, str], Any]:
    """Alert statuses by (alertname, job_id); with ``until`` = (alertname, job_id, state),
    polled until that alert is in that state (Alertmanager takes in alerts asynchronously)."""
    deadline = time.monotonic() + 15
    while True:
        found = {
            (a["labels"]["alertname"], a["labels"].get("job_id", "")): a["status"]
            for a in api(base, "/api/v2/alerts")
        }
        if until is None or time.monotonic() > deadline:
            return found
        if found.get(until[:2], {}).get("state") == until[2]:
            return found
        time.sleep(0.2)


def test_job_alerts_are_inhibited_while_the_scheduler_is_down(alertmanager: str) -> None:
    api(
        alertmanager,
        "/api/v2/alerts",
        [
            alert(alertname="SundialJobOverdue", severity="critical", job_id="daily_reports"),
            alert(alertname="SundialApiDown", severity="critical", job="sundial-api"),
        ],
    )
    before = states(alertmanager, until=("SundialJobOverdue", "daily_reports", "active"))
    assert before[("SundialJobOverdue", "daily_reports")]["state"] == "active"

    api(
        alertmanager,
        "/api/v2/alerts",
        [alert(alertname="SundialSchedulerDown", severity="critical")],
    )
    after = states(alertmanager, until=("SundialJobOverdue", "daily_reports", "suppressed"))
    assert after[("SundialJobOverdue", "daily_reports")]["state"] == "suppressed"
    assert after[("SundialJobOverdue", "daily_reports")]["inhibitedBy"]
    assert after[("SundialApiDown", "")]["state"] == "active"
    assert after[("SundialSchedulerDown", "")]["state"] == "active"


def test_a_replica_down_warning_does_not_inhibit_job_alerts(alertmanager: str) -> None:
    api(
        alertmanager,
        "/api/v2/alerts",
        [
            alert(alertname="SundialSchedulerDown", severity="warning", instance="s1:9100"),
            alert(alertname="SundialJobFailed", severity="warning", job_id="sync_inventory"),
        ],
    )
    after = states(alertmanager, until=("SundialSchedulerDown", "", "active"))
    assert after[("SundialJobFailed", "sync_inventory")]["state"] == "active"


def test_alerts_are_grouped_by_alertname_and_job_id(alertmanager: str) -> None:
    api(
        alertmanager,
        "/api/v2/alerts",
        [
            alert(alertname="SundialJobFailed", severity="critical", job_id="a"),
            alert(alertname="SundialJobFailed", severity="critical", job_id="b"),
            alert(alertname="SundialJobOverdue", severity="critical", job_id="a"),
            alert(alertname="Watchdog", severity="none"),
        ],
    )
    expected = {
        ("SundialJobFailed", "a", "pager"),
        ("SundialJobFailed", "b", "pager"),
        ("SundialJobOverdue", "a", "pager"),
        ("Watchdog", None, "deadmansswitch"),
    }
    # Alertmanager files posted alerts into groups asynchronously: poll for a while.
    deadline = time.monotonic() + 15
    while True:
        groups = {
            (g["labels"].get("alertname"), g["labels"].get("job_id"), g["receiver"]["name"])
            for g in api(alertmanager, "/api/v2/alerts/groups")
        }
        if groups == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert groups == expected
