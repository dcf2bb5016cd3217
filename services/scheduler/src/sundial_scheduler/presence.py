"""This instance's presence in the backend: its heartbeat, and the sweep of dead ones.

Every instance heartbeats on each tick. The leader also interrupts the runs that dead
instances left ``running`` — but only once it has reached the backend for as long as
an instance may stay silent before it counts as dead: after an outage every heartbeat
is old, the live instances' included. On the same sweep it forgets the records of
instances silent for longer than :data:`~sundial.constants.FORGET_INSTANCE_AFTER_SECONDS`
(a killed process never removes its own), so that listings of workers and schedulers
stay short while a recent death stays visible.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from sundial import __version__
from sundial.backends import Backend, BackendError
from sundial.constants import FORGET_INSTANCE_AFTER_SECONDS, dead_after, heartbeat_interval
from sundial.models import Instance, InstanceRole, Run, utcnow

log = structlog.get_logger("sundial.scheduler")

IO = Callable[..., Awaitable[Any]]


class Presence:
    """Heartbeats of one instance, and whom it may take for dead."""

    def __init__(
        self,
        backend: Backend,
        *,
        instance_id: str,
        started_at: datetime,
        lease_seconds: float,
        io: IO,
        queues: Sequence[str] = (),
    ) -> None:
        self._backend = backend
        self._instance_id = instance_id
        self._started_at = started_at
        self._queues = list(queues)
        self._io = io
        self.tick_seconds = heartbeat_interval(lease_seconds)
        self._silence = dead_after(lease_seconds)
        # Monotonic start of the current streak of ticks that reached the backend.
        self._reachable_since: float | None = None

    def instance(self, role: InstanceRole) -> Instance:
        return Instance(
            id=self._instance_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            role=role,
            version=__version__,
            started_at=self._started_at,
            queues=self._queues,
        )

    async def heartbeat(self, role: InstanceRole) -> None:
        await self._io(self._backend.heartbeat, self.instance(role))

    def reached(self, at: float) -> None:
        """A tick that started at ``at`` (monotonic) reached the backend."""
        if self._reachable_since is None:
            self._reachable_since = at

    def lost(self) -> None:
        """A tick failed to reach the backend."""
        self._reachable_since = None

    async def interrupt_orphans(self) -> list[Run]:
        """Mark runs of instances whose heartbeat stopped as interrupted; return them."""
        since = self._reachable_since
        if since is None or time.monotonic() - since < self._silence:
            return []  # the others may not have had the chance to heartbeat yet
        now = utcnow()
        cutoff = now - timedelta(seconds=self._silence)
        instances = await self._io(self._backend.list_instances)
        live = {i.id for i in instances if i.last_seen >= cutoff} | {self._instance_id}
        await self._forget_long_dead(instances, now)
        interrupted: list[Run] = await self._io(self._backend.interrupt_orphaned_runs, live)
        if interrupted:
            log.warning("runs.interrupted", count=len(interrupted), reason="their instance stopped")
        return interrupted

    async def _forget_long_dead(self, instances: Sequence[Instance], now: datetime) -> None:
        forget_before = now - timedelta(seconds=FORGET_INSTANCE_AFTER_SECONDS)
        gone = [i.id for i in instances if i.last_seen < forget_before]
        for instance_id in gone:
            await self._io(self._backend.remove_instance, instance_id)
        if gone:
            log.info("instances.forgotten", count=len(gone), reason="silent for long")

    async def heartbeat_while_stopping(self) -> None:
        """Heartbeat as ``stopping`` until cancelled, so the next leader leaves our runs be."""
        while True:
            try:
                await self.heartbeat(InstanceRole.STOPPING)
            except (BackendError, TimeoutError):
                pass
            await asyncio.sleep(self.tick_seconds)
