"""Example jobs for the demo stack: enough variety for the dashboard and alerts to show.

``flaky_export`` fails now and then, ``warehouse_rebuild`` runs long, and the others show
the authoring surface: cron text and fields, intervals, retries, guards and tags.
"""

from __future__ import annotations

import asyncio
import random
import time

import structlog

from sundial import cron, every, job, task

log = structlog.get_logger("sundial.examples")


@job(
    cron("0 6 * * *"),
    id="daily_reports",
    name="Daily Report Generation",
    timeout="15m",
    retries=2,
    retry_backoff="30s",
    max_instances=1,
    critical=True,
    unique_per="day",
    tags=("reports",),
)
async def process_daily_reports() -> None:
    """Build yesterday's reports (once per day, even if triggered again)."""
    await asyncio.sleep(0.5)


@job(every(minutes=1), id="sync_inventory", tags=("demo",), timeout="30s")
async def sync_inventory() -> None:
    """Pull stock levels from the warehouse API."""
    await asyncio.sleep(random.uniform(0.05, 0.3))


@job(every(seconds=30), id="heartbeat_ping", tags=("demo",))
def heartbeat_ping() -> None:
    """A tiny synchronous job, run in the thread pool."""
    time.sleep(0.01)


@job(
    every(minutes=2),
    id="flaky_export",
    name="Flaky partner export",
    retries=1,
    retry_backoff="5s",
    timeout="1m",
    tags=("demo", "partner"),
)
async def flaky_export() -> None:
    """Fails about a third of the time, like a partner API on a bad day."""
    await asyncio.sleep(0.2)
    if random.random() < 0.33:
        raise ConnectionError("partner API answered 503 Service Unavailable")


@job(
    cron(minute="*/5"),
    id="warehouse_rebuild",
    name="Warehouse rebuild",
    timeout="4m",
    max_instances=1,
    tags=("demo",),
)
async def warehouse_rebuild() -> None:
    """Runs for a minute or two; sometimes longer than its usual duration."""
    await asyncio.sleep(random.uniform(60, 150))


@job(
    cron(hour=2, minute=30, day_of_week="sun"),
    id="weekly_cleanup",
    description="Remove temporary files older than a week.",
    requires=("daily_reports",),
    requires_within="2d",
)
def weekly_cleanup() -> None:
    log.info("cleanup.done")


@task
async def send_digest(recipient: str, subject: str = "Sundial digest") -> None:
    """A function the API may schedule: ``POST /api/v1/jobs`` with ``func`` set to it."""
    await asyncio.sleep(0.1)
    log.info("digest.sent", recipient=recipient, subject=subject)
