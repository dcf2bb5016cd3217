"""APScheduler's Redis job store under Sundial's keys, with a batched write and a streamed read."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence

from apscheduler.job import Job
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.util import datetime_to_utc_timestamp

from sundial.backends.jobstore import SCHEDULE_PAGE, StoredSchedule, read_schedules


class BatchingRedisJobStore(RedisJobStore):  # type: ignore[misc]
    """The job store of the Redis backend (see :class:`sundial.backends.jobstore.JobStore`)."""

    def iter_schedules(self) -> Iterator[StoredSchedule]:
        """Every stored job's schedule, by ``HSCAN`` a page at a time.

        A job may come twice if the hash is resized during the scan (``HSCAN``'s rule).
        """
        pages = self.redis.hscan_iter(self.jobs_key, count=SCHEDULE_PAGE)
        yield from read_schedules((job_id.decode(), state) for job_id, state in pages)

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
