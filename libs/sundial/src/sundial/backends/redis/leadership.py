"""Electing the leader on Redis: a token lock (``SET NX PX``) renewed and released by token.

Redis keeps no session that dies with a process, so a dead leader's lock expires with
its lease; a live leader renews it every third of the lease.
"""

from __future__ import annotations

import time

import redis

from sundial.backends.lock import LeaderLock
from sundial.backends.redis import keys
from sundial.backends.redis.connection import Target, guarded

#: a standby that finds the leader lock this close to expiring (a fraction of the lease,
#: the scheduler's polling interval at most) waits for the expiry and tries once more
EXPIRY_WAIT_FRACTION = 1 / 3
EXPIRY_MARGIN_SECONDS = 0.01

# KEYS: leader. ARGV: instance id, lease ms. Extends the lease only if it is ours.
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: leader. ARGV: instance id. Deletes the lock only if it is ours.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class TokenLockLeadership(LeaderLock):
    """The ``sundial:leader`` key holds the leader's instance id until its lease expires."""

    def __init__(self, client: redis.Redis[str], target: Target) -> None:
        super().__init__()
        self.target = target
        self._client = client
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    @guarded
    def acquire(self, instance_id: str, lease_seconds: float) -> bool:
        lease_ms = _millis(lease_seconds)
        held = self._take(instance_id, lease_ms)
        if not held:
            # A live leader renews every third of the lease, so a lock this close to
            # expiring has a dead or stuck holder. Wait for the expiry rather than for
            # the next poll: a dead leader is then replaced within the lease.
            remaining_ms = int(self._client.pttl(keys.LEADER))
            if 0 < remaining_ms <= lease_ms * EXPIRY_WAIT_FRACTION:
                time.sleep(remaining_ms / 1000 + EXPIRY_MARGIN_SECONDS)
                held = self._take(instance_id, lease_ms)
        if held:
            self._holder = instance_id
        return held

    @guarded
    def renew(self, instance_id: str, lease_seconds: float) -> bool:
        held = bool(self._renew(keys=[keys.LEADER], args=[instance_id, _millis(lease_seconds)]))
        if not held and self._holder == instance_id:
            self._holder = None
        return held

    @guarded
    def release(self, instance_id: str) -> None:
        self._release(keys=[keys.LEADER], args=[instance_id])
        if self._holder == instance_id:
            self._holder = None

    def _take(self, instance_id: str, lease_ms: int) -> bool:
        if self._client.set(keys.LEADER, instance_id, nx=True, px=lease_ms):
            return True
        # Already ours (or our SET applied but its reply was lost): extend, by token.
        return bool(self._renew(keys=[keys.LEADER], args=[instance_id, lease_ms]))


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))
