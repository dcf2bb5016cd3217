"""Real processes for the alerting and metrics-lint tests, on free loopback ports.

Sundial's scheduler and API run from this checkout; Prometheus and Alertmanager come
from the PATH or from their images (``monitoring_tools``), with test-only configs derived from the
committed ones under ``deploy/`` (same scrape job names, same rules and routes, shorter
intervals).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import httpx
import sqlalchemy as sa
from deploy_modules import DEPLOY

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = ROOT / "tests" / "e2e"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
RENDER_ALERTMANAGER = DEPLOY / "alertmanager" / "render-config.sh"
BIN = Path(sys.executable).parent

T = TypeVar("T")


@contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty Postgres database on ``server_url``, dropped afterwards.

    Like ``tests/conftest.py``'s ``postgres_url``, for module-scoped fixtures.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    what: str, probe: Callable[[], T | None], within: float = 60.0, interval: float = 0.5
) -> T:
    """Poll ``probe`` until it returns something other than None/False/empty."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        time.sleep(interval)


def get(url: str, **params: str) -> httpx.Response | None:
    """GET ``url``; None when nothing answers."""
    try:
        return httpx.get(url, params=params, timeout=5)
    except httpx.TransportError:
        return None


def answers(url: str) -> bool:
    response = get(url)
    return response is not None and response.status_code == 200


class Service:
    """A subprocess with its output appended to ``<log_dir>/<name>.log``; restartable."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Service:
        assert not self.running, f"{self.name} is already running"
        self._close_log()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine or container dies."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.running:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def sundial_env(**settings: str) -> dict[str, str]:
    """This environment without any ``SUNDIAL_*`` of the caller's, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUNDIAL_")}
    env.update(
        {f"SUNDIAL_{key.upper()}": value for key, value in settings.items()},
        PYTHONPATH=str(E2E_DIR),
    )
    return env


def scheduler_service(
    backend_url: str, port: int, log_dir: Path, *, job_modules: str = "alerting_jobs"
) -> Service:
    env = sundial_env(
        backend_url=backend_url,
        job_modules=job_modules,
        metrics_port=str(port),
        metrics_host="127.0.0.1",
        shutdown_grace_seconds="2",
        leader_lease_seconds="3",
        log_format="json",
    )
    return Service("scheduler", [sys.executable, "-m", "sundial_scheduler"], env, log_dir)


def api_service(backend_url: str, port: int, log_dir: Path, *, executor: str = "local") -> Service:
    env = sundial_env(backend_url=backend_url, log_format="json", executor=executor)
    argv = [str(BIN / "sundial-api"), "--host", "127.0.0.1", "--port", str(port)]
    return Service("api", argv, env, log_dir)


def metric_value(text: str, series: str) -> float | None:
    """The value of one exact series (``name{labels}``) in exposition text."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split(" ")[1])
    return None


def scrape_job_names(config: Path = PROMETHEUS_CONFIG) -> list[str]:
    return re.findall(r"^\s*- job_name:\s*(\S+)\s*$", config.read_text(encoding="utf-8"), re.M)


def prometheus_config(
    *,
    targets: Mapping[str, str],
    alertmanager: str,
    rule_file: Path,
    interval: str = "1s",
    absent: Collection[str] = (),
) -> str:
    """The committed config's scrape jobs, on loopback ``targets`` (job name -> host:port),
    but for the ``absent`` ones (a stack without workers scrapes none).

    JSON is YAML, so no YAML library is needed.
    """
    expected = sorted(set(scrape_job_names()) - set(absent))
    assert sorted(targets) == expected, "scrape jobs differ from deploy/"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rule_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def alertmanager_config(
    env: Mapping[str, str],
    *,
    group_wait: str = "1s",
    group_interval: str = "2s",
) -> str:
    """``alertmanager.yml`` rendered by ``render-config.sh`` with ``env``, timings shortened.

    Routes, receivers, templates and inhibition stay as committed.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SUNDIAL_ALERT_")}
    result = subprocess.run(
        ["sh", str(RENDER_ALERTMANAGER), str(ALERTMANAGER_CONFIG)],
        env=clean | dict(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for name, value in env.items():
        assert f"'{value}'  # env: {name}" in text, f"{name} was not rendered"
    text, waits = re.subn(r"(?m)^(\s*group_wait:)\s*\S+", rf"\g<1> {group_wait}", text)
    text, intervals = re.subn(r"(?m)^(\s*group_interval:)\s*\S+", rf"\g<1> {group_interval}", text)
    assert waits and intervals, "alertmanager.yml has no group_wait/group_interval to shorten"
    return text
