"""Electing the leader on SQL: an advisory lock on Postgres, a lease row on SQLite.

Both are a :class:`~sundial.backends.lock.LeaderLock`;
:class:`~sundial.backends.sql.backend.SqlBackend` picks one at construction.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import sqlalchemy as sa

from sundial.backends.lock import LeaderLock
from sundial.backends.sql import schema
from sundial.backends.sql.database import Database, DedicatedConnection
from sundial.backends.sql.dialects import Postgres
from sundial.models import utcnow

LEADER_LOCK_KEY = 0x53554E4449414C01
# The same keepalives on the server's side of the leader's connection: the advisory lock
# is held until Postgres sees the session end, which for a host that died or dropped off
# the network would otherwise take the server's default keepalive time (often 2 hours).
# Set per session with SET (not a startup option, which poolers reject).
SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
)
#: the lease row a Postgres leader stamps next to its advisory lock
PG_LEASE_NAME = "postgres-leader"
#: the lease row that is the lock itself on SQLite
LEASE_NAME = "leader"
STALE_LOCK_RETRIES = 10
STALE_LOCK_RETRY_SECONDS = 0.05
# SQLAlchemy reports an INSERT's row count only when asked to keep it.
_COUNT_ROWS = {"preserve_rowcount": True}
# The lock key as pg_locks shows it: two 32-bit halves.
_LOCK_ROW = (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF)


class AdvisoryLockLeadership(LeaderLock):
    """Postgres: a session advisory lock on a dedicated connection, plus a lease stamp.

    The lock dies with the leader's session, so a killed leader is replaced as soon as
    Postgres notices. A session can also hold the lock while its process is frozen or
    its event loop stuck (the kernel still answers keepalives), so the holder stamps a
    lease on the database's clock, and a standby that finds the stamp expired ends the
    holder's session, which frees the lock. The old leader learns it at its next renewal.
    """

    def __init__(self, dialect: Postgres) -> None:
        super().__init__()
        self._dialect = dialect
        self._conn = DedicatedConnection(dialect.conninfo(), setup=SERVER_KEEPALIVES)
        self._lock = threading.Lock()

    def acquire(self, instance_id: str, lease_seconds: float) -> bool:
        with self._lock:
            if self._holder is not None:
                # Advisory locks are re-entrant per session: locking again would stack.
                return self._holder == instance_id and self._holds_lock()
            if self._try_lock(instance_id, lease_seconds):
                return True
            if self._end_stale_session():
                return self._retry_lock(instance_id, lease_seconds)
            return False

    def renew(self, instance_id: str, lease_seconds: float) -> bool:
        with self._lock:
            if self._holder != instance_id:
                return False
            if self._holds_lock():
                return self._stamp(instance_id, lease_seconds)
            # The session (and so the lock) is gone: someone else may hold it already.
            self._holder = None
            self._conn.drop()
            return False

    def release(self, instance_id: str) -> None:
        with self._lock:
            if self._holder != instance_id:
                return
            self._holder = None
            try:
                self._conn.get().execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK_KEY,))
            except psycopg.Error:
                pass  # a broken session has released its locks already
            finally:
                self._conn.drop()

    def close(self) -> None:
        super().close()
        with self._lock:
            self._conn.drop()  # a standby keeps it open between attempts

    def _stamp(self, instance_id: str, lease_seconds: float) -> bool:
        self._execute(
            "INSERT INTO sundial_leader_lease (name, holder, expires_at)"
            " VALUES (%s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (name) DO UPDATE"
            " SET holder = excluded.holder, expires_at = excluded.expires_at",
            (PG_LEASE_NAME, instance_id, lease_seconds),
        )
        return True

    def _end_stale_session(self) -> bool:
        """Terminate the lock holder's session if its lease stamp has expired."""
        row = self._execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l"
            " JOIN sundial_leader_lease s ON s.name = %s AND s.expires_at < now()"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1",
            (PG_LEASE_NAME, *_LOCK_ROW),
        )
        return row is not None and bool(row[0])

    def _try_lock(self, instance_id: str, lease_seconds: float) -> bool:
        row = self._execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        if row is None or not row[0]:
            return False
        self._holder = instance_id
        return self._stamp(instance_id, lease_seconds)

    def _retry_lock(self, instance_id: str, lease_seconds: float) -> bool:
        """Take the lock freed by a terminated session (its backend exits in moments)."""
        for _ in range(STALE_LOCK_RETRIES):
            if self._try_lock(instance_id, lease_seconds):
                return True
            time.sleep(STALE_LOCK_RETRY_SECONDS)
        return False

    def _execute(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One statement on the dedicated connection; a broken one is dropped."""
        try:
            cursor = self._conn.get().execute(sql, params)
            return cursor.fetchone() if cursor.description else None
        except psycopg.Error as error:
            # The session, and the advisory lock with it, is gone.
            self._holder = None
            self._conn.drop()
            raise self._dialect.error(error) from error

    def _holds_lock(self) -> bool:
        """Whether the leader session is alive and still holds the advisory lock."""
        try:
            row = (
                self._conn.get()
                .execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND classid::bigint = %s"
                    " AND objid::bigint = %s AND objsubid = 1",
                    _LOCK_ROW,
                )
                .fetchone()
            )
        except psycopg.Error:
            return False
        return row is not None and row[0] > 0


class LeaseRowLeadership(LeaderLock):
    """SQLite: one row names the holder and when its lease expires.

    One machine shares the file, so there is no session to die with the leader: a dead
    leader is replaced when its lease expires.
    """

    def __init__(self, database: Database) -> None:
        super().__init__()
        self._db = database

    def acquire(self, instance_id: str, lease_seconds: float) -> bool:
        now = utcnow()
        lease = schema.lease
        stmt = self._db.insert(lease).values(
            name=LEASE_NAME, holder=instance_id, expires_at=now + timedelta(seconds=lease_seconds)
        )
        # One statement: taken only if free, expired or already ours, however many
        # processes try at once.
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
            where=sa.or_(
                lease.c.holder.is_(None),
                lease.c.holder == instance_id,
                lease.c.expires_at <= now,
            ),
        )
        with self._db.begin() as conn:
            taken = conn.execute(stmt, execution_options=_COUNT_ROWS).rowcount == 1
        if taken:
            self._holder = instance_id
        return taken

    def renew(self, instance_id: str, lease_seconds: float) -> bool:
        # Still the holder means nobody took over, even if the lease ran out meanwhile.
        renewed = self._update(instance_id, expires_at=utcnow() + timedelta(seconds=lease_seconds))
        if not renewed and self._holder == instance_id:
            self._holder = None
        return renewed

    def release(self, instance_id: str) -> None:
        self._update(instance_id, holder=None, expires_at=None)
        if self._holder == instance_id:
            self._holder = None

    def _update(self, instance_id: str, **values: Any) -> bool:
        lease = schema.lease
        stmt = (
            sa.update(lease)
            .where(lease.c.name == LEASE_NAME, lease.c.holder == instance_id)
            .values(**values)
        )
        with self._db.begin() as conn:
            return bool(conn.execute(stmt).rowcount == 1)
