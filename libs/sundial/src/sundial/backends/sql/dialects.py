"""What differs between Postgres and SQLite, decided once per backend from its URL.

Postgres is a server shared by machines: it wakes the leader with LISTEN/NOTIFY, elects
it with a session advisory lock on a dedicated connection, and serialises migrations
with an advisory lock. SQLite is one file on one machine: it polls for commands, elects
with a lease row, and serialises every writer already (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine

from sundial.backends.base import BackendError

CONNECT_TIMEOUT_SECONDS = 5
# Every connection must notice a dead server or network within seconds, or a
# partitioned leader would keep believing it holds the lock.
KEEPALIVES: dict[str, str | int | None] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
# Advisory lock keys are global to a Postgres database: a fixed, distinctive constant
# ("SUNDIAL" and a suffix) so it does not collide with an application's own locks.
MIGRATION_LOCK_KEY = 0x53554E4449414C02
# Long enough to ride out the other process's write transaction, short enough that a
# stuck writer shows up as an error rather than a hang.
SQLITE_BUSY_TIMEOUT_SECONDS = 30
WAL_SWITCH_ATTEMPTS = 50
WAL_SWITCH_RETRY_SECONDS = 0.1
#: claims are won with INSERT … RETURNING, which SQLite has from 3.35
SQLITE_MIN_VERSION = (3, 35)
#: execution option marking a transaction that only reads (SQLite then takes no write lock)
READ_ONLY = "sundial_read_only"

Insert = postgresql.Insert | sqlite.Insert


class Dialect(ABC):
    """One server kind: its engine, its SQL differences and its error messages."""

    #: "postgres" or "sqlite" (the ``backend`` metric label)
    kind: str

    def __init__(self, url: URL) -> None:
        self.url = url
        self.safe_url = url.render_as_string(hide_password=True)

    @abstractmethod
    def create_engine(self) -> Engine: ...

    @abstractmethod
    def insert(self, table: sa.Table) -> Insert: ...

    @abstractmethod
    def lock_migrations(self, conn: Connection) -> None:
        """Hold off other processes' migrations until ``conn``'s transaction ends."""

    @abstractmethod
    def _unreachable(self, error: Exception, detail: str) -> bool: ...

    def error(self, error: Exception) -> BackendError:
        """A BackendError that names the server (never its password) and what went wrong."""
        cause = getattr(error, "orig", None) or error
        lines = str(cause).strip().splitlines()
        detail = lines[0] if lines else type(cause).__name__
        if self.url.password:
            detail = detail.replace(str(self.url.password), "***")
        what = "is unreachable" if self._unreachable(error, detail) else "failed"
        return BackendError(f"{self.kind} backend at {self.safe_url} {what}: {detail}")


class Postgres(Dialect):
    kind = "postgres"

    def create_engine(self) -> Engine:
        # pre-ping replaces connections a restarted server has closed, instead of failing
        # the first statement on each of them.
        return sa.create_engine(
            self.url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, **KEEPALIVES},
        )

    def conninfo(self) -> str:
        """libpq connection text for the connections kept outside the pool."""
        return make_conninfo(
            self.url.set(drivername="postgresql").render_as_string(hide_password=False),
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            **KEEPALIVES,
        )

    def insert(self, table: sa.Table) -> Insert:
        return postgresql.insert(table)

    def lock_migrations(self, conn: Connection) -> None:
        # Held to the end of the transaction: processes starting together migrate one
        # after another instead of racing to create tables.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))

    def _unreachable(self, error: Exception, detail: str) -> bool:
        return isinstance(
            error,
            sa_exc.OperationalError
            | sa_exc.InterfaceError
            | psycopg.OperationalError
            | psycopg.InterfaceError,
        ) or (isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated)


class Sqlite(Dialect):
    kind = "sqlite"

    def create_engine(self) -> Engine:
        if sqlite3.sqlite_version_info < SQLITE_MIN_VERSION:
            needed = ".".join(map(str, SQLITE_MIN_VERSION))
            raise BackendError(
                f"the sqlite backend needs SQLite {needed} or newer; this Python links "
                f"{sqlite3.sqlite_version}: use a newer Python build, or Postgres"
            )
        folder = Path(self.url.database or "").expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BackendError(
                f"sqlite backend cannot create the folder {folder} for its database: "
                f"{error.strerror}"
            ) from None
        engine = sa.create_engine(
            self.url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine

    def insert(self, table: sa.Table) -> Insert:
        return sqlite.insert(table)

    def lock_migrations(self, conn: Connection) -> None:
        """Nothing to do: a write transaction holds the whole file (``BEGIN IMMEDIATE``)."""

    def _unreachable(self, error: Exception, detail: str) -> bool:
        # sqlite3 raises OperationalError for everything from locks to bad SQL.
        return "unable to open" in detail


def dialect_for(raw_url: str) -> Dialect:
    """The dialect of ``SUNDIAL_BACKEND_URL``; BackendError names what is wrong with it."""
    try:
        url = sa.make_url(raw_url)
    except sa_exc.ArgumentError:
        raise BackendError(
            "SUNDIAL_BACKEND_URL is not a valid database URL; expected "
            "postgresql+psycopg://user:password@host/db or sqlite:///path/to/file.db"
        ) from None
    if url.drivername in ("postgresql", "postgresql+psycopg"):
        return Postgres(url.set(drivername="postgresql+psycopg"))
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        if not url.database or url.database == ":memory:":
            raise BackendError(
                "the SQLite backend needs a file shared by the scheduler and the API; "
                "use sqlite:///path/to/sundial.db"
            )
        return Sqlite(url)
    raise BackendError(
        f"unsupported SQL backend {url.drivername!r}; use postgresql+psycopg:// or sqlite:///"
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
    dbapi_connection.isolation_level = None
    # WAL lets the API read while the scheduler writes. The mode is kept in the file, so
    # only the first connections to a new database switch it; switching waits for no
    # busy handler, so processes starting together retry instead of failing.
    for attempt in range(WAL_SWITCH_ATTEMPTS):
        try:
            if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == WAL_SWITCH_ATTEMPTS - 1:
                raise
            time.sleep(WAL_SWITCH_RETRY_SECONDS)


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then
    # writes can fail at once with "database is locked" rather than wait its turn.
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
