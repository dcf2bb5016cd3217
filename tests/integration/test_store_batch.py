"""Each backend's job store: the batched write stores what ``update_job`` stores, and the
streamed read gives what ``get_all_jobs`` gives."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sample_jobs
import sqlalchemy as sa
from apscheduler.job import Job
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from structlog.testing import capture_logs

from sundial.backends import Backend
from sundial.backends.jobstore import JobStore
from sundial.backends.redis import jobstore as redis_jobstore
from sundial.backends.sql import jobstore as sql_jobstore

pytestmark = pytest.mark.integration

JOBS = 50
START = datetime(2030, 1, 1, tzinfo=UTC)

Row = tuple[float | None, bytes]


@pytest.fixture
def store(backend: Backend) -> Iterator[JobStore]:
    """The backend's APScheduler store, started by a paused scheduler, holding ``JOBS`` jobs."""
    jobstore = backend.create_jobstore()
    scheduler = BackgroundScheduler(jobstores={"default": jobstore}, timezone=UTC)
    scheduler.start(paused=True)
    for number in range(JOBS):
        scheduler.add_job(
            sample_jobs.succeed,
            IntervalTrigger(seconds=60, start_date=START),
            id=f"job-{number:03}",
            next_run_time=START,
        )
    yield jobstore
    scheduler.shutdown(wait=False)


def stored_rows(store: JobStore) -> dict[str, Row]:
    """Each job's stored run-time score and pickled state, as the store keeps them."""
    if isinstance(store, SQLAlchemyJobStore):
        table = store.jobs_t
        with store.engine.begin() as conn:
            result = conn.execute(sa.select(table.c.id, table.c.next_run_time, table.c.job_state))
            return {row.id: (row.next_run_time, row.job_state) for row in result}
    assert isinstance(store, RedisJobStore)
    states: dict[bytes, bytes] = store.redis.hgetall(store.jobs_key)
    scores = dict(store.redis.zrange(store.run_times_key, 0, -1, withscores=True))
    return {job_id.decode(): (scores.get(job_id), state) for job_id, state in states.items()}


def fired(jobs: list[Job]) -> dict[str, datetime | None]:
    """Move each job on as a wakeup does; pause every tenth one (no next run time)."""
    expected: dict[str, datetime | None] = {}
    for job in jobs:
        number = int(job.id.removeprefix("job-"))
        next_run = None if number % 10 == 0 else START + timedelta(minutes=1 + number)
        # Job._modify is how APScheduler itself changes a job before storing it.
        job._modify(next_run_time=next_run, name=f"fired {number}")
        expected[job.id] = next_run
    return expected


def test_batched_write_stores_next_run_times_and_state(store: JobStore) -> None:
    jobs = store.get_all_jobs()
    expected = fired(jobs)

    store.update_jobs(jobs)

    read: dict[str, Any] = {job.id: job for job in store.get_all_jobs()}
    assert {job_id: job.next_run_time for job_id, job in read.items()} == expected
    assert read["job-007"].name == "fired 7"
    one = store.lookup_job("job-011")
    assert one is not None
    assert one.next_run_time == START + timedelta(minutes=12)
    assert one.name == "fired 11"
    assert store.get_next_run_time() == START + timedelta(minutes=2)  # job-000 is paused
    assert store.get_due_jobs(START + timedelta(minutes=3)) != []


def test_batched_write_matches_update_job_byte_for_byte(store: JobStore) -> None:
    jobs = store.get_all_jobs()
    fired(jobs)

    store.update_jobs(jobs)
    batched = stored_rows(store)
    for job in jobs:
        store.update_job(job)

    assert stored_rows(store) == batched
    assert len(batched) == JOBS


def test_an_empty_batch_changes_nothing(store: JobStore) -> None:
    before = stored_rows(store)

    store.update_jobs([])

    assert stored_rows(store) == before


def schedules(store: JobStore) -> dict[str, tuple[datetime | None, str]]:
    read = [(s.job_id, s.next_run_time, repr(s.trigger)) for s in store.iter_schedules()]
    assert len({job_id for job_id, *_ in read}) == len(read), "a job came twice"
    return {job_id: (next_run, trigger) for job_id, next_run, trigger in read}


def test_streamed_read_gives_every_job_its_schedule_a_page_at_a_time(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (sql_jobstore, redis_jobstore):
        monkeypatch.setattr(module, "SCHEDULE_PAGE", 7)  # 50 jobs: eight pages
    jobs = store.get_all_jobs()
    fired(jobs)
    store.update_jobs(jobs)

    read = schedules(store)

    assert read == {job.id: (job.next_run_time, repr(job.trigger)) for job in jobs}
    assert read["job-010"][0] is None and read["job-011"][0] == START + timedelta(minutes=12)


def test_streamed_read_leaves_out_a_job_it_cannot_unpickle(store: JobStore) -> None:
    if isinstance(store, SQLAlchemyJobStore):
        with store.engine.begin() as conn:
            table = store.jobs_t
            conn.execute(table.update().where(table.c.id == "job-003").values(job_state=b"?"))
    else:
        assert isinstance(store, RedisJobStore)
        store.redis.hset(store.jobs_key, "job-003", b"?")

    with capture_logs() as logs:
        read = schedules(store)

    assert len(read) == JOBS - 1 and "job-003" not in read
    assert [(entry["event"], entry["job_id"]) for entry in logs] == [
        ("jobstore.unreadable_job", "job-003")
    ]
