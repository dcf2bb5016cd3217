"""The API against an in-memory backend: auth, validation, pagination, metrics, health."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from api_harness import finish_first
from fakes import FakeBackend  # tests/ is on sys.path (rootdir conftest)
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from records import NOW, leader, make_job, make_run, worker
from timing import within

from sundial.config import Settings, get_settings
from sundial.models import (
    CommandKind,
    CommandState,
    JobOptions,
    JobState,
    Outcome,
)
from sundial.triggers import IntervalSpec
from sundial_api.events import EventFeed
from sundial_api.main import create_app
from sundial_api.metrics import CatalogCollector

TOKEN = "unit-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def backend() -> FakeBackend:
    fake = FakeBackend()
    fake.save_jobs(
        [
            make_job("daily_reports", options=JobOptions(tags=("reports",), critical=True)),
            make_job(
                "sync_inventory",
                trigger=IntervalSpec(seconds=900),
                kwargs={"region": "eu", "api_key": "hunter2"},
                options=JobOptions(secret_kwargs=("api_key",)),
            ),
        ]
    )
    return fake


def client_for(backend: FakeBackend, token: str | None = TOKEN) -> Iterator[TestClient]:
    settings = Settings(api_token=token, backend_url="sqlite:///unused.db")
    with TestClient(create_app(settings, backend=backend)) as client:
        yield client


@pytest.fixture
def client(backend: FakeBackend) -> Iterator[TestClient]:
    yield from client_for(backend)


@pytest.fixture
def tokenless_client(backend: FakeBackend) -> Iterator[TestClient]:
    yield from client_for(backend, token=None)


CRON_BODY = {"trigger": {"type": "cron", "expression": "0 6 * * *"}}
NEW_JOB = {"id": "new_job", "func": "jobs.example:task", **CRON_BODY}
MUTATIONS = [
    ("POST", "/api/v1/jobs", NEW_JOB),
    ("POST", "/api/v1/jobs/daily_reports/pause", None),
    ("POST", "/api/v1/jobs/daily_reports/resume", None),
    ("POST", "/api/v1/jobs/daily_reports/run", None),
    ("PATCH", "/api/v1/jobs/daily_reports", CRON_BODY),
    ("DELETE", "/api/v1/jobs/daily_reports", None),
]


def error_of(response: Any) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, str] = body["error"]
    return error


# auth -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_mutations_refuse_missing_or_wrong_token(
    client: TestClient,
    backend: FakeBackend,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert backend.commands == {}


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_mutations_refused_when_no_token_configured(
    tokenless_client: TestClient, backend: FakeBackend, method: str, path: str, body: Any
) -> None:
    response = tokenless_client.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 403
    assert "SUNDIAL_API_TOKEN" in error_of(response)["message"]
    assert backend.commands == {}


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_mutations_with_token_queue_one_command(
    client: TestClient, backend: FakeBackend, method: str, path: str, body: Any
) -> None:
    response = client.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["state"] == "pending"
    assert answer["url"] == f"/api/v1/commands/{answer['command_id']}"
    assert response.headers["Location"] == answer["url"]
    assert list(backend.commands) == [answer["command_id"]]


def test_reads_need_no_token(tokenless_client: TestClient) -> None:
    assert tokenless_client.get("/api/v1/jobs").status_code == 200


# commands -------------------------------------------------------------------------------
def test_patch_with_trigger_alone_reschedules(client: TestClient, backend: FakeBackend) -> None:
    body = {"trigger": {"type": "interval", "seconds": 60}}
    answer = client.patch("/api/v1/jobs/daily_reports", json=body, headers=AUTH).json()
    command = backend.commands[answer["command_id"]]
    assert command.kind is CommandKind.RESCHEDULE
    assert command.payload["trigger"]["seconds"] == 60


def test_patch_with_options_modifies(client: TestClient, backend: FakeBackend) -> None:
    body = {"name": "Reports", "options": {"retries": 3}}
    answer = client.patch("/api/v1/jobs/daily_reports", json=body, headers=AUTH).json()
    command = backend.commands[answer["command_id"]]
    assert command.kind is CommandKind.MODIFY
    assert command.payload["options"] == {"retries": 3}
    assert command.payload["name"] == "Reports"


def test_add_payload_is_the_add_job_model(client: TestClient, backend: FakeBackend) -> None:
    body = {**NEW_JOB, "kwargs": {"n": 1}, "options": {"timeout_seconds": 30}}
    answer = client.post("/api/v1/jobs", json=body, headers=AUTH).json()
    command = backend.commands[answer["command_id"]]
    assert (command.kind, command.job_id) == (CommandKind.ADD, "new_job")
    assert "id" not in command.payload
    assert command.payload["func"] == "jobs.example:task"
    assert command.payload["options"]["timeout_seconds"] == 30


def test_adding_an_existing_id_conflicts(client: TestClient, backend: FakeBackend) -> None:
    response = client.post("/api/v1/jobs", json={**NEW_JOB, "id": "daily_reports"}, headers=AUTH)
    assert response.status_code == 409
    assert "daily_reports" in error_of(response)["message"]
    assert backend.commands == {}


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("POST", "/pause", None),
        ("POST", "/resume", None),
        ("POST", "/run", None),
        ("PATCH", "", CRON_BODY),
        ("DELETE", "", None),
    ],
)
def test_unknown_job_is_404_and_queues_nothing(
    client: TestClient, backend: FakeBackend, method: str, suffix: str, body: Any
) -> None:
    response = client.request(method, f"/api/v1/jobs/nope{suffix}", json=body, headers=AUTH)
    assert response.status_code == 404
    assert error_of(response)["message"] == "no job with id 'nope'"
    assert backend.commands == {}


@pytest.mark.parametrize(
    ("state", "reason"), [(CommandState.APPLIED, None), (CommandState.REJECTED, "no such function")]
)
def test_wait_returns_the_finished_state(
    client: TestClient, backend: FakeBackend, state: CommandState, reason: str | None
) -> None:
    leader_thread = threading.Thread(target=finish_first, args=(backend, state, reason))
    leader_thread.start()
    response = client.post("/api/v1/jobs/daily_reports/pause?wait=5", headers=AUTH)
    leader_thread.join()
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["reason"]) == (state.value, reason)
    shown = client.get(response.json()["url"]).json()
    assert (shown["state"], shown["reason"]) == (state.value, reason)


def test_wait_gives_up_with_202_pending(client: TestClient) -> None:
    started = time.monotonic()
    response = client.post("/api/v1/jobs/daily_reports/run?wait=0.3", headers=AUTH)
    assert 0.3 <= time.monotonic() - started < within(0.3)
    assert response.status_code == 202
    assert response.json()["state"] == "pending"


def test_wait_beyond_limit_is_refused(client: TestClient, backend: FakeBackend) -> None:
    response = client.post("/api/v1/jobs/daily_reports/run?wait=31", headers=AUTH)
    assert response.status_code == 422
    assert "wait" in error_of(response)["message"]
    assert backend.commands == {}


def test_unknown_command_is_404(client: TestClient) -> None:
    response = client.get("/api/v1/commands/does-not-exist")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_command_view_masks_secret_kwargs(client: TestClient) -> None:
    body = {
        **NEW_JOB,
        "kwargs": {"user": "bob", "password": "pa55"},
        "options": {"secret_kwargs": ["password"]},
    }
    answer = client.post("/api/v1/jobs", json=body, headers=AUTH).json()
    shown = client.get(answer["url"]).json()
    assert shown["payload"]["kwargs"] == {"user": "bob", "password": "***"}
    modify = {"kwargs": {"api_key": "new-secret", "region": "us"}}
    answer = client.patch("/api/v1/jobs/sync_inventory", json=modify, headers=AUTH).json()
    shown = client.get(answer["url"]).json()
    assert shown["payload"]["kwargs"] == {"api_key": "***", "region": "us"}
    assert "new-secret" not in client.get(answer["url"]).text


# validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({**NEW_JOB, "trigger": {"type": "cron", "expression": "61 * * * *"}}, "61 * * * *"),
        ({**NEW_JOB, "trigger": {"type": "cron", "expression": "* * *"}}, "wrong number of fields"),
        (
            {**NEW_JOB, "trigger": {"type": "date", "run_at": "2030-02-30T06:00:00Z"}},
            "trigger.date.run_at",
        ),
        ({**NEW_JOB, "trigger": {"type": "date", "run_at": "2001-01-01T00:00:00Z"}}, "past"),
        ({**NEW_JOB, "trigger": {"type": "interval", "seconds": "often"}}, "seconds"),
        ({**NEW_JOB, "trigger": {"type": "interval", "seconds": -5}}, "greater than 0"),
        ({**NEW_JOB, "trigger": {"type": "weekly"}}, "trigger"),
        (
            {
                **NEW_JOB,
                "trigger": {"type": "cron", "expression": "0 6 * * *", "timezone": "Mars/X"},
            },
            "Mars/X",
        ),
        ({**NEW_JOB, "kwargs": []}, "kwargs"),
        ({**NEW_JOB, "options": {"retries": "many"}}, "options.retries"),
        ({**NEW_JOB, "id": "bad id!"}, "id"),
        ({**NEW_JOB, "func": "no_colon"}, "func"),
        ({**NEW_JOB, "surprise": 1}, "surprise"),
        ({"id": "x", "func": "m:f"}, "trigger"),
        (
            {
                **NEW_JOB,
                "trigger": {
                    "type": "cron",
                    "expression": "0 6 * * *",
                    "start_date": "2031-01-01T00:00:00Z",
                    "end_date": "2030-01-01T00:00:00Z",
                },
            },
            "never fire",
        ),
        ({**NEW_JOB, "trigger": {"type": "interval", "seconds": 1e300}}, "cannot schedule"),
        ({**NEW_JOB, "kwargs": {"key\u0000": 1}}, "NUL"),
    ],
)
def test_invalid_new_job_is_422_with_a_message(
    client: TestClient, backend: FakeBackend, body: Any, expected: str
) -> None:
    response = client.post("/api/v1/jobs", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert expected in error["message"]
    assert backend.commands == {}


def test_invalid_cron_message_names_the_expression(client: TestClient) -> None:
    body = {"trigger": {"type": "cron", "expression": "0 25 * * *"}}
    response = client.patch("/api/v1/jobs/daily_reports", json=body, headers=AUTH)
    assert response.status_code == 422
    message = error_of(response)["message"]
    assert message.startswith(
        "trigger.cron.expression: invalid cron expression '0 25 * * *': "
        "hour field '25': 25 is out of range 0-23"
    ), message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "nothing to change"),
        ({"options": {"retries": -1}}, "options.retries"),
        ({"options": {"no_such_option": 1}}, "no_such_option"),
        ({"name": 5}, "name"),
    ],
)
def test_invalid_change_is_422(
    client: TestClient, backend: FakeBackend, body: Any, expected: str
) -> None:
    response = client.patch("/api/v1/jobs/daily_reports", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert expected in error_of(response)["message"]
    assert backend.commands == {}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422(client: TestClient, backend: FakeBackend, number: str) -> None:
    body = '{"id": "x", "func": "m:f", "trigger": {"type": "interval", "seconds": 5}, '
    body += f'"kwargs": {{"limit": [1, {number}]}}}}'
    response = client.post(
        "/api/v1/jobs", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "kwargs.limit[1]" in error_of(response)["message"]
    assert backend.commands == {}


def test_unpaired_surrogate_is_422(client: TestClient, backend: FakeBackend) -> None:
    body = '{"id": "x", "func": "m:f", "trigger": {"type": "interval", "seconds": 5}, '
    body += '"name": "\\ud800"}'
    response = client.post(
        "/api/v1/jobs", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "name: text is not valid Unicode" in error_of(response)["message"]
    assert backend.commands == {}


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/api/v1/jobs",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "JSON" in error_of(response)["message"]


def test_oversized_body_is_413(client: TestClient, backend: FakeBackend) -> None:
    body = {**NEW_JOB, "kwargs": {"blob": "x" * 70_000}}
    response = client.post("/api/v1/jobs", json=body, headers=AUTH)
    assert response.status_code == 413
    assert "64 KiB" in error_of(response)["message"]
    assert backend.commands == {}


def test_oversized_streamed_body_is_413(client: TestClient, backend: FakeBackend) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"id": "big", "func": "m:f", "kwargs": {"blob": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}}'

    response = client.post(
        "/api/v1/jobs", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert backend.commands == {}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs?limit=0",
        "/api/v1/jobs?limit=501",
        "/api/v1/jobs?state=sleeping",
        "/api/v1/runs?since=yesterday",
        "/api/v1/runs?outcome=great",
    ],
)
def test_bad_query_parameters_are_422(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 422
    assert "query parameter" in error_of(response)["message"]


def test_nul_in_the_url_is_422(client: TestClient) -> None:
    for path in ("/api/v1/jobs/a%00b", "/api/v1/runs?job_id=%00"):
        response = client.get(path)
        assert response.status_code == 422
        assert "NUL" in error_of(response)["message"]


def test_since_out_of_range_is_422(client: TestClient) -> None:
    response = client.get("/api/v1/runs", params={"since": "9999-12-31T23:59:59-12:00"})
    assert response.status_code == 422
    assert "since" in error_of(response)["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs?cursor=-leading-dash",
        "/api/v1/jobs?cursor=a%20b",
        "/api/v1/runs?cursor=e30",
        "/api/v1/runs?cursor=12~",
        "/api/v1/runs?cursor=99999999999999999~x",
        "/api/v1/jobs/daily_reports/runs?cursor=2020-01-01T00:00:00~r",
    ],
)
def test_a_cursor_not_of_the_documented_form_is_refused(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 422
    assert "cursor" in error_of(response)["message"]


def test_any_cursor_of_the_documented_form_pages_from_that_point(client: TestClient) -> None:
    after = client.get("/api/v1/jobs", params={"cursor": "daily_reports"}).json()
    assert [job["id"] for job in after["items"]] == ["sync_inventory"]
    before_all = client.get("/api/v1/runs", params={"cursor": "0~0"})
    assert before_all.status_code == 200 and before_all.json()["items"] == []


def test_unknown_route_has_the_error_body(client: TestClient) -> None:
    response = client.get("/api/v2/jobs")
    assert response.status_code == 404
    assert "see /docs" in error_of(response)["message"]


# reads ----------------------------------------------------------------------------------
def test_jobs_pages_with_a_cursor(client: TestClient, backend: FakeBackend) -> None:
    backend.save_jobs([make_job(f"job_{n:02d}") for n in range(7)])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/jobs", params=params).json()
        pages += 1
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(backend.jobs)


def test_jobs_filter_by_state_and_tag(client: TestClient, backend: FakeBackend) -> None:
    backend.save_jobs([make_job("paused_one", state=JobState.PAUSED)])
    paused = client.get("/api/v1/jobs", params={"state": "paused"}).json()["items"]
    assert [job["id"] for job in paused] == ["paused_one"]
    tagged = client.get("/api/v1/jobs", params={"tag": "reports"}).json()["items"]
    assert [job["id"] for job in tagged] == ["daily_reports"]


def test_runs_page_through_equal_scheduled_times(client: TestClient, backend: FakeBackend) -> None:
    moment = NOW - timedelta(minutes=1)
    runs = [
        make_run("daily_reports", Outcome.SUCCESS, 1).model_copy(update={"scheduled_time": moment})
        for _ in range(5)
    ]
    backend.save_runs(runs)
    first = client.get("/api/v1/runs", params={"limit": 3}).json()
    second = client.get("/api/v1/runs", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    ids = [run["run_id"] for run in first["items"] + second["items"]]
    assert sorted(ids) == sorted(run.run_id for run in runs)
    assert second["next_cursor"] is None


def test_runs_filters(client: TestClient, backend: FakeBackend) -> None:
    backend.save_runs(
        [
            make_run("daily_reports", Outcome.SUCCESS, 120),
            make_run("daily_reports", Outcome.FAILURE, 10),
            make_run("sync_inventory", Outcome.FAILURE, 5),
        ]
    )
    failures = client.get("/api/v1/runs", params={"outcome": "failure"}).json()["items"]
    assert {run["job_id"] for run in failures} == {"daily_reports", "sync_inventory"}
    since = (NOW - timedelta(minutes=30)).isoformat()
    recent = client.get("/api/v1/jobs/daily_reports/runs", params={"since": since}).json()["items"]
    assert [run["outcome"] for run in recent] == ["failure"]
    assert client.get("/api/v1/jobs/nope/runs").status_code == 404


def test_job_detail(client: TestClient, backend: FakeBackend) -> None:
    outcomes = [Outcome.SUCCESS] * 3 + [Outcome.FAILURE, Outcome.MISSED]
    backend.save_runs(
        [make_run("sync_inventory", outcome, 60 - n) for n, outcome in enumerate(outcomes)]
        + [make_run("sync_inventory", Outcome.RUNNING, 0.1)]
    )
    detail = client.get("/api/v1/jobs/sync_inventory").json()
    assert detail["trigger"] == {
        "type": "interval",
        "seconds": 900.0,
        "timezone": "UTC",
        "jitter": None,
        "start_date": None,
        "end_date": None,
    }
    assert detail["trigger_text"] == "every 15 minutes"
    assert detail["kwargs"] == {"region": "eu", "api_key": "***"}
    assert "hunter2" not in client.get("/api/v1/jobs/sync_inventory").text
    assert detail["recent"]["runs"] == 5
    assert detail["recent"]["success_rate"] == 0.75
    assert detail["recent"]["outcomes"]["missed"] == 1
    assert detail["recent"]["duration_seconds"]["p50"] == 2.0
    assert detail["last_run"]["outcome"] == "missed"
    assert len(detail["running"]) == 1
    assert client.get("/api/v1/jobs/nope").status_code == 404


def test_backend_error_is_503(client: TestClient, backend: FakeBackend) -> None:
    backend.down = True
    response = client.get("/api/v1/jobs")
    assert response.status_code == 503
    assert error_of(response)["code"] == "backend_unavailable"


# health ---------------------------------------------------------------------------------
def test_health_detailed_without_scheduler_is_unhealthy(client: TestClient) -> None:
    report = client.get("/health/detailed").json()
    assert report["status"] == "unhealthy"
    assert report["backend"]["up"] is True
    assert report["jobs"] == {"total": 2, "scheduled": 2, "paused": 0}
    assert [run["job_id"] for run in report["next_runs"]] == ["daily_reports", "sync_inventory"]


def test_health_detailed_with_live_leader_is_healthy(
    client: TestClient, backend: FakeBackend
) -> None:
    backend.heartbeat(leader())
    report = client.get("/health/detailed").json()
    assert report["status"] == "healthy", report["problems"]
    assert report["scheduler"]["leader"] == "sched-1"
    assert report["scheduler"]["instances"][0]["alive"] is True


def test_health_detailed_with_stale_leader_is_unhealthy(
    client: TestClient, backend: FakeBackend
) -> None:
    backend.heartbeat(leader(age_seconds=30))
    report = client.get("/health/detailed").json()
    assert report["status"] == "unhealthy"
    assert report["scheduler"]["leader_present"] is False
    assert report["scheduler"]["heartbeat_age_seconds"] >= 30
    assert "no live scheduler leader" in report["problems"][0]


def test_health_detailed_with_dead_standby_is_degraded(
    client: TestClient, backend: FakeBackend
) -> None:
    backend.heartbeat(leader())
    backend.heartbeat(leader(age_seconds=60, instance_id="sched-2"))
    report = client.get("/health/detailed").json()
    assert report["status"] == "degraded"
    assert "sched-2" in report["problems"][0]


def test_health_with_backend_down(client: TestClient, backend: FakeBackend) -> None:
    backend.down = True
    assert client.get("/health").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert "unreachable" in error_of(ready)["message"]
    report = client.get("/health/detailed")
    assert report.status_code == 200
    assert report.json()["status"] == "unhealthy"
    assert report.json()["backend"]["up"] is False


@pytest.fixture
def settings_from_env() -> Iterator[None]:
    """``get_settings()`` is built once per process: build it again from this test's env."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("settings_from_env")
def test_uvicorn_factory_serves_the_api_configured_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SUNDIAL_BACKEND_URL", f"sqlite:///{tmp_path / 'sundial.db'}")
    monkeypatch.setenv("SUNDIAL_API_TOKEN", TOKEN)
    # what `uvicorn --factory sundial_api.main:create_app` does
    config = uvicorn.Config("sundial_api.main:create_app", factory=True)
    config.load()
    with TestClient(config.loaded_app) as client:
        assert client.get("/health/ready").json() == {"status": "ready", "backend": "sqlite"}
        # the token from the environment is accepted: the change gets as far as the lookup
        assert client.post("/api/v1/jobs/nope/pause", headers=AUTH).status_code == 404


def test_scheduler_endpoint(client: TestClient, backend: FakeBackend) -> None:
    backend.heartbeat(leader(age_seconds=1))
    status = client.get("/api/v1/scheduler").json()
    assert status["leader"] == "sched-1"
    assert 1 <= status["instances"][0]["heartbeat_age_seconds"] < 1 + within(0.1)


def test_workers_endpoint_shows_each_worker_its_queues_and_its_runs(
    client: TestClient, backend: FakeBackend
) -> None:
    backend.heartbeat(leader())
    backend.heartbeat(worker("worker-b", queues=("default", "heavy")))
    backend.heartbeat(worker("worker-a", age_seconds=120))
    running = make_run("daily_reports", Outcome.RUNNING, 1, instance_id="worker-b")
    elsewhere = make_run("sync_inventory", Outcome.RUNNING, 1)  # on the scheduler
    backend.save_runs([running, elsewhere])

    answer = client.get("/api/v1/workers").json()

    assert answer["live"] == 1
    # the scheduler is no worker; the live worker comes first
    assert [(w["id"], w["state"]) for w in answer["workers"]] == [
        ("worker-b", "alive"),
        ("worker-a", "dead"),
    ]
    live, dead = answer["workers"]
    assert live["queues"] == ["default", "heavy"]
    assert [run["run_id"] for run in live["running"]] == [running.run_id]
    assert (live["host"], live["pid"]) == ("host-w", 77)
    assert dead["running"] == [] and dead["heartbeat_age_seconds"] >= 120


def test_workers_endpoint_without_workers(client: TestClient) -> None:
    assert client.get("/api/v1/workers").json() == {"live": 0, "workers": []}


# metrics --------------------------------------------------------------------------------
def registry_of(client: TestClient) -> CollectorRegistry:
    registry: CollectorRegistry = client.app.state.registry  # type: ignore[attr-defined]
    return registry


def test_http_metrics_use_the_route_template(client: TestClient) -> None:
    client.get("/api/v1/jobs/daily_reports")
    client.get("/api/v1/jobs/nope")
    client.get("/api/v1/jobs/also-nope")
    client.get("/no/such/path")
    registry = registry_of(client)
    sample = registry.get_sample_value
    route = "/api/v1/jobs/{job_id}"
    labels = {"route": route, "method": "GET"}
    assert sample("sundial_http_requests_total", {**labels, "status": "200"}) == 1
    assert sample("sundial_http_requests_total", {**labels, "status": "404"}) == 2
    assert sample("sundial_http_request_duration_seconds_count", labels) == 3
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert sample("sundial_http_requests_total", unmatched) == 1
    text = client.get("/metrics").text
    assert "daily_reports" not in text.split("sundial_catalog")[0]


def test_catalog_gauges(client: TestClient, backend: FakeBackend) -> None:
    backend.save_jobs(
        [
            make_job("paused_one", state=JobState.PAUSED, next_run_time=None),
            make_job("every_five", expected_interval_seconds=300),
            make_job(
                "patient",
                expected_interval_seconds=300,
                options=JobOptions(overdue_after_seconds=7200),
            ),
        ]
    )
    backend.save_runs(
        [
            make_run("daily_reports", Outcome.SUCCESS, 30),
            make_run("daily_reports", Outcome.FAILURE, 20),
            make_run("daily_reports", Outcome.TIMEOUT, 10),
        ]
    )
    backend.heartbeat(leader(age_seconds=3))
    client.get("/metrics")
    sample = registry_of(client).get_sample_value
    assert sample("sundial_catalog_backend_up") == 1
    nxt = sample("sundial_catalog_job_next_run_timestamp_seconds", {"job_id": "daily_reports"})
    assert nxt == pytest.approx((NOW + timedelta(minutes=5)).timestamp())
    assert (
        sample("sundial_catalog_job_next_run_timestamp_seconds", {"job_id": "paused_one"}) is None
    )
    assert sample("sundial_catalog_job_consecutive_failures", {"job_id": "daily_reports"}) == 2
    assert sample("sundial_catalog_job_consecutive_failures", {"job_id": "paused_one"}) == 0
    # Three intervals of grace before a job counts as overdue, its own where it says.
    assert sample("sundial_catalog_job_overdue_after_seconds", {"job_id": "every_five"}) == 900
    assert sample("sundial_catalog_job_overdue_after_seconds", {"job_id": "patient"}) == 7200
    success = sample(
        "sundial_catalog_job_last_success_timestamp_seconds", {"job_id": "daily_reports"}
    )
    assert success == pytest.approx((NOW - timedelta(minutes=30, seconds=-2)).timestamp())
    age = sample("sundial_catalog_scheduler_heartbeat_age_seconds")
    assert age is not None and 3 <= age < 10


def test_catalog_gauges_are_cached_and_report_backend_down(
    client: TestClient, backend: FakeBackend
) -> None:
    registry = registry_of(client)
    registry.get_sample_value("sundial_catalog_backend_up")
    calls = len(backend.calls)
    registry.get_sample_value("sundial_catalog_backend_up")
    assert len(backend.calls) == calls
    collector = next(c for c in registry._collector_to_names if isinstance(c, CatalogCollector))
    collector._read_at -= 10
    backend.down = True
    assert registry.get_sample_value("sundial_catalog_backend_up") == 0
    assert registry.get_sample_value("sundial_catalog_scheduler_heartbeat_age_seconds") is None


def worker_gauges(backend: FakeBackend, *, workers: bool) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CatalogCollector(lambda: backend, workers=workers, lease_seconds=10))
    return registry


def test_catalog_worker_gauges_count_live_workers_and_waiting_runs(backend: FakeBackend) -> None:
    now = datetime.now(UTC)
    backend.heartbeat(leader())
    backend.heartbeat(worker("worker-a", queues=("default", "reports")))
    backend.heartbeat(worker("worker-b"))
    backend.heartbeat(worker("worker-gone", age_seconds=600, queues=("legacy",)))
    waiting = [
        make_run("daily_reports", Outcome.QUEUED, 0, now=now - timedelta(seconds=40)),
        make_run("daily_reports", Outcome.QUEUED, 0, now=now - timedelta(seconds=5)),
        make_run("sync_inventory", Outcome.QUEUED, 0, now=now, queue="heavy"),
    ]
    backend.save_runs(
        [run.model_copy(update={"started_at": None, "instance_id": ""}) for run in waiting]
    )
    sample = worker_gauges(backend, workers=True).get_sample_value

    assert sample("sundial_catalog_workers") == 2
    assert sample("sundial_catalog_queued_runs", {"queue": "default"}) == 2
    assert sample("sundial_catalog_queued_runs", {"queue": "heavy"}) == 1
    # a queue a live worker serves reads 0, not nothing; a dead worker's queue is gone
    assert sample("sundial_catalog_queued_runs", {"queue": "reports"}) == 0
    assert sample("sundial_catalog_queued_runs", {"queue": "legacy"}) is None
    oldest = sample("sundial_catalog_oldest_queued_run_age_seconds", {"queue": "default"})
    assert oldest is not None and 40 <= oldest < 60
    assert sample("sundial_catalog_oldest_queued_run_age_seconds", {"queue": "reports"}) is None
    # workers do not count as schedulers: the scheduler's heartbeat is the one that ages
    leaderless = FakeBackend()
    leaderless.heartbeat(leader(age_seconds=300))
    leaderless.heartbeat(worker("worker-a"))
    age = worker_gauges(leaderless, workers=True).get_sample_value(
        "sundial_catalog_scheduler_heartbeat_age_seconds"
    )
    assert age is not None and age >= 300


def test_catalog_has_no_worker_gauges_with_the_local_executor(backend: FakeBackend) -> None:
    backend.heartbeat(leader())
    sample = worker_gauges(backend, workers=False).get_sample_value
    assert sample("sundial_catalog_backend_up") == 1
    assert sample("sundial_catalog_workers") is None
    assert "queued_by_queue" not in backend.calls


# events ---------------------------------------------------------------------------------
def test_event_feed_reports_runs_and_job_changes(backend: FakeBackend) -> None:
    old = make_run("daily_reports", Outcome.SUCCESS, 5)
    backend.save_runs([old])
    feed = EventFeed(backend)
    feed.prime()
    assert feed.tick() == []
    running = make_run("daily_reports", Outcome.RUNNING, 0)
    backend.save_runs([running])
    assert [e.name for e in feed.tick()] == ["run.started"]
    backend.save_runs([running.finish(Outcome.SUCCESS)])
    quick = make_run("sync_inventory", Outcome.FAILURE, -0.01)  # scheduled just after
    backend.save_runs([quick])
    events = feed.tick()
    assert [(e.name, e.data["run_id"]) for e in events] == [
        ("run.finished", running.run_id),
        ("run.started", quick.run_id),
        ("run.finished", quick.run_id),
    ]
    assert feed.tick() == []
    paused = backend.jobs["daily_reports"].model_copy(update={"state": JobState.PAUSED})
    backend.save_jobs([paused, make_job("brand_new")])
    backend.delete_jobs(["sync_inventory"])
    names = sorted((e.name, e.data["id"]) for e in feed.tick())
    assert names == [
        ("job.added", "brand_new"),
        ("job.changed", "daily_reports"),
        ("job.removed", "sync_inventory"),
    ]
    backend.down = True
    assert [e.name for e in feed.tick()] == ["backend.unavailable"]
    assert feed.tick() == []
    backend.down = False
    assert [e.name for e in feed.tick()] == ["backend.available"]


def test_openapi_schema_is_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/api/v1/jobs/{job_id}/pause" in schema["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "operation_id", "summary"),
    [
        ("post", "/{job_id}/pause", "pause_job_api_v1_jobs__job_id__pause_post", "Pause a job"),
        ("post", "/{job_id}/resume", "resume_job_api_v1_jobs__job_id__resume_post", "Resume a"),
        ("post", "/{job_id}/run", "run_job_api_v1_jobs__job_id__run_post", "Run a job now"),
        ("delete", "/{job_id}", "remove_job_api_v1_jobs__job_id__delete", "Remove a job"),
    ],
)
def test_openapi_documents_each_job_change(
    client: TestClient, method: str, path: str, operation_id: str, summary: str
) -> None:
    # clients generated from the schema name their methods after the operation ids
    operation = client.get("/openapi.json").json()["paths"][f"/api/v1/jobs{path}"][method]
    assert operation["operationId"] == operation_id
    assert operation["summary"].startswith(summary)
    assert "?wait=N" in operation["description"]
    assert [parameter["name"] for parameter in operation["parameters"]] == ["job_id", "wait"]
    assert {"200", "202", "401", "403", "404"} <= set(operation["responses"])


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v1/jobs/daily_reports", "DELETE, GET, PATCH"),
        ("DELETE", "/api/v1/jobs", "GET, POST"),
        ("GET", "/api/v1/jobs/daily_reports/pause", "POST"),
    ],
)
def test_a_wrong_method_is_told_every_method_the_path_takes(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path, headers=AUTH)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert f"use {allowed}" in error_of(response)["message"]


def test_the_schema_requires_the_trigger_type_and_states_the_cursor_formats(
    client: TestClient,
) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for name in ("CronSpec-Input", "CronSpec-Output", "IntervalSpec", "DateSpec"):
        assert "type" in components[name]["required"], name
    parameters = {
        (path, parameter["name"]): parameter["schema"]
        for path in ("/api/v1/jobs", "/api/v1/runs")
        for parameter in schema["paths"][path]["get"]["parameters"]
    }
    assert parameters["/api/v1/jobs", "cursor"]["anyOf"][0]["pattern"].startswith("^[A-Za-z0-9]")
    assert parameters["/api/v1/runs", "cursor"]["anyOf"][0]["pattern"] == (
        "^[0-9]{1,16}~[A-Za-z0-9_.:-]{1,191}$"
    )


def test_the_schema_asks_readers_for_a_token_only_under_read_protection(
    backend: FakeBackend,
) -> None:
    def read_security(settings: Settings) -> object:
        app = create_app(settings, backend=backend)
        schema = app.openapi()
        return schema["paths"]["/api/v1/runs"]["get"].get("security")

    assert read_security(Settings(api_token=TOKEN, backend_url="sqlite:///unused.db")) is None
    protected = Settings(
        api_token=TOKEN, api_read_token="read-token-0123456789", backend_url="sqlite:///u.db"
    )
    assert read_security(protected) == [{"ReadToken": []}]
