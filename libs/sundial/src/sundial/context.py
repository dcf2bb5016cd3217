"""Answers from run history for job code: idempotency guards and dependencies.

The runner sets the current run's context; these helpers read the backend through it.
They make one blocking backend call: from an ``async def`` job, call them through
``asyncio.to_thread``.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sundial.models import Outcome

if TYPE_CHECKING:
    from sundial.backends.base import Backend


@dataclass(frozen=True)
class RunContext:
    """What a running job may know about its own run."""

    job_id: str
    run_id: str
    scheduled_time: datetime
    attempt: int
    backend: Backend
    timezone: str = "UTC"


_current: ContextVar[RunContext | None] = ContextVar("sundial_run", default=None)


def current_run() -> RunContext:
    """The context of the run executing this code; fails outside a Sundial run."""
    context = _current.get()
    if context is None:
        raise RuntimeError("no Sundial run is executing in this context")
    return context


def set_current_run(context: RunContext | None) -> object:
    return _current.set(context)


def period_start(period: str, moment: datetime, timezone: str = "UTC") -> datetime:
    """Start of the hour or day that contains ``moment``, in ``timezone``."""
    local = moment.astimezone(ZoneInfo(timezone))
    if period == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown period {period!r}; use 'hour' or 'day'")


def succeeded_since(job_id: str, since: datetime | timedelta) -> bool:
    """Whether ``job_id`` had a successful run that started at or after ``since``."""
    context = current_run()
    if isinstance(since, timedelta):
        since = context.scheduled_time - since
    return context.backend.last_run(job_id, outcome=Outcome.SUCCESS, since=since) is not None


def already_succeeded(period: str = "day", job_id: str | None = None) -> bool:
    """Whether this job (or ``job_id``) already succeeded in the current hour or day."""
    context = current_run()
    start = period_start(period, context.scheduled_time, context.timezone)
    return succeeded_since(job_id or context.job_id, start)
