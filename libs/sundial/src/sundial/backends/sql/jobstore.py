"""APScheduler's SQLAlchemy job store on Sundial's engine, with a batched write."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import sqlalchemy as sa
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.util import datetime_to_utc_timestamp

# Bind parameter for the row to update; it may not share a column's name, which
# SQLAlchemy reserves for the SET values.
_JOB_ID = "job_id"


class SqlJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """The job store of the SQL backend (see :class:`sundial.backends.jobstore.JobStore`)."""

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
