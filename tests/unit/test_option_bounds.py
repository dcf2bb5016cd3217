"""Options that make no sense are refused with the reason, by ``@job`` and the API alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import FakeBackend
from fastapi.testclient import TestClient
from records import make_job

from sundial.config import Settings
from sundial.jobs import JobDefinitionError, Registry, at, cron, every
from sundial_api.main import create_app

TOKEN = "bounds-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAILY = {"type": "cron", "expression": "0 6 * * *"}
FAR_AHEAD = "8477-01-01T00:00:00+00:00"
BEYOND_REACH = "more than 100 years ahead"
NOT_AN_ID = "'' is not a job id"

# (what the decorator gets, what the API gets, the reason both give)
CASES: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (
        {"trigger": cron("0 6 * * *"), "requires": [""], "requires_within": "1h"},
        {"trigger": DAILY, "options": {"requires": [""], "requires_within_seconds": 3600}},
        NOT_AN_ID,
    ),
    (
        {"trigger": cron("0 6 * * *"), "requires": ["load"], "requires_within": 5e-324},
        {"trigger": DAILY, "options": {"requires": ["load"], "requires_within_seconds": 5e-324}},
        "greater than or equal to 1",
    ),
    (
        {"trigger": cron("0 6 * * *"), "requires": ["load"]},
        {"trigger": DAILY, "options": {"requires": ["load"]}},
        "requires needs requires_within",
    ),
    (
        {"trigger": cron("0 6 * * *", jitter=11 * 3600)},
        {"trigger": {**DAILY, "jitter": 11 * 3600}},
        "less than or equal to 3600",
    ),
    (
        {"trigger": every(minutes=1, jitter=120)},
        {"trigger": {"type": "interval", "seconds": 60, "jitter": 120}},
        "jitter 120 s is longer than the interval",
    ),
    (
        {"trigger": at(FAR_AHEAD)},
        {"trigger": {"type": "date", "run_at": FAR_AHEAD}},
        BEYOND_REACH,
    ),
    (
        {"trigger": every(minutes=5, start_date=datetime(8477, 1, 1, tzinfo=UTC))},
        {"trigger": {"type": "interval", "seconds": 300, "start_date": FAR_AHEAD}},
        BEYOND_REACH,
    ),
]
IDS = [
    "empty requires",
    "tiny requires_within",
    "requires without a window",
    "11 h jitter",
    "jitter past the interval",
    "one-off in 8477",
    "start in 8477",
]


def check_inventory() -> None:
    """A job function for the definitions below."""


@pytest.mark.parametrize(("in_code", "_", "reason"), CASES, ids=IDS)
def test_the_decorator_refuses_it(in_code: dict[str, Any], _: object, reason: str) -> None:
    options = dict(in_code)
    trigger = options.pop("trigger")
    registry = Registry()
    with pytest.raises(JobDefinitionError, match=f"^job 'checked': .*{reason}"):
        registry.job(trigger, id="checked", **options)(check_inventory)
    assert registry.jobs == {}


@pytest.fixture
def client() -> Iterator[TestClient]:
    backend = FakeBackend()
    backend.save_jobs([make_job("daily_reports")])
    settings = Settings(api_token=TOKEN, backend_url="sqlite:///unused.db")
    with TestClient(create_app(settings, backend=backend)) as client:
        yield client


@pytest.mark.parametrize(("_", "body", "reason"), CASES, ids=IDS)
def test_the_api_refuses_it_with_the_reason(
    client: TestClient, _: object, body: dict[str, Any], reason: str
) -> None:
    created = client.post(
        "/api/v1/jobs", json={"id": "checked", "func": "jobs:check", **body}, headers=AUTH
    )
    assert created.status_code == 422
    assert reason in created.json()["error"]["message"]
    changed = client.patch("/api/v1/jobs/daily_reports", json=body, headers=AUTH)
    assert changed.status_code == 422
    assert reason in changed.json()["error"]["message"]


@pytest.mark.parametrize("since", ["0.5", "1700000000", "-3", "1e9"])
def test_since_must_be_a_date_not_a_number(client: TestClient, since: str) -> None:
    for path in ("/api/v1/runs", "/api/v1/jobs/daily_reports/runs"):
        refused = client.get(path, params={"since": since})
        assert refused.status_code == 422
        assert "is a number; give a date and time in ISO 8601" in refused.json()["error"]["message"]


def test_sensible_bounds_still_pass(client: TestClient) -> None:
    body = {
        "trigger": {"type": "interval", "seconds": 600, "jitter": 60},
        "options": {"requires": ["load"], "requires_within_seconds": 3600},
    }
    created = client.post(
        "/api/v1/jobs", json={"id": "ok", "func": "jobs:ok", **body}, headers=AUTH
    )
    assert created.status_code == 202
    listed = client.get("/api/v1/runs", params={"since": "2026-01-01T00:00:00Z"})
    assert listed.status_code == 200
