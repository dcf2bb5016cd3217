"""Jobs for the alerting end-to-end tests (imported by the scheduler subprocess).

Each one gives an alert something real to see: a critical job that always fails, a
non-critical one that always fails, one that hangs, and a healthy one (so that the
dashboard's success and duration panels have data). Each is overdue 15 s after a fire time
that did not happen: the catalog's next run time can trail by the API's 5 s cache plus a
scrape, so a healthy job every second stays quiet with that grace.
"""

import asyncio

from sundial import every, job

OVERDUE_AFTER = "15s"


@job(every(seconds=1), id="payments_sync", critical=True, overdue_after=OVERDUE_AFTER)
def payments_sync() -> None:
    raise ConnectionError("payments provider answered 503")


@job(every(seconds=1), id="newsletter_send", overdue_after=OVERDUE_AFTER)
async def newsletter_send() -> None:
    raise RuntimeError("template 'weekly' not found")


@job(every(seconds=1), id="report_export", max_instances=1, overdue_after=OVERDUE_AFTER)
async def report_export() -> None:
    # No timeout: hangs until the scheduler goes away, far past its alert threshold.
    await asyncio.sleep(3600)


@job(every(seconds=1), id="inventory_refresh", overdue_after=OVERDUE_AFTER)
async def inventory_refresh() -> None:
    await asyncio.sleep(0.01)
