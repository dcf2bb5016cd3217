"""Job functions for the worker tests; each test schedules them in a module of its own.

Each execution appends a line to the file named by ``SUNDIAL_TEST_EXECUTIONS`` when it
starts, and another when it ends (a killed worker writes no end): the job, fire time,
attempt and the process that ran it. The tests read it to count real executions, not
records.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sundial import current_run


def _note(event: str) -> None:
    run = current_run()
    line = {
        "event": event,
        "job_id": run.job_id,
        "scheduled_time": run.scheduled_time.isoformat(),
        "attempt": run.attempt,
        "pid": os.getpid(),
        "at": time.time(),
    }
    with open(os.environ["SUNDIAL_TEST_EXECUTIONS"], "a") as out:
        out.write(json.dumps(line) + "\n")


@contextmanager
def executed() -> Iterator[None]:
    _note("start")
    try:
        yield
    finally:
        _note("end")


async def quick() -> None:
    with executed():
        await asyncio.sleep(0.3)


async def overlapping() -> None:
    with executed():
        await asyncio.sleep(2.5)


def long_sync() -> None:
    with executed():
        time.sleep(float(os.environ.get("SUNDIAL_TEST_LONG_SECONDS", "6")))


async def hang() -> None:
    with executed():
        await asyncio.sleep(30)


async def block_loop() -> None:
    with executed():
        time.sleep(1.5)  # noqa: ASYNC251 - blocking code in an async job, on purpose
