"""procrastinate on the Postgres backend: the engine that carries queued runs to workers.

Its schema lives beside Sundial's in the same database. A run's message is deferred on
the connection of the transaction that claims the fire time and stores the run
``queued`` (procrastinate defers through a SQL function, so that connection can carry
it): a leader that dies before the commit leaves neither, one that commits leaves both.
One task, ``sundial.run``, names the run; its procrastinate queue is the run's Sundial
queue. procrastinate's retries are off (the task never raises) and its job rows are
deleted once handled: the run record says what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import procrastinate
import psycopg
import sqlalchemy as sa
from procrastinate.worker import Worker
from sqlalchemy.engine import Connection

from sundial.backends.history import due
from sundial.backends.queue import Handler, RunMessage, RunQueue
from sundial.backends.sql.dialects import Postgres
from sundial.constants import DEFAULT_QUEUE
from sundial.models import Run, utcnow

TASK_NAME = "sundial.run"
#: how often an idle worker looks for messages LISTEN/NOTIFY did not announce
FETCH_POLL_SECONDS = 1.0


def _deferrer() -> procrastinate.App:
    """An app that only defers, on a connection it is handed (it never opens a pool)."""
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
    app.task(name=TASK_NAME)(_never_run_here)
    return app


def _never_run_here(**_: Any) -> None:
    raise AssertionError("the deferring app has no worker")


class ProcrastinateQueue(RunQueue):
    """Deferral in the caller's transaction; consumption by a procrastinate worker."""

    def __init__(self, dialect: Postgres) -> None:
        self._conninfo = dialect.conninfo()
        self._app = _deferrer()

    def install(self, conn: Connection) -> None:
        """Create procrastinate's schema if this database has none (under the caller's
        migration lock, so processes starting together do not race)."""
        exists = conn.execute(sa.text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        if exists is None:
            conn.exec_driver_sql(self._app.schema_manager.get_schema().replace("%", "%%"))

    def enqueue(self, connection: psycopg.Connection[Any], runs: Sequence[Run]) -> None:
        """Defer one message per run on ``connection``; committed with its transaction.

        One statement per queue for the runs already due, and one per later start (a
        retry's backoff): fire times of one wakeup differ by microseconds, and a start
        that has passed needs no ``schedule_at``.
        """
        task = self._app.tasks[TASK_NAME]
        now = utcnow()
        batches: dict[tuple[str, datetime | None], list[Run]] = {}
        for run in runs:
            start = due(run)
            later = start if start > now else None
            batches.setdefault((run.queue or DEFAULT_QUEUE, later), []).append(run)
        for (queue, later), batch in batches.items():
            task.configure(connection=connection, queue=queue, schedule_at=later).batch_defer(
                *(RunMessage.of(run).as_json() for run in batch)
            )

    async def consume(
        self,
        *,
        queues: Collection[str],
        concurrency: int,
        handle: Handler,
        stop: asyncio.Event,
        grace: float,
    ) -> None:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=self._conninfo))

        @app.task(name=TASK_NAME)
        async def run(**message: Any) -> None:
            await handle(RunMessage.from_json(message))

        async with app.open_async():
            worker = Worker(
                app,
                queues=list(queues),
                concurrency=concurrency,
                install_signal_handlers=False,
                delete_jobs="always",
                shutdown_graceful_timeout=grace,
                fetch_job_polling_interval=FETCH_POLL_SECONDS,
            )
            running = asyncio.create_task(worker.run())  # type: ignore[no-untyped-call]
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
            worker.stop()  # type: ignore[no-untyped-call]
            stopped.cancel()
            await running
