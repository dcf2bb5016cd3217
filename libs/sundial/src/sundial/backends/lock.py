"""The shape every backend's leader lock shares: take, extend, give up, and close."""

from __future__ import annotations

from abc import ABC, abstractmethod

from sundial.backends.base import BackendError


class LeaderLock(ABC):
    """A lock that at most one instance holds; this object remembers if it is held here."""

    def __init__(self) -> None:
        self._holder: str | None = None

    @abstractmethod
    def acquire(self, instance_id: str, lease_seconds: float) -> bool:
        """Take the lock if free; True if ``instance_id`` now holds it."""

    @abstractmethod
    def renew(self, instance_id: str, lease_seconds: float) -> bool:
        """Extend the lease; False if ``instance_id`` no longer holds the lock."""

    @abstractmethod
    def release(self, instance_id: str) -> None:
        """Give up the lock if ``instance_id`` holds it."""

    def close(self) -> None:
        """Give up the lock if it is held here."""
        if self._holder is not None:
            try:
                self.release(self._holder)
            except BackendError:
                pass  # the lease expires on its own; closing must not fail on an outage
