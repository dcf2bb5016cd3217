"""The leader's sweep of dead instances: their runs interrupted, their records forgotten late."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fakes import FakeBackend
from records import leader, make_run, worker

from sundial.constants import FORGET_INSTANCE_AFTER_SECONDS
from sundial.models import Outcome
from sundial_scheduler.presence import Presence

LEASE_SECONDS = 10.0


async def direct(func: Callable[..., Any], *args: Any) -> Any:
    return func(*args)


def sweep(backend: FakeBackend) -> list[str]:
    """One sweep by a leader that has reached the backend for long; the runs it interrupted."""
    presence = Presence(
        backend,
        instance_id="sched-1",
        started_at=datetime.now(UTC),
        lease_seconds=LEASE_SECONDS,
        io=direct,
    )
    presence.reached(time.monotonic() - 3600)
    return [run.run_id for run in asyncio.run(presence.interrupt_orphans())]


def test_the_sweep_forgets_instances_silent_for_a_day_and_keeps_recent_deaths() -> None:
    backend = FakeBackend()
    backend.heartbeat(leader())
    backend.heartbeat(worker("worker-live"))
    backend.heartbeat(worker("worker-died-tonight", age_seconds=3600))
    backend.heartbeat(worker("worker-long-gone", age_seconds=FORGET_INSTANCE_AFTER_SECONDS + 60))
    orphan = make_run("etl", Outcome.RUNNING, 60, instance_id="worker-died-tonight")
    backend.save_runs([orphan])

    assert sweep(backend) == [orphan.run_id]

    assert sorted(backend.instances) == ["sched-1", "worker-died-tonight", "worker-live"]


def test_a_worker_heartbeats_its_queues() -> None:
    presence = Presence(
        FakeBackend(),
        instance_id="worker-1",
        started_at=datetime.now(UTC),
        lease_seconds=LEASE_SECONDS,
        io=direct,
        queues=("heavy", "default"),
    )
    assert presence.instance(worker("worker-1").role).queues == ["heavy", "default"]
