"""Connections to the SQL server: the pooled engine's transactions and dedicated sessions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from sundial.backends.sql.dialects import READ_ONLY, Dialect, Insert

# Keeps IN (...) lists well under every driver's bound-parameter limit.
IN_CHUNK = 500

_T = TypeVar("_T")


class Database:
    """The pooled engine of one dialect, with Sundial's two kinds of transaction."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.engine = dialect.create_engine()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction, committed on exit."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa_exc.DBAPIError as error:
            raise self.dialect.error(error) from error

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (on SQLite, one that takes no write lock)."""
        try:
            with self.engine.connect() as conn:
                yield conn.execution_options(**{READ_ONLY: True})
        except sa_exc.DBAPIError as error:
            raise self.dialect.error(error) from error

    def insert(self, table: sa.Table) -> Insert:
        return self.dialect.insert(table)

    def upsert(self, table: sa.Table, keys: list[str]) -> sa.Executable:
        """INSERT that replaces every non-key column of an existing row."""
        stmt = self.insert(table)
        changes = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=changes)

    def dispose(self) -> None:
        self.engine.dispose()


class DedicatedConnection:
    """A psycopg session kept out of the pool: opened on first use, again after a break.

    For what must stay on one session: LISTEN, and a session advisory lock.
    """

    def __init__(self, conninfo: str, *, setup: str | None = None) -> None:
        self._conninfo = conninfo
        self._setup = setup
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def get(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.drop()
            conn = psycopg.connect(self._conninfo, autocommit=True)
            if self._setup:
                conn.execute(self._setup)
            self._conn = conn
        return self._conn

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def chunks(items: Sequence[_T], size: int = IN_CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
