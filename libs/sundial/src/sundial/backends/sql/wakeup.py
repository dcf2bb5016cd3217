"""Waking the leader when a command is queued: LISTEN/NOTIFY on Postgres, polling on SQLite."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sundial.backends.sql.database import DedicatedConnection
from sundial.backends.sql.dialects import Postgres

NOTIFY_CHANNEL = "sundial_commands"
#: how often a SQLite leader looks for new commands
POLL_SECONDS = 0.5


class Wakeup(Protocol):
    def notify(self, conn: Connection, command_id: str) -> None:
        """Announce ``command_id`` from inside the transaction that stores it."""

    def wait(self, timeout: float) -> None:
        """Block until a command may be pending or ``timeout`` seconds pass."""

    def close(self) -> None: ...


class ListenNotifyWakeup:
    """Postgres: NOTIFY on enqueue, LISTEN on a dedicated connection of the leader."""

    def __init__(self, dialect: Postgres) -> None:
        self._dialect = dialect
        self._listener = DedicatedConnection(dialect.conninfo(), setup=f"LISTEN {NOTIFY_CHANNEL}")
        self._lock = threading.Lock()

    def notify(self, conn: Connection, command_id: str) -> None:
        # Delivered only if the insert commits, so a woken leader finds the row.
        conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, command_id)))

    def wait(self, timeout: float) -> None:
        with self._lock:
            try:
                for _ in self._listener.get().notifies(timeout=timeout, stop_after=1):
                    pass
            except psycopg.Error as error:
                self._listener.drop()
                raise self._dialect.error(error) from error

    def close(self) -> None:
        with self._lock:
            self._listener.drop()


class PollingWakeup:
    """SQLite: nothing to announce; the leader looks again after a short while."""

    def notify(self, conn: Connection, command_id: str) -> None:
        """Polling finds the row on its own."""

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, POLL_SECONDS))

    def close(self) -> None:
        """Nothing is held open."""
