"""Run a real SundialScheduler in-process for tests, and wait on what it records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from sundial.backends import Backend
from sundial.config import Settings
from sundial.jobs import Registry
from sundial.models import Command, CommandState, Run
from sundial_scheduler.service import SundialScheduler

T = TypeVar("T")


def harness_settings(backend_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backend_url": backend_url,
        "metrics_port": 0,
        "metrics_host": "127.0.0.1",
        "leader_lease_seconds": 3,
        "shutdown_grace_seconds": 2,
        "job_modules": (),
        "log_format": "console",
    }
    return Settings(**(values | overrides))


@asynccontextmanager
async def running_scheduler(
    backend_url: str, registry: Registry, **overrides: Any
) -> AsyncIterator[SundialScheduler]:
    """A leader scheduler on ``backend_url``; stopped (like SIGTERM) on exit."""
    scheduler = SundialScheduler(
        harness_settings(backend_url, **overrides),
        registry=registry,
        metrics_registry=CollectorRegistry(),
    )
    task = asyncio.create_task(scheduler.run())
    try:
        await wait_for(lambda: scheduler.scheduling or task.done(), within=15)
        if task.done():
            task.result()
        assert await asyncio.to_thread(scheduler.writer.flush, 10)
        yield scheduler
    finally:
        scheduler.request_stop()
        await asyncio.wait_for(task, timeout=30)


async def wait_for(predicate: Callable[[], T], within: float, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def wait_for_runs(
    backend: Backend, job_id: str, count: int, within: float = 15, **filters: Any
) -> list[Run]:
    """At least ``count`` runs of ``job_id`` (newest first) once they are recorded."""

    async def fetch() -> list[Run]:
        return await asyncio.to_thread(backend.list_runs, job_id=job_id, limit=1000, **filters)

    deadline = time.monotonic() + within
    while True:
        runs = await fetch()
        if len(runs) >= count:
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id}: {len(runs)} runs recorded, expected {count}")
        await asyncio.sleep(0.1)


async def apply(backend: Backend, command: Command, within: float = 10) -> Command:
    """Enqueue ``command`` as the API does and wait until the leader finishes it."""
    await asyncio.to_thread(backend.enqueue_command, command)

    async def finished() -> Command | None:
        current = await asyncio.to_thread(backend.get_command, command.id)
        return current if current and current.state is not CommandState.PENDING else None

    deadline = time.monotonic() + within
    while True:
        done = await finished()
        if done is not None:
            return done
        if time.monotonic() > deadline:
            raise AssertionError(f"command {command.kind} not applied within {within}s")
        await asyncio.sleep(0.05)
