"""The real ``sundial`` command against a real API (``sundial-api`` in a subprocess, SQLite).

A thread plays the scheduler leader's part in the command channel (heartbeats,
``pending_commands()`` + ``finish_command()``) so that the CLI's applied / rejected /
pending answers can be checked; tests with the real scheduler live elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from sundial.backends import Backend, open_backend
from sundial.constants import dead_after
from sundial.models import (
    CommandKind,
    CommandState,
    Instance,
    InstanceRole,
    JobOptions,
    JobState,
    JobView,
    Outcome,
    Run,
)
from sundial.triggers import CronSpec, IntervalSpec

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
TOKEN = "e2e-cli-token-0123456789abcdef"
REJECTED_JOB = "flaky"  # the fake leader rejects every command for this job
IGNORED_JOB = "ignored"  # ... and never applies commands for this one
START_TIMEOUT = 30.0
#: the API's lease setting, short so that a stopped leader soon counts as dead
LEASE_SECONDS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SUNDIAL_")}
    env.update(COLUMNS="160", NO_COLOR="1", **extra)
    return env


def seed(backend: Backend) -> None:
    now = datetime.now(UTC)

    def job(job_id: str, trigger: CronSpec | IntervalSpec, **changes: object) -> JobView:
        return JobView.model_validate(
            {
                "id": job_id,
                "name": job_id.replace("_", " ").title(),
                "func": f"sundial_scheduler.jobs.examples:{job_id}",
                "trigger": trigger,
                "trigger_text": trigger.describe(),
                "next_run_time": now + timedelta(minutes=7),
                **changes,
            }
        )

    backend.save_jobs(
        [
            job(
                "daily_reports", CronSpec(expression="0 6 * * *"), options=JobOptions(critical=True)
            ),
            job(
                "sync_inventory",
                IntervalSpec(seconds=900),
                kwargs={"warehouse": "north", "api_key": "do-not-show"},
                options=JobOptions(secret_kwargs=("api_key",), tags=("inventory",)),
            ),
            job("cleanup", IntervalSpec(seconds=3600), state=JobState.PAUSED, next_run_time=None),
            job(REJECTED_JOB, IntervalSpec(seconds=60)),
            job(IGNORED_JOB, IntervalSpec(seconds=60)),
        ]
    )
    started = now - timedelta(minutes=30)
    success = Run(job_id="daily_reports", scheduled_time=started, started_at=started)
    failed = Run(job_id="sync_inventory", scheduled_time=now - timedelta(minutes=15))
    failed = failed.model_copy(update={"started_at": failed.scheduled_time})
    backend.save_runs(
        [
            success.finish(Outcome.SUCCESS),
            failed.finish(Outcome.FAILURE, error=ConnectionError("warehouse API answered 502")),
        ]
    )


class FakeLeader:
    """Heartbeats as leader and finishes commands as the scheduler would."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.stop = threading.Event()
        self.instance = Instance(
            id="sched-e2e",
            host="localhost",
            pid=os.getpid(),
            role=InstanceRole.LEADER,
            version="0.1.0",
            started_at=datetime.now(UTC),
        )
        #: other instances it keeps alive, as if they heartbeat themselves
        self.others: list[Instance] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            for instance in [self.instance, *self.others]:
                self.backend.heartbeat(instance.model_copy(update={"last_seen": datetime.now(UTC)}))
            for command in self.backend.pending_commands():
                if command.job_id == IGNORED_JOB:
                    continue
                if command.job_id == REJECTED_JOB:
                    reason = f"function for {REJECTED_JOB!r} is not registered"
                    self.backend.finish_command(command.id, CommandState.REJECTED, reason)
                    continue
                if command.kind is CommandKind.PAUSE:
                    job = self.backend.get_job(command.job_id)
                    assert job is not None
                    paused = job.model_copy(
                        update={"state": JobState.PAUSED, "next_run_time": None}
                    )
                    self.backend.save_jobs([paused])
                self.backend.finish_command(command.id, CommandState.APPLIED, None)
            self.stop.wait(0.2)


@dataclass
class Stack:
    url: str
    backend: Backend
    leader: FakeLeader


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sundial-api exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"sundial-api did not answer at {url} within {START_TIMEOUT}s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    backend_url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'sundial.db'}"
    backend = open_backend(backend_url)
    backend.setup()
    seed(backend)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(
        SUNDIAL_BACKEND_URL=backend_url,
        SUNDIAL_API_TOKEN=TOKEN,
        SUNDIAL_LOG_LEVEL="WARNING",
        SUNDIAL_LEADER_LEASE_SECONDS=str(LEASE_SECONDS),
    )
    process = subprocess.Popen(
        [str(BIN / "sundial-api"), "--host", "127.0.0.1", "--port", str(port)], env=env
    )
    leader = FakeLeader(backend)
    try:
        wait_until_up(url, process)
        leader.thread.start()
        yield Stack(url=url, backend=backend, leader=leader)
    finally:
        leader.stop.set()
        process.terminate()
        process.wait(timeout=15)
        backend.close()


def sundial(
    stack: Stack, *args: str, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = clean_env(SUNDIAL_API_URL=stack.url, **({"SUNDIAL_API_TOKEN": token} if token else {}))
    return subprocess.run(
        [str(BIN / "sundial"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_health_check_detailed_with_a_live_leader(stack: Stack) -> None:
    time.sleep(0.5)  # first heartbeat
    result = sundial(stack, "health", "check", "--detailed")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Sundial: HEALTHY" in out
    assert "leader sched-e2e" in out
    assert "4 active, 1 paused" in out
    assert "daily_reports" in out and "Next executions" in out
    assert "sched-e2e" in out.split("Instance")[1]  # the instances table


def test_health_check_json(stack: Stack) -> None:
    result = sundial(stack, "health", "check", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0
    assert report["status"] == "healthy"
    assert report["scheduler"]["leader"] == "sched-e2e"


def test_health_check_fails_when_the_api_is_unreachable(stack: Stack) -> None:
    result = sundial(stack, "--api-url", f"http://127.0.0.1:{free_port()}", "health", "check")
    assert result.returncode == 1
    assert "cannot reach the Sundial API" in result.stderr


def test_jobs_list(stack: Stack) -> None:
    result = sundial(stack, "jobs", "list")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│")}
    assert "cron '0 6 * * *' (UTC)" in rows["daily_reports"]
    assert "success 30m ago" in rows["daily_reports"]
    assert "failure 15m ago" in rows["sync_inventory"]
    assert "5 job(s)" in result.stdout


def test_jobs_list_json_and_filters(stack: Stack) -> None:
    jobs = json.loads(sundial(stack, "jobs", "list", "--tag", "inventory", "--json").stdout)
    assert [job["id"] for job in jobs] == ["sync_inventory"]
    assert jobs[0]["trigger"]["seconds"] == 900
    limited = json.loads(sundial(stack, "jobs", "list", "--limit", "2", "--json").stdout)
    assert len(limited) == 2


def test_jobs_show_masks_secrets(stack: Stack) -> None:
    result = sundial(stack, "jobs", "show", "sync_inventory")
    assert result.returncode == 0
    assert "every 15 minutes" in result.stdout
    assert '"api_key": "***"' in result.stdout
    assert "do-not-show" not in result.stdout
    assert "success rate 0%" in result.stdout


def test_jobs_show_unknown(stack: Stack) -> None:
    result = sundial(stack, "jobs", "show", "nope")
    assert result.returncode == 1
    assert "no job with id 'nope'" in result.stderr


def test_pause_is_applied(stack: Stack) -> None:
    result = sundial(stack, "jobs", "pause", "daily_reports")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pause daily_reports: applied" in result.stdout
    shown = json.loads(sundial(stack, "jobs", "show", "daily_reports", "--json").stdout)
    assert shown["state"] == "paused"


@pytest.mark.parametrize("verb", ["resume", "run", "remove"])
def test_simple_commands_are_applied(stack: Stack, verb: str) -> None:
    result = sundial(stack, "jobs", verb, "cleanup")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{verb} cleanup: applied" in result.stdout


def test_reschedule_every(stack: Stack) -> None:
    result = sundial(stack, "jobs", "reschedule", "sync_inventory", "--every", "1h30m", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["kind"], answer["state"]) == ("reschedule", "applied")
    command = stack.backend.get_command(answer["command_id"])
    assert command is not None
    assert command.payload["trigger"]["seconds"] == 5400


def test_reschedule_refuses_invalid_cron(stack: Stack) -> None:
    result = sundial(stack, "jobs", "reschedule", "sync_inventory", "--cron", "0 25 * * *")
    assert result.returncode == 1
    assert "invalid cron expression '0 25 * * *'" in result.stderr


def test_reschedule_needs_exactly_one_trigger(stack: Stack) -> None:
    result = sundial(stack, "jobs", "reschedule", "x", "--cron", "* * * * *", "--every", "1m")
    assert result.returncode == 2
    assert "exactly one of --cron, --every, --at" in result.stderr


def test_preview_shows_a_cron_trigger_in_words_and_its_next_fires(stack: Stack) -> None:
    result = sundial(stack, "preview", "--cron", "30 2 * * sun", "--timezone", "Asia/Tokyo")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("At 02:30 on Sunday (Asia/Tokyo)  cron '30 2 * * sun'")
    assert len(lines) == 6
    assert all(line.strip().startswith("Sun ") and " 02:30 JST " in line for line in lines[1:])


def test_preview_refuses_invalid_cron_naming_field_value_and_rule(stack: Stack) -> None:
    result = sundial(stack, "preview", "--cron", "*/0 * * * *")
    assert result.returncode == 1
    assert "minute field '*/0': step must be at least 1" in result.stderr


def test_rejected_command_exits_1_with_the_reason(stack: Stack) -> None:
    result = sundial(stack, "jobs", "run", REJECTED_JOB)
    assert result.returncode == 1
    assert f"run {REJECTED_JOB}: rejected: function for 'flaky' is not registered" in result.stdout


def test_pending_command_exits_3(stack: Stack) -> None:
    result = sundial(stack, "jobs", "pause", IGNORED_JOB, "--wait", "0.5")
    assert result.returncode == 3
    assert "still pending after 0.5s" in result.stdout


def test_changes_need_the_token(stack: Stack) -> None:
    result = sundial(stack, "jobs", "pause", "sync_inventory", token=None)
    assert result.returncode == 1
    assert "missing bearer token" in result.stderr
    wrong = sundial(stack, "jobs", "pause", "sync_inventory", token="wrong-token-0123456789")
    assert wrong.returncode == 1
    assert "wrong bearer token (HTTP 401)" in wrong.stderr


def test_runs_list(stack: Stack) -> None:
    result = sundial(stack, "runs", "list", "--job", "sync_inventory")
    assert result.returncode == 0
    assert "ConnectionError: warehouse API answered 502" in result.stdout
    assert "1 run(s)" in result.stdout
    runs = json.loads(sundial(stack, "runs", "list", "--outcome", "success", "--json").stdout)
    assert [run["job_id"] for run in runs] == ["daily_reports"]


def test_workers_list(stack: Stack) -> None:
    now = datetime.now(UTC)
    worker = Instance(
        id="worker-e2e",
        host="box-7",
        pid=4711,
        role=InstanceRole.WORKER,
        version="0.1.0",
        started_at=now,
        queues=["default", "heavy"],
    )
    stack.backend.heartbeat(worker)
    stack.leader.others.append(worker)
    running = Run(job_id="daily_reports", scheduled_time=now, started_at=now)
    running = running.model_copy(update={"instance_id": "worker-e2e"})
    stack.backend.save_runs([running])

    result = sundial(stack, "workers", "list")

    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "worker-e2e" in line]
    for shown in (
        "box-7",
        "4711",
        "default, heavy",
        "alive",
        f"daily_reports ({running.run_id[:8]})",
    ):
        assert shown in line, line
    assert "1 live of 1 worker(s)" in result.stdout
    answer = json.loads(sundial(stack, "workers", "list", "--json").stdout)
    assert [listed["id"] for listed in answer["workers"]] == ["worker-e2e"]
    stack.backend.save_runs([running.finish(Outcome.SUCCESS)])
    stack.leader.others.clear()


def test_health_check_fails_without_a_live_leader(stack: Stack) -> None:
    stack.leader.stop.set()
    stack.leader.thread.join()
    time.sleep(dead_after(LEASE_SECONDS) + 0.5)  # the last heartbeat grows stale
    result = sundial(stack, "health", "check", "--detailed")
    assert result.returncode == 1
    assert "Sundial: UNHEALTHY" in result.stdout
    assert "no live leader" in result.stdout
