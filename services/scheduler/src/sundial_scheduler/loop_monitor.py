"""Names the async job that blocks the event loop.

An ``async def`` job that calls blocking code (``requests.get``, ``time.sleep``) stops
every other job on the loop. The loop beats every :data:`BEAT_SECONDS` from a callback
of its own; a watchdog thread notices when the beat is older than the threshold and
notes which task the loop is executing at that moment. When the loop beats again (or
the noted run ends, whichever comes first, both on the loop), the whole time since the
last beat is charged to that run: added to its :class:`Watch`, logged as a warning with
the job and how long, and reported through ``on_blocked``. Runs that merely wait while
another one blocks are not charged, since the loop is not executing them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from sundial.config import Settings
from sundial.metrics import SchedulerMetrics

log = structlog.get_logger("sundial.loop")

#: how often the loop beats and the watchdog looks. Each wakeup of an otherwise idle
#: process costs CPU (about 0.1 ms here), so not more often than a block worth naming
#: needs: one longer than the threshold plus a beat is always named, a shorter one past
#: the threshold is named if the watchdog looks while it lasts, and logged unnamed if not.
BEAT_SECONDS = 0.25


class Watch:
    """The loop time one run held, counted over the blocks that the monitor caught."""

    __slots__ = ("blocked_seconds", "job_id", "run_id")

    def __init__(self, job_id: str, run_id: str) -> None:
        self.job_id = job_id
        self.run_id = run_id
        self.blocked_seconds = 0.0


def loop_monitor(settings: Settings, metrics: SchedulerMetrics) -> LoopMonitor:
    """The monitor of a process, counting what it catches in the job's blocked-time metric."""
    return LoopMonitor(
        threshold=settings.event_loop_blocked_seconds,
        on_blocked=lambda watch, seconds: metrics.loop_blocked(watch.job_id, seconds),
    )


class LoopMonitor:
    """Watches one event loop; ``threshold`` 0 turns it off."""

    def __init__(self, *, threshold: float, on_blocked: Callable[[Watch, float], None]) -> None:
        self.threshold = threshold
        self._on_blocked = on_blocked
        self._watches: dict[asyncio.Task[Any], Watch] = {}
        self._lock = threading.Lock()
        self._beat = time.monotonic()
        #: the watch the watchdog caught executing during the current block
        self._blamed: Watch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.threshold <= 0 or self._thread is not None:
            return
        self._loop = loop
        self._beat = time.monotonic()
        self._timer = loop.call_later(BEAT_SECONDS, self._on_beat)
        self._thread = threading.Thread(target=self._watchdog, name="sundial-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @contextmanager
    def watching(self, job_id: str, run_id: str) -> Iterator[Watch]:
        """Charge to this run the blocks during which the loop executes the current task."""
        watch = Watch(job_id, run_id)
        task = asyncio.current_task()
        if self._thread is None or task is None:
            yield watch
            return
        self._watches[task] = watch
        try:
            yield watch
        finally:
            del self._watches[task]
            # A job that blocks and then returns ends before the loop beats again.
            if self._blamed is watch:
                self._settle()

    def _on_beat(self) -> None:
        self._settle()
        assert self._loop is not None
        self._timer = self._loop.call_later(BEAT_SECONDS, self._on_beat)

    def _settle(self) -> None:
        """On the loop: close the block since the last beat, charged to whom it caught."""
        now = time.monotonic()
        with self._lock:
            blocked, self._beat = now - self._beat, now
            watch, self._blamed = self._blamed, None
        if blocked < self.threshold:
            return
        if watch is None:
            log.warning("event_loop.blocked", blocked_seconds=round(blocked, 3))
            return
        watch.blocked_seconds += blocked
        log.warning(
            "event_loop.blocked_by_job",
            job_id=watch.job_id,
            run_id=watch.run_id,
            blocked_seconds=round(blocked, 3),
        )
        self._on_blocked(watch, blocked)

    def _watchdog(self) -> None:
        assert self._loop is not None
        while not self._stopped.wait(BEAT_SECONDS):
            with self._lock:
                if self._blamed is not None or time.monotonic() - self._beat < self.threshold:
                    continue
                task = asyncio.current_task(self._loop)
                self._blamed = self._watches.get(task) if task is not None else None
