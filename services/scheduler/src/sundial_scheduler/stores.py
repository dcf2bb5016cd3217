"""Batched job store writes: every due job's next run time in one round trip.

APScheduler 3 stores jobs one at a time (``update_job``): on SQL one transaction per job,
on Redis an ``HEXISTS`` plus a ``MULTI`` pipeline per job. A wakeup that fires N jobs then
pays N times that cost before its last job starts. :func:`update_jobs` writes what
``update_job`` writes, for all jobs at once. It uses only the stores' documented
constructor attributes (``engine``, ``jobs_t``, ``redis``, ``jobs_key``,
``run_times_key``, ``pickle_protocol``) and the job's own ``__getstate__``, which is what
the stores themselves pickle.

One difference: ``update_job`` raises ``JobLookupError`` for a job no longer in the
store. Here SQL skips such a job, and Redis would write it back (checking first is the
per-job round trip this saves). Neither can happen to a due job: the scheduler holds its
job stores lock from ``get_due_jobs`` to this write, and only the elected leader runs a
scheduler on the store (SPEC §1).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import sqlalchemy as sa
from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.util import datetime_to_utc_timestamp

__all__ = ["update_jobs"]

# Bind parameter for the row to update; it may not share a column's name, which
# SQLAlchemy reserves for the SET values.
_JOB_ID = "job_id"


def update_jobs(store: BaseJobStore, jobs: Sequence[Job]) -> None:
    """Write each job's next run time and state as ``store.update_job`` would, batched."""
    if not jobs:
        return
    if isinstance(store, SQLAlchemyJobStore):
        _update_sql(store, jobs)
    elif isinstance(store, RedisJobStore):
        _update_redis(store, jobs)
    else:  # MemoryJobStore and anything else: nothing to batch
        for job in jobs:
            store.update_job(job)


def _state(store: SQLAlchemyJobStore | RedisJobStore, job: Job) -> bytes:
    return pickle.dumps(job.__getstate__(), store.pickle_protocol)


def _update_sql(store: SQLAlchemyJobStore, jobs: Sequence[Job]) -> None:
    """One transaction: an executemany ``UPDATE … SET next_run_time, job_state`` by id."""
    table = store.jobs_t
    update = table.update().where(table.c.id == sa.bindparam(_JOB_ID))
    rows = [
        {
            _JOB_ID: job.id,
            "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
            "job_state": _state(store, job),
        }
        for job in jobs
    ]
    with store.engine.begin() as connection:
        connection.execute(update, rows)


def _update_redis(store: RedisJobStore, jobs: Sequence[Job]) -> None:
    """One ``MULTI`` pipeline: ``HSET`` each state, ``ZADD`` (or ``ZREM``) each run time."""
    with store.redis.pipeline() as pipe:
        for job in jobs:
            pipe.hset(store.jobs_key, job.id, _state(store, job))
            if job.next_run_time:
                pipe.zadd(
                    store.run_times_key, {job.id: datetime_to_utc_timestamp(job.next_run_time)}
                )
            else:
                pipe.zrem(store.run_times_key, job.id)
        pipe.execute()
