"""Read protection (SUNDIAL_API_READ_TOKEN): reads, the event stream and the UI need the
read or the API token; probes, metrics and the runbook stay open; readers change nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fakes import FakeBackend
from fastapi.testclient import TestClient
from records import leader, make_job, make_run

from sundial.config import Settings
from sundial.models import Command, CommandKind, Outcome
from sundial_api.main import create_app

TOKEN = "admin-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/jobs/reports.py", line 3'
READS = [
    "/api/v1/jobs",
    "/api/v1/jobs/daily_reports",
    "/api/v1/jobs/daily_reports/runs",
    "/api/v1/runs",
    "/api/v1/runs/run-1",
    "/api/v1/commands/command-1",
    "/api/v1/scheduler",
    "/health/detailed",
]
OPEN = ["/health", "/health/ready", "/metrics", "/runbook"]
MUTATIONS = [
    ("POST", "/api/v1/jobs", {"id": "new", "func": "x:y", "trigger": {"type": "date"}}),
    ("POST", "/api/v1/jobs/daily_reports/pause", None),
    ("POST", "/api/v1/jobs/daily_reports/resume", None),
    ("POST", "/api/v1/jobs/daily_reports/run", None),
    ("PATCH", "/api/v1/jobs/daily_reports", {"name": "renamed"}),
    ("DELETE", "/api/v1/jobs/daily_reports", None),
]


@pytest.fixture
def backend() -> FakeBackend:
    fake = FakeBackend()
    fake.save_jobs([make_job("daily_reports")])
    failed = make_run("daily_reports", Outcome.FAILURE, 5, traceback=TRACEBACK)
    fake.save_runs([failed.model_copy(update={"run_id": "run-1"})])
    fake.enqueue_command(Command(id="command-1", kind=CommandKind.PAUSE, job_id="daily_reports"))
    fake.heartbeat(leader(age_seconds=0))
    return fake


@pytest.fixture
def client(backend: FakeBackend) -> Iterator[TestClient]:
    settings = Settings(
        api_token=TOKEN, api_read_token=READ_TOKEN, backend_url="sqlite:///unused.db"
    )
    with TestClient(create_app(settings, backend=backend)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", [*READS, "/api/v1/events"])
def test_every_read_needs_a_token(client: TestClient, path: str) -> None:
    anonymous = client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert "SUNDIAL_API_READ_TOKEN" in anonymous.json()["error"]["message"]
    assert client.get(path, headers=bearer("wrong-token-0123456789")).status_code == 401


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("token", [READ_TOKEN, TOKEN], ids=["read token", "API token"])
def test_the_read_token_and_the_api_token_both_read(
    client: TestClient, path: str, token: str
) -> None:
    assert client.get(path, headers=bearer(token)).status_code == 200


def test_a_preview_of_a_trigger_is_a_read(client: TestClient) -> None:
    body = {"trigger": {"type": "cron", "expression": "0 6 * * *"}}
    assert client.post("/api/v1/triggers/preview", json=body).status_code == 401
    previewed = client.post("/api/v1/triggers/preview", json=body, headers=bearer(READ_TOKEN))
    assert previewed.status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_probes_metrics_and_the_runbook_stay_open(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_the_read_token_never_changes_anything(
    client: TestClient, backend: FakeBackend, method: str, path: str, body: object
) -> None:
    before = dict(backend.commands)
    response = client.request(method, path, json=body, headers=bearer(READ_TOKEN))
    assert response.status_code == 403
    assert "read token cannot change jobs" in response.json()["error"]["message"]
    assert backend.commands == before


def test_tracebacks_host_and_pid_reach_only_authenticated_readers(client: TestClient) -> None:
    anonymous = client.get("/api/v1/runs/run-1")
    assert "Traceback" not in anonymous.text and "instance" not in anonymous.text
    read = client.get("/api/v1/runs/run-1", headers=bearer(READ_TOKEN)).json()
    assert read["traceback"] == TRACEBACK


# the UI ---------------------------------------------------------------------------------
def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def log_in(client: TestClient, token: str) -> None:
    form = client.get("/ui/login")
    assert form.status_code == 200
    client.post(
        "/ui/login",
        data={"token": token, "csrf_token": csrf_of(form.text), "next": "/ui/jobs"},
        follow_redirects=False,
    )


@pytest.mark.parametrize(
    "path", ["/ui/jobs", "/ui/jobs/daily_reports", "/ui/runs/run-1", "/ui/instances"]
)
def test_ui_pages_send_a_visitor_without_a_login_to_the_login_page(
    client: TestClient, path: str
) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/login?next={path.replace('/', '%2F')}"
    assert TRACEBACK not in client.get(path).text


@pytest.mark.parametrize("path", ["/ui/live/jobs", "/ui/job-counts", "/ui/commands/command-1"])
def test_ui_feeds_and_fragments_refuse_a_visitor_without_a_login(
    client: TestClient, path: str
) -> None:
    assert client.get(path, headers={"HX-Request": "true"}).status_code == 401


def test_a_reader_sees_the_pages_but_no_actions_and_is_refused_changes(
    client: TestClient, backend: FakeBackend
) -> None:
    log_in(client, READ_TOKEN)
    page = client.get("/ui/jobs/daily_reports")
    assert page.status_code == 200
    assert "Logged in: reader" in page.text
    assert 'id="do-' not in page.text
    assert TRACEBACK.splitlines()[0] in client.get("/ui/runs/run-1").text
    before = dict(backend.commands)
    refused = client.post(
        "/ui/jobs/daily_reports/pause", data={"csrf_token": csrf_of(page.text), "confirmed": "yes"}
    )
    assert refused.status_code == 403
    assert backend.commands == before


def test_an_operator_login_reads_and_is_offered_the_actions(client: TestClient) -> None:
    log_in(client, TOKEN)
    page = client.get("/ui/jobs/daily_reports").text
    assert "Logged in: operator" in page
    assert 'id="do-pause-daily_reports"' in page


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/ui/login"])
def test_the_documentation_and_the_login_page_stay_open(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200
