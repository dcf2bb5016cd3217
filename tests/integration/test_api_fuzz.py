"""Fuzz the API from its own OpenAPI schema: no 5xx, every response matches the schema."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from sundial.backends import open_backend
from sundial.config import Settings
from sundial.jobs import Registry, every
from sundial_api.main import create_app

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token-0123456789abcdef"
SEEDED_JOB = "seeded_job"
# Schemathesis reads the schema at import time, so the app (and its SQLite file) exist then.
DATABASE = Path(tempfile.mkdtemp(prefix="sundial-fuzz-")) / "sundial.db"
app = create_app(Settings(backend_url=f"sqlite:///{DATABASE}", api_token=TOKEN))
# The event stream never ends by design; tests/integration/test_api_backends.py covers it.
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/v1/events")
# Valid and invalid input alike; every check Schemathesis has runs (none is turned off).
schema.config.generation.update(modes=list(GenerationMode))
# A JSON schema cannot say which crontab text can fire, which moment is still ahead or
# that jitter must stay within the interval: such input fits the schema and is refused
# with 422 and the reason, which is the documented answer to it.
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses,
    "422",
]


def _seeded() -> None:
    """The function behind the seeded catalog entry."""


@pytest.fixture(scope="module", autouse=True)
def running_app() -> Iterator[None]:
    """Run the app's lifespan (backend set up) with one job in the catalog."""
    backend = open_backend(f"sqlite:///{DATABASE}")
    backend.setup()
    registry = Registry()
    registry.job(every(minutes=5), id=SEEDED_JOB)(_seeded)
    backend.save_jobs([registry.jobs[SEEDED_JOB].view()])
    with TestClient(app):
        yield
    backend.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_on_generated_input(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
