"""The server-sent event feed, built by polling the backend.

Each tick reads the runs scheduled in the last :data:`RUN_LOOKBACK` (newest first) and
re-reads runs it saw running that have dropped out of that listing, then pages through
the catalog. It emits ``run.started`` / ``run.finished`` once per run and outcome, and
``job.added`` / ``job.changed`` (``updated_at`` or state changed) / ``job.removed``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool

from sundial.backends import Backend, BackendError
from sundial.models import JobState, JobView, Outcome, Run
from sundial_api.views import job_summary, run_out, utc

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
RUN_LOOKBACK = timedelta(hours=1)
RUN_PAGE = 500
#: running runs re-read per tick when they fell out of the recent listing
MAX_RECHECKS = 50
RETRY_MILLISECONDS = 2000
_SSE_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    name: str
    #: JSON for the API's feed; HTML for the UI's, which sends rendered fragments
    data: dict[str, Any] | str


class Feed(Protocol):
    def tick(self) -> list[Event]:
        """What changed since the previous tick (blocking; :func:`stream` runs it in a thread)."""


class EventFeed:
    """What changed in the backend since the previous tick (blocking; run in a thread)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._runs: dict[str, tuple[Outcome, datetime]] = {}
        self._jobs: dict[str, tuple[datetime, JobState]] = {}
        self._backend_ok = True

    def prime(self) -> None:
        """Remember the present state so that only later changes become events."""
        self._runs = {run.run_id: (run.outcome, run.scheduled_time) for run in self._recent()}
        self._jobs = {job.id: (job.updated_at, job.state) for job in self._backend.iter_jobs()}

    def tick(self) -> list[Event]:
        try:
            events = self._run_events() + self._job_events()
        except BackendError as error:
            if not self._backend_ok:
                return []
            self._backend_ok = False
            return [Event("backend.unavailable", {"message": str(error)})]
        recovered = [] if self._backend_ok else [Event("backend.available", {})]
        self._backend_ok = True
        return recovered + events

    def _recent(self) -> list[Run]:
        since = datetime.now(UTC) - RUN_LOOKBACK
        return self._backend.list_runs(since=since, limit=RUN_PAGE)

    def _run_events(self) -> list[Event]:
        listed = self._recent()
        seen_now = {run.run_id for run in listed}
        stale = [
            run_id
            for run_id, (outcome, _) in self._runs.items()
            if outcome is Outcome.RUNNING and run_id not in seen_now
        ][:MAX_RECHECKS]
        rechecked = [run for run in map(self._backend.get_run, stale) if run is not None]
        events: list[Event] = []
        for run in [*reversed(listed), *rechecked]:
            events.extend(self._observe(run))
        cutoff = datetime.now(UTC) - 2 * RUN_LOOKBACK
        self._runs = {
            run_id: (outcome, scheduled)
            for run_id, (outcome, scheduled) in self._runs.items()
            if outcome is Outcome.RUNNING or utc(scheduled) >= cutoff or run_id in seen_now
        }
        return events

    def _observe(self, run: Run) -> list[Event]:
        previous = self._runs.get(run.run_id)
        self._runs[run.run_id] = (run.outcome, run.scheduled_time)
        if previous is not None and previous[0] is run.outcome:
            return []
        data = run_out(run).model_dump(mode="json", exclude={"traceback"})
        events = []
        if previous is None and (run.outcome is Outcome.RUNNING or run.started_at is not None):
            events.append(Event("run.started", data))
        if run.outcome is not Outcome.RUNNING:
            events.append(Event("run.finished", data))
        return events

    def _job_events(self) -> list[Event]:
        current: dict[str, JobView] = {job.id: job for job in self._backend.iter_jobs()}
        events = []
        for job_id, job in current.items():
            before = self._jobs.get(job_id)
            if before is None:
                events.append(Event("job.added", _job_data(job)))
            elif before != (job.updated_at, job.state):
                events.append(Event("job.changed", _job_data(job)))
        events.extend(
            Event("job.removed", {"id": job_id}) for job_id in self._jobs if job_id not in current
        )
        self._jobs = {job_id: (job.updated_at, job.state) for job_id, job in current.items()}
        return events


def _job_data(job: JobView) -> dict[str, Any]:
    return job_summary(job, None).model_dump(mode="json", exclude={"last_run"})


def format_event(event_id: int, event: Event) -> str:
    if isinstance(event.data, str):
        text = event.data
    else:
        text = json.dumps(event.data, separators=(",", ":"))
    # a data line ends at any of SSE's line breaks: text of several lines takes one each
    data = "".join(f"data: {line}\n" for line in _SSE_LINE_BREAK.split(text))
    return f"id: {event_id}\nevent: {event.name}\n{data}\n"


async def stream(
    feed: Feed,
    disconnected: Callable[[], Awaitable[bool]],
    *,
    poll_seconds: float = POLL_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[str]:
    """SSE text: events as they happen, a keepalive comment when quiet, until disconnect."""
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    event_id = 0
    last_sent = time.monotonic()
    while not await disconnected():
        for event in await run_in_threadpool(feed.tick):
            event_id += 1
            last_sent = time.monotonic()
            yield format_event(event_id, event)
        if time.monotonic() - last_sent >= keepalive_seconds:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        await asyncio.sleep(poll_seconds)
