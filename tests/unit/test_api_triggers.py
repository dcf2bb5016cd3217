"""The API shows what a trigger means: in words and by its next fire times."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fakes import FakeBackend  # tests/ is on sys.path (rootdir conftest)
from fastapi.testclient import TestClient

from sundial.config import Settings
from sundial.models import JobOptions, JobSource, JobState, JobView
from sundial.triggers import CronSpec
from sundial_api.main import create_app

PREVIEW = "/api/v1/triggers/preview"


def job(job_id: str, state: JobState) -> JobView:
    trigger = CronSpec(expression="30 2 * * sun", timezone="Asia/Tokyo")
    return JobView(
        id=job_id,
        name=job_id,
        func="jobs.example:task",
        trigger=trigger,
        trigger_text=trigger.describe(),
        options=JobOptions(),
        source=JobSource.CODE,
        fingerprint="f",
        state=state,
        next_run_time=None,
        updated_at=datetime.now(UTC),
    )


@pytest.fixture
def client() -> Iterator[TestClient]:
    backend = FakeBackend()
    backend.save_jobs([job("weekly", JobState.SCHEDULED), job("held", JobState.PAUSED)])
    settings = Settings(backend_url="sqlite:///unused.db")
    with TestClient(create_app(settings, backend=backend)) as client:
        yield client


def local(times: list[str], zone: str) -> list[tuple[str, int]]:
    """Weekday and hour of each time in ``zone``."""
    moments = [datetime.fromisoformat(text).astimezone(ZoneInfo(zone)) for text in times]
    return [(moment.strftime("%a"), moment.hour) for moment in moments]


def test_preview_of_crontab_text(client: TestClient) -> None:
    body = {"trigger": {"type": "cron", "expression": "30 2 * * sun", "timezone": "Asia/Tokyo"}}

    response = client.post(PREVIEW, json=body)

    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["trigger_in_words"] == "At 02:30 on Sunday (Asia/Tokyo)"
    assert preview["trigger_text"] == "cron '30 2 * * sun' (Asia/Tokyo)"
    assert local(preview["next_fire_times"], "Asia/Tokyo") == [("Sun", 2)] * 5
    assert preview["expected_interval_seconds"] == 7 * 86400


def test_preview_of_keyword_fields_shows_the_crontab_text(client: TestClient) -> None:
    trigger = {"type": "cron", "fields": {"day": 1, "day_of_week": "mon"}}

    preview = client.post(PREVIEW, json={"trigger": trigger, "count": 10}).json()

    assert preview["trigger"]["expression"] == "0 0 1 * mon"
    assert preview["trigger_in_words"] == "At 00:00 on the first day of month and on Monday (UTC)"
    days = [datetime.fromisoformat(text) for text in preview["next_fire_times"]]
    assert len(days) == 10
    assert all(day.day == 1 or day.strftime("%a") == "Mon" for day in days)
    assert any(day.strftime("%a") != "Mon" for day in days), "the 1st alone must match too"


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (
            {"type": "cron", "expression": "*/0 * * * *"},
            "trigger.cron.expression: invalid cron expression '*/0 * * * *': "
            "minute field '*/0': step must be at least 1",
        ),
        (
            {"type": "cron", "expression": "0 0 30 2 *"},
            "day-of-month field '30': no month in month field '2' has day 30",
        ),
        ({"type": "cron", "expression": "@reboot"}, "@reboot is not supported"),
        (
            {"type": "cron", "fields": {"second": "*"}},
            "invalid cron fields: unknown cron field(s) ['second']",
        ),
        ({"type": "date", "run_at": "2001-01-01T00:00:00Z"}, "is in the past"),
    ],
)
def test_preview_refuses_what_saving_would_refuse(
    client: TestClient, trigger: dict[str, Any], message: str
) -> None:
    response = client.post(PREVIEW, json={"trigger": trigger})

    assert response.status_code == 422
    assert message in response.json()["error"]["message"]


def test_a_job_shows_its_trigger_in_words_and_next_fire_times(client: TestClient) -> None:
    detail = client.get("/api/v1/jobs/weekly").json()

    assert detail["trigger_in_words"] == "At 02:30 on Sunday (Asia/Tokyo)"
    assert local(detail["next_fire_times"], "Asia/Tokyo") == [("Sun", 2)] * 5


def test_a_paused_job_lists_no_fire_times(client: TestClient) -> None:
    detail = client.get("/api/v1/jobs/held").json()

    assert detail["next_fire_times"] == []
    assert detail["trigger_in_words"] == "At 02:30 on Sunday (Asia/Tokyo)"
