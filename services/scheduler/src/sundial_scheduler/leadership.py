"""One instance's leadership: holding the lease, the terms it leads, and fencing.

A term begins when this instance takes the leader lock and ends when it loses it, lets
the lease lapse or stops. Everything the leader does is fenced by :meth:`may_run`: true
only while the lease was renewed within the lease, so a leader cut off from the backend
stops scheduling before anyone else may take over.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sundial.backends import Backend

_T = TypeVar("_T")
IO = Callable[..., Awaitable[Any]]


class Change(enum.Enum):
    PROMOTED = "promoted"
    DEMOTED = "demoted"


class Leadership:
    """The lease of one instance, renewed (or sought) once per tick.

    Its state changes only on the event loop: a backend call that times out on its
    I/O thread can leave the lock taken in the backend, but not this instance believing
    it leads; the next tick's call (re-entrant for the holder) settles it.
    """

    def __init__(self, backend: Backend, *, instance_id: str, lease_seconds: float, io: IO) -> None:
        self._backend = backend
        self._instance_id = instance_id
        self._lease = lease_seconds
        self._io = io
        self._leading = False
        self._lease_until = 0.0
        # Bumped on every promotion and demotion: a term start-up that finds it changed
        # belongs to a term that has ended, and must discard what it built.
        self._term = 0

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def term(self) -> int:
        return self._term

    def may_run(self) -> bool:
        """True while this instance holds a lease it has renewed recently (fencing)."""
        return self._leading and time.monotonic() < self._lease_until

    def in_term(self, term: int) -> bool:
        """Whether term ``term`` is still the current one."""
        return self._leading and self._term == term

    async def step(self) -> Change | None:
        """Renew the lease, or take the lock if free; the change this brings, if any."""
        started = time.monotonic()
        if self._leading:
            if await self._io(self._backend.renew_leadership, self._instance_id, self._lease):
                self._lease_until = started + self._lease
                return None
            self.step_down()
            return Change.DEMOTED
        if await self._io(self._backend.acquire_leadership, self._instance_id, self._lease):
            self._lease_until = started + self._lease
            self._term += 1
            self._leading = True
            return Change.PROMOTED
        return None

    def lapsed(self) -> bool:
        """Whether this instance leads on a lease it failed to renew in time."""
        return self._leading and time.monotonic() >= self._lease_until

    def step_down(self) -> None:
        """End the current term here (the lock is released by :meth:`release`, or expires)."""
        self._leading = False
        self._lease_until = 0.0
        self._term += 1

    async def release(self) -> None:
        """Give the lock up at once, so that a standby need not wait out the lease."""
        await self._io(self._backend.release_leadership, self._instance_id)
