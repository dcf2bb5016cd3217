"""What every long-running Sundial process does around its work: name itself, reach the
backend, and stop on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from sundial.backends import Backend, BackendError
from sundial.config import Settings

log = structlog.get_logger("sundial.scheduler")

SETUP_RETRY_FIRST_SECONDS = 0.5
SETUP_RETRY_MAX_SECONDS = 10.0


def instance_id(settings: Settings) -> str:
    """``SUNDIAL_INSTANCE_ID``, or a name unique to this process: host, pid, random."""
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


#: how often the event loop looks whether a stop signal has arrived
SIGNAL_POLL_SECONDS = 0.1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """SIGTERM and SIGINT set ``stop``, however busy the event loop is.

    asyncio's own signal handlers carry the signal number through the loop's self-pipe,
    the same pipe every ``call_soon_threadsafe`` writes to: when threads flood it while
    the loop is busy, the pipe fills and the signal is dropped. Here the handler only
    notes the signal, and a task on the loop looks at that note on a short timer, which
    needs no pipe at all.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._received: int | None = None
        self._previous: dict[int, Any] = {}
        self._relay: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Take over the stop signals (main thread, with the loop running)."""
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._note)
        self._relay = asyncio.create_task(self._wait())

    def restore(self) -> None:
        """Give the stop signals back to whoever handled them before."""
        if self._relay is not None:
            self._relay.cancel()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(self, *_: object) -> None:
        self.restore()

    def _note(self, signum: int, _frame: object) -> None:
        self._received = signum

    async def _wait(self) -> None:
        # Polling on purpose: setting an event from the handler is what can be lost.
        while self._received is None and not self._stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(SIGNAL_POLL_SECONDS)
        if self._received is not None:
            log.info("signal.received", signal=signal.Signals(self._received).name)
            self._stop.set()


async def set_up_backend(
    backend: Backend,
    *,
    stop: asyncio.Event,
    io: Callable[..., Awaitable[Any]],
    on_error: Callable[[str], None],
) -> bool:
    """Migrate the schema, retrying with backoff while the backend is unreachable.

    False if ``stop`` was set first.
    """
    delay = SETUP_RETRY_FIRST_SECONDS
    while not stop.is_set():
        try:
            await io(backend.setup)
            return True
        except BackendError as error:
            on_error("setup")
            log.error("backend.unreachable", error=str(error), retry_in_s=delay)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, SETUP_RETRY_MAX_SECONDS)
    return False
