"""Plain APScheduler job stores on a benchmark backend, configured as its docs show.

They use the table or keys Sundial's leader uses, so that both sides can read one store.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.util import datetime_to_utc_timestamp

from sundial.backends.redis.keys import APS_JOBS, APS_RUN_TIMES
from sundial.backends.sql.schema import JOBSTORE_TABLE

#: rows or hash fields written per statement or pipeline while filling a store
FILL_CHUNK = 5_000


def kind_of(url: str) -> str:
    return "redis" if url.startswith(("redis://", "rediss://")) else "postgres"


def plain_store(url: str) -> BaseJobStore:
    """APScheduler's own store for ``url``: SQLAlchemyJobStore or RedisJobStore."""
    if kind_of(url) == "postgres":
        return SQLAlchemyJobStore(url=url, tablename=JOBSTORE_TABLE)
    parts = urlsplit(url)
    return RedisJobStore(
        jobs_key=APS_JOBS,
        run_times_key=APS_RUN_TIMES,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(parts.path.strip("/") or 0),
    )


def job_states(
    ids: Iterable[str],
    *,
    func: Any,
    trigger: BaseTrigger,
    next_run_time: datetime,
    options: dict[str, Any],
) -> Iterator[tuple[str, bytes]]:
    """Pickled job states as APScheduler writes them, without one add_job per job."""
    template = Job(
        BackgroundScheduler(timezone=next_run_time.tzinfo),
        id="template",
        func=func,
        trigger=trigger,
        executor="default",
        args=(),
        kwargs={},
        name="template",
        next_run_time=next_run_time,
        **options,
    ).__getstate__()
    for job_id in ids:
        state = template | {"id": job_id, "name": job_id}
        yield job_id, pickle.dumps(state, pickle.HIGHEST_PROTOCOL)


def fill_store(url: str, states: Iterable[tuple[str, bytes]], next_run_time: datetime) -> int:
    """Write pickled job states straight into the store's table or hash; returns the count."""
    store = plain_store(url)
    scheduler = BackgroundScheduler()
    store.start(scheduler, "default")  # creates the table
    timestamp = datetime_to_utc_timestamp(next_run_time)
    written = 0
    try:
        for chunk in _chunks(states, FILL_CHUNK):
            if isinstance(store, SQLAlchemyJobStore):
                rows = [
                    {"id": job_id, "next_run_time": timestamp, "job_state": state}
                    for job_id, state in chunk
                ]
                with store.engine.begin() as conn:
                    conn.execute(store.jobs_t.insert(), rows)
            else:
                with store.redis.pipeline() as pipe:
                    pipe.hset(APS_JOBS, mapping=dict(chunk))
                    pipe.zadd(APS_RUN_TIMES, {job_id: timestamp for job_id, _ in chunk})
                    pipe.execute()
            written += len(chunk)
    finally:
        store.shutdown()
    return written


def _chunks(items: Iterable[tuple[str, bytes]], size: int) -> Iterator[Sequence[tuple[str, bytes]]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
