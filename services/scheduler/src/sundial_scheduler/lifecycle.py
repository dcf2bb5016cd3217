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


def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


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
