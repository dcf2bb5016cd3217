"""Jobs for the alerting end-to-end tests (imported by the scheduler subprocess).

Each one gives an alert something real to see: a critical job that always fails, a
non-critical one that always fails, one that hangs, and a healthy one (so that the
dashboard's success and duration panels have data).
"""

import asyncio

from sundial import every, job


@job(every(seconds=1), id="payments_sync", critical=True)
def payments_sync() -> None:
    raise ConnectionError("payments provider answered 503")


@job(every(seconds=1), id="newsletter_send")
async def newsletter_send() -> None:
    raise RuntimeError("template 'weekly' not found")


@job(every(seconds=1), id="report_export", max_instances=1)
async def report_export() -> None:
    # No timeout: hangs until the scheduler goes away, far past its alert threshold.
    await asyncio.sleep(3600)


@job(every(seconds=1), id="inventory_refresh")
async def inventory_refresh() -> None:
    await asyncio.sleep(0.01)
