"""Jobs for the UI's browser tests (imported by the scheduler subprocess).

None of them fires by itself while the tests run: the tests press "Run now".
"""

import asyncio

from sundial import cron, every, job

#: long enough for a page that re-reads once a second to show the run as running
REPORT_SECONDS = 3


@job(
    cron("0 6 * * *"),
    id="daily_reports",
    name="Daily report generation",
    critical=True,
    tags=("reports",),
    description="Builds yesterday's sales reports.",
)
async def daily_reports() -> None:
    await asyncio.sleep(REPORT_SECONDS)


@job(every(hours=1), id="sync_inventory", name="Sync inventory", tags=("inventory",))
async def sync_inventory() -> None:
    raise ConnectionError("warehouse API answered 502")


@job(every(minutes=30), id="cleanup_tmp", name="Clean up temporary files")
async def cleanup_tmp() -> None:
    await asyncio.sleep(0)


@job(every(hours=2), id="escaped_name", name="<script>alert('owned')</script>")
async def escaped_name() -> None:
    await asyncio.sleep(0)
