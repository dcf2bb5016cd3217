"""The task engine that carries queued runs from the leader to workers.

Sundial's run record stays the truth for history, timeouts, retries and overlap: the
engine only delivers a message that names one run (its identity, nothing else), at
least once, to one of the workers of that run's queue. Its own retries and time limits
are not used. Each backend brings its engine: procrastinate on Postgres, Dramatiq on Redis.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sundial.models import Run


@dataclass(frozen=True)
class RunMessage:
    """What a message carries: which run of which job, fire time and attempt."""

    run_id: str
    job_id: str
    scheduled_time: datetime
    attempt: int

    @classmethod
    def of(cls, run: Run) -> RunMessage:
        return cls(run.run_id, run.job_id, run.scheduled_time, run.attempt)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job_id": self.job_id,
            "scheduled_time": self.scheduled_time.isoformat(),
            "attempt": self.attempt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunMessage:
        return cls(
            run_id=str(data["run_id"]),
            job_id=str(data["job_id"]),
            scheduled_time=datetime.fromisoformat(str(data["scheduled_time"])),
            attempt=int(data["attempt"]),
        )


Handler = Callable[[RunMessage], Coroutine[Any, Any, None]]


class RunQueue(ABC):
    """A worker's side of the engine: take messages, hand each to Sundial's handler."""

    @abstractmethod
    async def consume(
        self,
        *,
        queues: Collection[str],
        concurrency: int,
        handle: Handler,
        stop: asyncio.Event,
        grace: float,
    ) -> None:
        """Hand messages of ``queues`` to ``handle``, ``concurrency`` at a time, until
        ``stop`` is set; then let running handlers finish for up to ``grace`` seconds and
        cancel the rest. A message counts as delivered once its handler returns or is
        cancelled: the run record, not the engine, says what became of it."""
