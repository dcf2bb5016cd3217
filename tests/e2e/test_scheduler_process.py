"""The real ``sundial-scheduler`` process on Postgres: runs, metrics, SIGTERM, history."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sundial.backends import open_backend
from sundial.models import Outcome

pytestmark = pytest.mark.e2e

TESTS_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, within: float = 20) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {within}s")
        time.sleep(0.2)


@pytest.fixture
def scheduler_process(
    postgres_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = os.environ | {
        "SUNDIAL_BACKEND_URL": postgres_url,
        "SUNDIAL_JOB_MODULES": "process_jobs",
        "SUNDIAL_METRICS_PORT": str(port),
        "SUNDIAL_SHUTDOWN_GRACE_SECONDS": "3",
        "SUNDIAL_LOG_FORMAT": "json",
        "PYTHONPATH": str(TESTS_DIR / "e2e"),
    }
    log_path = tmp_path / "scheduler.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sundial_scheduler"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield process, port
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_scheduler_runs_jobs_exports_metrics_and_drains_on_sigterm(
    scheduler_process: tuple[subprocess.Popen[str], int], postgres_url: str, tmp_path: Path
) -> None:
    process, port = scheduler_process
    ready = wait_http(f"http://127.0.0.1:{port}/readyz").json()
    assert ready["ready"] is True
    backend = open_backend(postgres_url)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        succeeded = backend.list_runs(job_id="every_second", outcome=Outcome.SUCCESS, limit=10)
        running = backend.list_runs(job_id="long_haul", outcome=Outcome.RUNNING, limit=10)
        if len(succeeded) >= 3 and running:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the example jobs did not run")

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(
            httpx.get(f"http://127.0.0.1:{port}/metrics").text
        )
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    runs = "sundial_job_runs_total"
    assert (value(runs, job_id="every_second", outcome="success") or 0) >= 3
    assert value(runs, job_id="every_second", outcome="timeout") == 0
    assert value("sundial_job_running", job_id="long_haul") == 1
    assert any(name == "sundial_scheduler_leader" for name, _ in samples)
    assert value("sundial_backend_up", backend="postgres") == 1
    assert wait_http(f"http://127.0.0.1:{port}/healthz").json()["status"] == "alive"

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0

    long_runs = backend.list_runs(job_id="long_haul", limit=100)
    assert {run.outcome for run in long_runs} == {Outcome.INTERRUPTED, Outcome.SKIPPED}
    interrupted = [run for run in long_runs if run.outcome is Outcome.INTERRUPTED]
    assert len(interrupted) == 1 and interrupted[0].finished_at is not None
    assert not backend.list_runs(outcome=Outcome.RUNNING, limit=10)
    assert backend.list_instances() == []
    backend.close()

    events = [
        json.loads(line)
        for line in (tmp_path / "scheduler.log").read_text().splitlines()
        if line.startswith("{")
    ]
    finished = [e for e in events if e.get("event") == "run.finished"]
    assert finished, "no run.finished log events"
    assert {"job_id", "run_id", "execution_time_ms", "outcome"} <= finished[0].keys()


def test_bad_configuration_stops_start_up_with_one_line() -> None:
    env = os.environ | {"SUNDIAL_MAX_WORKERS": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "sundial_scheduler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invalid configuration: SUNDIAL_MAX_WORKERS")
