"""APScheduler's Redis job store under Sundial's keys, with a batched write."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from apscheduler.job import Job
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.util import datetime_to_utc_timestamp


class BatchingRedisJobStore(RedisJobStore):  # type: ignore[misc]
    """The job store of the Redis backend (see :class:`sundial.backends.jobstore.JobStore`)."""

    def update_jobs(self, jobs: Sequence[Job]) -> None:
        """One ``MULTI`` pipeline: ``HSET`` each state, ``ZADD`` (or ``ZREM``) each run time.

        ``update_job`` first checks with ``HEXISTS`` that the job is stored, a round trip
        per job; here every job passed is known to be stored (see the protocol).
        """
        if not jobs:
            return
        with self.redis.pipeline() as pipe:
            for job in jobs:
                # What the store itself pickles in update_job.
                state = pickle.dumps(job.__getstate__(), self.pickle_protocol)
                pipe.hset(self.jobs_key, job.id, state)
                if job.next_run_time:
                    pipe.zadd(
                        self.run_times_key, {job.id: datetime_to_utc_timestamp(job.next_run_time)}
                    )
                else:
                    pipe.zrem(self.run_times_key, job.id)
            pipe.execute()
