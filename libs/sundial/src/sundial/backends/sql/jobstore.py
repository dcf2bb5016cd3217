"""APScheduler's SQLAlchemy job store on Sundial's engine: a batched write, a streamed read."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.util import datetime_to_utc_timestamp

from sundial.backends.jobstore import SCHEDULE_PAGE, StoredSchedule, read_schedules

# Bind parameter for the row to update; it may not share a column's name, which
# SQLAlchemy reserves for the SET values.
_JOB_ID = "job_id"


class SqlJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """The job store of the SQL backend (see :class:`sundial.backends.jobstore.JobStore`)."""

    def iter_schedules(self) -> Iterator[StoredSchedule]:
        """Every stored job's schedule, through a server-side cursor a page at a time."""
        query = sa.select(self.jobs_t.c.id, self.jobs_t.c.job_state)
        with self.engine.connect() as connection:
            rows = connection.execution_options(yield_per=SCHEDULE_PAGE).execute(query)
            yield from read_schedules(rows)

    def update_jobs(self, jobs: Sequence[Job]) -> None:
        """One transaction: an executemany ``UPDATE … SET next_run_time, job_state`` by id.

        A job no longer in the table is skipped (``update_job`` would raise instead).
        """
        if not jobs:
            return
        table = self.jobs_t
        update = table.update().where(table.c.id == sa.bindparam(_JOB_ID))
        rows = [
            {
                _JOB_ID: job.id,
                "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                # What the store itself pickles in update_job.
                "job_state": pickle.dumps(job.__getstate__(), self.pickle_protocol),
            }
            for job in jobs
        ]
        with self.engine.begin() as connection:
            connection.execute(update, rows)
