"""An async job that blocks the event loop is named: in a warning, on its run, in metrics."""

from __future__ import annotations

import pytest
import sample_jobs
from fastapi.testclient import TestClient
from scheduler_harness import running_scheduler, wait_for_runs
from structlog.testing import capture_logs

from sundial.backends import Backend
from sundial.config import Settings
from sundial.jobs import Registry, every
from sundial.models import Outcome
from sundial_api.main import create_app

pytestmark = pytest.mark.integration


async def test_the_job_that_blocks_the_loop_is_named_and_the_others_are_not(
    backend_url: str, backend: Backend
) -> None:
    registry = Registry()
    # Both fire together, so the polite one is in progress while the other blocks.
    registry.job(every(seconds=1), id="blocker", max_instances=1)(sample_jobs.block_loop)
    registry.job(every(seconds=1), id="polite", kwargs={"seconds": 0.5})(sample_jobs.slow)

    with capture_logs() as logs:
        # The blocker holds the loop most of the time, lease renewals included: a lease
        # the harness keeps short could lapse, and a scheduler that stops leading drops
        # its per-job series.
        async with running_scheduler(backend_url, registry, leader_lease_seconds=30) as scheduler:
            blocked, *_ = await wait_for_runs(backend, "blocker", 1, outcome=Outcome.SUCCESS)
            polite, *_ = await wait_for_runs(backend, "polite", 1, outcome=Outcome.SUCCESS)
            metric = scheduler.metrics_registry.get_sample_value(
                "sundial_job_event_loop_blocked_seconds_total", {"job_id": "blocker"}
            )
            polite_metric = scheduler.metrics_registry.get_sample_value(
                "sundial_job_event_loop_blocked_seconds_total", {"job_id": "polite"}
            )

    assert 1.0 <= blocked.event_loop_blocked_seconds < 3.0
    assert polite.event_loop_blocked_seconds == 0.0
    assert metric is not None and metric >= blocked.event_loop_blocked_seconds
    assert polite_metric == 0.0
    warnings = [entry for entry in logs if entry["event"] == "event_loop.blocked_by_job"]
    assert warnings and {entry["job_id"] for entry in warnings} == {"blocker"}
    # The blocker may have run again by the time its runs are read: each run has its own warning.
    warned = {entry["run_id"]: entry["blocked_seconds"] for entry in warnings}
    assert warned[blocked.run_id] >= 1.0
    with TestClient(create_app(Settings(backend_url=backend_url))) as client:
        detail = client.get(f"/api/v1/runs/{blocked.run_id}").json()
    assert detail["event_loop_blocked_seconds"] == blocked.event_loop_blocked_seconds
