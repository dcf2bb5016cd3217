"""The API on each real backend (SQLite, Postgres, Redis): reads, commands, health,
metrics and the event stream. The scheduler's side of the command channel is played by
``pending_commands()`` + ``finish_command()`` on the same backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_harness import finish_first, serving
from fastapi.testclient import TestClient

from sundial.backends import Backend
from sundial.config import Settings
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
from sundial_api.main import create_app

pytestmark = pytest.mark.integration

TOKEN = "integration-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_job(job_id: str, **changes: Any) -> JobView:
    trigger = changes.pop("trigger", CronSpec(expression="*/5 * * * *"))
    changes.setdefault("next_run_time", datetime.now(UTC) + timedelta(minutes=5))
    return JobView(
        id=job_id,
        name=job_id,
        func=f"jobs.example:{job_id}",
        trigger=trigger,
        trigger_text=trigger.describe(),
        **changes,
    )


def make_run(job_id: str, outcome: Outcome, scheduled: datetime) -> Run:
    run = Run(job_id=job_id, scheduled_time=scheduled, started_at=scheduled, instance_id="s1")
    return run if outcome is Outcome.RUNNING else run.finish(outcome)


@pytest.fixture
def client(backend: Backend, backend_url: str) -> Iterator[TestClient]:
    """An API on the same backend as ``backend`` (opened by the app's own lifespan)."""
    backend.save_jobs(
        [
            make_job("alpha", options=JobOptions(tags=("nightly",))),
            make_job(
                "beta",
                trigger=IntervalSpec(seconds=60),
                kwargs={"user": "svc", "password": "p4ss"},
                options=JobOptions(secret_kwargs=("password",)),
            ),
            make_job("gamma", state=JobState.PAUSED, next_run_time=None),
        ]
    )
    settings = Settings(backend_url=backend_url, api_token=TOKEN)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_jobs_page_through_the_catalog(client: TestClient, backend: Backend) -> None:
    backend.save_jobs([make_job(f"bulk_{n:03d}") for n in range(23)])
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/jobs", params=params).json()
        ids += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids)) == 26
    paused = client.get("/api/v1/jobs", params={"state": "paused"}).json()["items"]
    assert [job["id"] for job in paused] == ["gamma"]
    tagged = client.get("/api/v1/jobs", params={"tag": "nightly"}).json()["items"]
    assert [job["id"] for job in tagged] == ["alpha"]


def test_job_detail_and_runs(client: TestClient, backend: Backend) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    outcomes = [Outcome.SUCCESS, Outcome.FAILURE, Outcome.SUCCESS, Outcome.TIMEOUT]
    backend.save_runs(
        [
            make_run("beta", outcome, base + timedelta(minutes=n))
            for n, outcome in enumerate(outcomes)
        ]
    )
    detail = client.get("/api/v1/jobs/beta").json()
    assert detail["kwargs"] == {"user": "svc", "password": "***"}
    assert detail["trigger_text"] == "every minute"
    assert detail["recent"]["runs"] == 4
    assert detail["recent"]["success_rate"] == 0.5
    assert detail["last_run"]["outcome"] == "timeout"
    assert detail["last_run"]["consecutive_failures"] == 1
    runs = client.get("/api/v1/jobs/beta/runs", params={"outcome": "success"}).json()["items"]
    assert len(runs) == 2


def test_runs_cursor_pagination(client: TestClient, backend: Backend) -> None:
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    same_time = [make_run("alpha", Outcome.SUCCESS, moment) for _ in range(4)]
    later = [make_run("beta", Outcome.FAILURE, moment + timedelta(seconds=n + 1)) for n in range(3)]
    backend.save_runs(same_time + later)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/runs", params=params).json()
        seen += [run["run_id"] for run in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(run.run_id for run in same_time + later)
    assert seen[:3] == [run.run_id for run in reversed(later)]
    since = (moment + timedelta(seconds=2)).isoformat()
    recent = client.get("/api/v1/runs", params={"since": since, "job_id": "beta"}).json()
    assert len(recent["items"]) == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "kind"),
    [
        ("POST", "/api/v1/jobs/alpha/pause", None, CommandKind.PAUSE),
        ("POST", "/api/v1/jobs/gamma/resume", None, CommandKind.RESUME),
        ("POST", "/api/v1/jobs/alpha/run", None, CommandKind.RUN),
        (
            "PATCH",
            "/api/v1/jobs/alpha",
            {"trigger": {"type": "cron", "fields": {"hour": "2", "minute": "30"}}},
            CommandKind.RESCHEDULE,
        ),
        ("PATCH", "/api/v1/jobs/alpha", {"options": {"retries": 2}}, CommandKind.MODIFY),
        ("DELETE", "/api/v1/jobs/beta", None, CommandKind.REMOVE),
        (
            "POST",
            "/api/v1/jobs",
            {
                "id": "delta",
                "func": "jobs.example:delta",
                "trigger": {"type": "interval", "seconds": 30},
            },
            CommandKind.ADD,
        ),
    ],
)
def test_each_mutation_queues_a_command_the_scheduler_can_read(
    client: TestClient, backend: Backend, method: str, path: str, body: Any, kind: CommandKind
) -> None:
    response = client.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    pending = backend.pending_commands()
    assert [(c.id, c.kind) for c in pending] == [(response.json()["command_id"], kind)]
    backend.finish_command(pending[0].id, CommandState.APPLIED, None)
    shown = client.get(response.json()["url"]).json()
    assert shown["state"] == "applied"
    assert backend.pending_commands() == []


def test_wait_sees_a_rejection(client: TestClient, backend: Backend) -> None:
    body = {
        "id": "delta",
        "func": "nowhere:missing",
        "trigger": {"type": "interval", "seconds": 30},
    }
    scheduler = threading.Thread(
        target=finish_first,
        args=(backend, CommandState.REJECTED, "function nowhere:missing is not registered"),
    )
    scheduler.start()
    response = client.post("/api/v1/jobs?wait=10", json=body, headers=AUTH)
    scheduler.join()
    assert response.status_code == 200
    assert response.json()["state"] == "rejected"
    assert "not registered" in response.json()["reason"]


def test_bad_input_changes_nothing(client: TestClient, backend: Backend) -> None:
    assert client.post("/api/v1/jobs/nope/pause", headers=AUTH).status_code == 404
    bad_cron = {"trigger": {"type": "cron", "expression": "0 0 31 2 * *"}}
    assert client.patch("/api/v1/jobs/alpha", json=bad_cron, headers=AUTH).status_code == 422
    taken = {"id": "alpha", "func": "m:f", "trigger": {"type": "interval", "seconds": 5}}
    assert client.post("/api/v1/jobs", json=taken, headers=AUTH).status_code == 409
    assert client.post("/api/v1/jobs/alpha/pause").status_code == 401
    assert backend.pending_commands() == []
    assert client.get("/api/v1/commands/unknown").status_code == 404


def test_health_and_scheduler(client: TestClient, backend: Backend) -> None:
    assert client.get("/health/detailed").json()["status"] == "unhealthy"
    backend.heartbeat(
        Instance(
            id="s1",
            host="h",
            pid=1,
            role=InstanceRole.LEADER,
            version="0.1.0",
            started_at=datetime.now(UTC),
        )
    )
    report = client.get("/health/detailed").json()
    assert report["status"] == "healthy", report["problems"]
    assert report["backend"]["kind"] == backend.kind
    assert report["jobs"] == {"total": 3, "scheduled": 2, "paused": 1}
    assert [run["job_id"] for run in report["next_runs"]] == ["alpha", "beta"]
    assert client.get("/health/ready").json()["backend"] == backend.kind
    assert client.get("/api/v1/scheduler").json()["leader"] == "s1"


def test_catalog_metrics(client: TestClient, backend: Backend) -> None:
    now = datetime.now(UTC)
    backend.save_runs(
        [
            make_run("alpha", Outcome.SUCCESS, now - timedelta(minutes=2)),
            make_run("alpha", Outcome.FAILURE, now - timedelta(minutes=1)),
        ]
    )
    text = client.get("/metrics").text
    assert "sundial_catalog_backend_up 1.0" in text
    assert 'sundial_catalog_job_consecutive_failures{job_id="alpha"} 1.0' in text
    assert 'sundial_catalog_job_consecutive_failures{job_id="gamma"} 0.0' in text
    assert 'sundial_catalog_job_next_run_timestamp_seconds{job_id="beta"}' in text
    assert 'sundial_catalog_job_next_run_timestamp_seconds{job_id="gamma"}' not in text
    assert 'sundial_catalog_job_last_success_timestamp_seconds{job_id="alpha"}' in text
    assert "sundial_catalog_scheduler_heartbeat_age_seconds" not in text
    assert 'route="/metrics"' in client.get("/metrics").text


# event stream over a real HTTP server ---------------------------------------------------
@pytest.fixture
def server_url(backend: Backend, backend_url: str) -> Iterator[str]:
    backend.save_jobs([make_job("alpha")])
    with serving(create_app(Settings(backend_url=backend_url, api_token=TOKEN))) as url:
        yield url


def read_events(response: httpx.Response, wanted: int, timeout: float) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    name = ""
    deadline = time.monotonic() + timeout
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name:
            events.append((name, line.removeprefix("data: ")))
            name = ""
            if len(events) >= wanted:
                break
        assert time.monotonic() < deadline, f"only got {events}"
    return events


def test_events_stream_runs_and_job_changes(server_url: str, backend: Backend) -> None:
    with httpx.stream("GET", f"{server_url}/api/v1/events", timeout=15) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        run = make_run("alpha", Outcome.RUNNING, datetime.now(UTC))
        backend.save_runs([run])
        time.sleep(1.2)
        backend.save_runs([run.finish(Outcome.SUCCESS)])
        paused = backend.get_job("alpha")
        assert paused is not None
        backend.save_jobs(
            [paused.model_copy(update={"state": JobState.PAUSED, "updated_at": datetime.now(UTC)})]
        )
        events = read_events(response, wanted=3, timeout=10)
    names = [name for name, _ in events]
    assert names[:2] == ["run.started", "run.finished"]
    assert run.run_id in events[0][1] and '"outcome":"success"' in events[1][1]
    assert "job.changed" in names
