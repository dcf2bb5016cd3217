"""Electing the leader on Redis: a token lock (``SET NX PX``) renewed and released by token.

Redis keeps no session that dies with a process, so the lock itself expires only with
its lease. What Redis does keep is the list of its clients: every instance takes, renews
and gives up the lock through one connection of its own, named after its instance id.
A standby that finds the lock held by an instance whose named connection is gone from
the server (the kernel closed it when the process died) takes the lock over at once,
with a script that checks the holder has not changed. A holder that is alive but cut
off keeps its connection open on the server, so it loses the lock only when its lease
runs out; fencing (``may_run``, the claims) never relies on this fast path.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import redis
import structlog
from redis.commands.core import Script

from sundial.backends.lock import LeaderLock
from sundial.backends.redis import keys
from sundial.backends.redis.connection import Target, guarded

log = structlog.get_logger(__name__)

#: a standby that finds the leader lock this close to expiring (a fraction of the lease,
#: the scheduler's polling interval at most) waits for the expiry and tries once more
EXPIRY_WAIT_FRACTION = 1 / 3
EXPIRY_MARGIN_SECONDS = 0.01
#: prefix of the connection name through which an instance holds the lock
CONNECTION_NAME_PREFIX = "sundial-leader:"

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
# KEYS: leader. ARGV: the holder seen gone, instance id, lease ms. Takes the lock over
# only from that holder, so a lock renewed or retaken in between stays where it is.
_TAKE_OVER_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


def connection_name(instance_id: str) -> str:
    """The name of the connection through which ``instance_id`` holds the lock.

    Client names may not contain spaces or other special characters, and instance ids
    may, so the name carries a digest of the id.
    """
    return CONNECTION_NAME_PREFIX + hashlib.sha256(instance_id.encode()).hexdigest()[:24]


@dataclass
class _Connection:
    """One instance's named connection and the lock's scripts registered on it."""

    client: redis.Redis[str]
    renew: Script = field(init=False)
    release: Script = field(init=False)
    take_over: Script = field(init=False)

    def __post_init__(self) -> None:
        self.renew = self.client.register_script(_RENEW_LUA)
        self.release = self.client.register_script(_RELEASE_LUA)
        self.take_over = self.client.register_script(_TAKE_OVER_LUA)


class TokenLockLeadership(LeaderLock):
    """The ``sundial:leader`` key holds the leader's instance id until its lease expires."""

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self._connections: dict[str, _Connection] = {}
        # Whether the server answers CLIENT LIST; a server that refuses it (an ACL, a
        # managed service) leaves the lease as the only way a dead leader is replaced.
        self._can_list_clients = True

    @guarded
    def acquire(self, instance_id: str, lease_seconds: float) -> bool:
        lease_ms = _millis(lease_seconds)
        held = self._take(instance_id, lease_ms) or self._take_over(instance_id, lease_ms)
        if not held:
            # A live leader renews every third of the lease, so a lock this close to
            # expiring has a dead or stuck holder. Wait for the expiry rather than for
            # the next poll: a dead leader is then replaced within the lease.
            remaining_ms = int(self._connection(instance_id).client.pttl(keys.LEADER))
            if 0 < remaining_ms <= lease_ms * EXPIRY_WAIT_FRACTION:
                time.sleep(remaining_ms / 1000 + EXPIRY_MARGIN_SECONDS)
                held = self._take(instance_id, lease_ms)
        if held:
            self._holder = instance_id
        return held

    @guarded
    def renew(self, instance_id: str, lease_seconds: float) -> bool:
        renew = self._connection(instance_id).renew
        held = bool(renew(keys=[keys.LEADER], args=[instance_id, _millis(lease_seconds)]))
        if not held and self._holder == instance_id:
            self._holder = None
        return held

    @guarded
    def release(self, instance_id: str) -> None:
        self._connection(instance_id).release(keys=[keys.LEADER], args=[instance_id])
        if self._holder == instance_id:
            self._holder = None

    def close(self) -> None:
        super().close()
        for connection in self._connections.values():
            connection.client.close()
        self._connections.clear()

    def _connection(self, instance_id: str) -> _Connection:
        """The one connection, named after ``instance_id``, that its lock calls go through.

        The name is set on every (re)connect, so the server lists it for exactly as
        long as this process has the connection open.
        """
        connection = self._connections.get(instance_id)
        if connection is None:
            connection = _Connection(
                self.target.client(
                    single_connection_client=True, client_name=connection_name(instance_id)
                )
            )
            self._connections[instance_id] = connection
        return connection

    def _take(self, instance_id: str, lease_ms: int) -> bool:
        connection = self._connection(instance_id)
        if connection.client.set(keys.LEADER, instance_id, nx=True, px=lease_ms):
            return True
        # Already ours (or our SET applied but its reply was lost): extend, by token.
        return bool(connection.renew(keys=[keys.LEADER], args=[instance_id, lease_ms]))

    def _take_over(self, instance_id: str, lease_ms: int) -> bool:
        """Take the lock from a holder whose connection the server no longer has."""
        if not self._can_list_clients:
            return False
        connection = self._connection(instance_id)
        holder = connection.client.get(keys.LEADER)
        if holder is None or holder == instance_id:
            return False
        try:
            clients = connection.client.client_list(_type="normal")
            names = {entry.get("name") for entry in clients}
        except redis.ResponseError as error:
            self._can_list_clients = False
            log.warning(
                "leadership.client_list_refused",
                error=str(error),
                consequence="a dead leader is replaced when its lease expires",
            )
            return False
        if connection_name(holder) in names:
            return False
        taken = bool(connection.take_over(keys=[keys.LEADER], args=[holder, instance_id, lease_ms]))
        if taken:
            log.info("leadership.taken_over", previous=holder, reason="holder's connection gone")
        return taken


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))
