"""Behaviour only the Redis backend has: key layout, capping, stream wake-ups, token lock.

What every backend must do is in ``test_backend_contract.py``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from subprocess import PIPE, Popen
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from apscheduler.schedulers.background import BackgroundScheduler
from timing import within

from sundial.backends import BackendError, RunCursor
from sundial.backends.redis import RedisBackend
from sundial.backends.redis import backend as redis_module
from sundial.models import (
    Command,
    CommandKind,
    CommandState,
    JobState,
    JobView,
    Outcome,
    Run,
)
from sundial.triggers import IntervalSpec

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def aps_target() -> None:
    """A job function APScheduler can pickle by reference."""


@pytest.fixture
def backend(redis_url: str) -> Iterator[RedisBackend]:
    instance = RedisBackend(redis_url)
    instance.setup()
    yield instance
    instance.close()


@pytest.fixture
def other(redis_url: str) -> Iterator[RedisBackend]:
    """A second process's view of the same Redis database."""
    instance = RedisBackend(redis_url)
    yield instance
    instance.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis[str]]:
    client: redis.Redis[str] = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def finished(job_id: str, minute: int, outcome: Outcome = Outcome.SUCCESS, **extra: object) -> Run:
    scheduled = T0 + timedelta(minutes=minute)
    return Run.model_validate(
        {
            "job_id": job_id,
            "scheduled_time": scheduled,
            "started_at": scheduled,
            "finished_at": scheduled + timedelta(seconds=2),
            "duration_seconds": 2.0,
            "outcome": outcome,
            "instance_id": "i-1",
            **extra,
        }
    )


def job(job_id: str, *, state: JobState = JobState.SCHEDULED) -> JobView:
    return JobView(
        id=job_id,
        name=job_id,
        func="tests:aps_target",
        trigger=IntervalSpec(seconds=60),
        trigger_text="every minute",
        state=state,
    )


# key layout -------------------------------------------------------------------------
def test_every_key_lives_under_the_sundial_prefix(
    backend: RedisBackend, raw: redis.Redis[str]
) -> None:
    backend.save_jobs([job("alpha"), job("beta", state=JobState.PAUSED)])
    backend.save_runs([finished("alpha", 0), finished("alpha", 1, Outcome.FAILURE)])
    backend.claim_runs([("alpha", T0)], "i-1")
    backend.enqueue_command(Command(kind=CommandKind.PAUSE, job_id="alpha"))
    backend.acquire_leadership("i-1", 30)

    keys = set(raw.keys("*"))

    assert keys and all(key.startswith("sundial:") for key in keys)
    expected_types = {
        "sundial:jobs": "hash",
        "sundial:jobs:ids": "zset",
        "sundial:jobs:state:paused": "zset",
        "sundial:runs:all": "zset",
        "sundial:runs:job:alpha": "zset",
        "sundial:runs:outcome:failure": "zset",
        "sundial:summaries": "hash",
        "sundial:commands:pending": "zset",
        "sundial:commands:stream": "stream",
        "sundial:leader": "string",
    }
    assert {key: raw.type(key) for key in expected_types} == expected_types
    claim_ttl = raw.ttl(f"sundial:claim:alpha:{int(T0.timestamp()) * 1_000_000}")
    assert 6 * 86_400 < claim_ttl <= 7 * 86_400


def test_jobstore_writes_to_the_sundial_keys_of_the_url_database(
    backend: RedisBackend, raw: redis.Redis[str]
) -> None:
    scheduler = BackgroundScheduler(jobstores={"default": backend.create_jobstore()})
    scheduler.start(paused=True)
    try:
        scheduler.add_job(aps_target, "interval", minutes=5, id="aps-job")
    finally:
        scheduler.shutdown(wait=False)

    assert raw.hkeys("sundial:aps:jobs") == ["aps-job"]
    assert raw.zcard("sundial:aps:run_times") == 1


# capped history ---------------------------------------------------------------------
def test_history_keeps_only_the_newest_runs_per_job(
    backend: RedisBackend, raw: redis.Redis[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "MAX_RUNS_PER_JOB", 5)
    runs = [finished("busy", minute) for minute in range(8)]
    backend.save_runs(runs[:4])
    backend.save_runs([*runs[4:], finished("quiet", 0)])

    kept = backend.list_runs(job_id="busy")

    assert [run.run_id for run in kept] == [run.run_id for run in reversed(runs[3:])]
    assert all(backend.get_run(run.run_id) is None for run in runs[:3])
    assert raw.zcard("sundial:runs:all") == 6
    assert raw.zcard("sundial:runs:job-started:busy") == 5
    # Trimming deletes history, not the digest of it.
    assert backend.run_summaries(["busy"])["busy"].last_run_at == runs[-1].started_at


def test_prune_drops_old_claims_and_finished_commands(
    backend: RedisBackend, raw: redis.Redis[str]
) -> None:
    backend.claim_runs([("alpha", T0)], "i-1")
    command = Command(kind=CommandKind.PAUSE, job_id="alpha")
    backend.enqueue_command(command)
    backend.finish_command(command.id, CommandState.APPLIED, None)
    waiting = Command(kind=CommandKind.RESUME, job_id="alpha")
    backend.enqueue_command(waiting)

    backend.prune(datetime.now(UTC) + timedelta(seconds=1))

    assert backend.claim_runs([("alpha", T0)], "i-2")
    assert backend.get_command(command.id) is None
    assert [c.id for c in backend.pending_commands()] == [waiting.id]
    assert raw.zcard("sundial:commands:finished") == 0


# pagination -------------------------------------------------------------------------
def test_cursor_pages_through_thousands_of_runs_with_tied_times(backend: RedisBackend) -> None:
    outcomes = (Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT)
    # Ten runs share each fire time, so pages must break ties by run id.
    runs = [
        finished(f"job-{n % 4}", n // 10, outcomes[n % 3], run_id=f"run-{n:05d}")
        for n in range(3_000)
    ]
    for start in range(0, len(runs), 500):
        backend.save_runs(runs[start : start + 500])

    def walk(
        job_id: str | None = None, outcome: Outcome | None = None, since: datetime | None = None
    ) -> list[str]:
        seen: list[str] = []
        cursor: RunCursor | None = None
        while page := backend.list_runs(
            job_id=job_id, outcome=outcome, since=since, before=cursor, limit=97
        ):
            seen.extend(run.run_id for run in page)
            cursor = RunCursor(page[-1].scheduled_time, page[-1].run_id)
        return seen

    def newest_first(selected: list[Run]) -> list[str]:
        ordered = sorted(selected, key=lambda r: (r.scheduled_time, r.run_id), reverse=True)
        return [run.run_id for run in ordered]

    since = T0 + timedelta(minutes=250)
    assert walk() == newest_first(runs)
    assert walk(job_id="job-1", outcome=Outcome.FAILURE) == newest_first(
        [r for r in runs if r.job_id == "job-1" and r.outcome is Outcome.FAILURE]
    )
    assert walk(outcome=Outcome.TIMEOUT, since=since) == newest_first(
        [r for r in runs if r.outcome is Outcome.TIMEOUT and r.scheduled_time >= since]
    )


def test_list_jobs_pages_by_id_with_state_and_tag_filters(backend: RedisBackend) -> None:
    jobs = [
        job(f"job-{n:03d}", state=JobState.PAUSED if n % 3 == 0 else JobState.SCHEDULED)
        for n in range(250)
    ]
    tagged = [
        j.model_copy(update={"options": j.options.model_copy(update={"tags": ("etl",)})})
        for j in jobs[::2]
    ]
    backend.save_jobs([*jobs, *tagged])

    seen: list[str] = []
    after: str | None = None
    while page := backend.list_jobs(state=JobState.PAUSED, tag="etl", after=after, limit=7):
        seen.extend(j.id for j in page)
        after = page[-1].id

    assert seen == [j.id for j in tagged if j.state is JobState.PAUSED]
    assert backend.count_jobs() == {JobState.PAUSED: 84, JobState.SCHEDULED: 166}


# command stream ---------------------------------------------------------------------
def test_wait_for_commands_wakes_when_another_process_enqueues(
    backend: RedisBackend, other: RedisBackend
) -> None:
    backend.wait_for_commands(0.01)  # the first call notes where the stream ends
    woke = threading.Event()

    def wait() -> None:
        backend.wait_for_commands(20)
        woke.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.3)
    assert not woke.is_set()
    other.enqueue_command(Command(kind=CommandKind.RUN, job_id="alpha"))

    # woken by the command, long before the wait's 20 s run out
    assert woke.wait(within(0.3))


def test_wait_for_commands_waits_out_its_timeout_when_nothing_arrives(
    backend: RedisBackend,
) -> None:
    backend.wait_for_commands(0.01)
    started = time.monotonic()

    backend.wait_for_commands(0.5)

    assert 0.45 <= time.monotonic() - started < within(0.5)


def test_first_wait_returns_at_once_when_commands_are_already_pending(
    backend: RedisBackend, other: RedisBackend
) -> None:
    other.enqueue_command(Command(kind=CommandKind.RUN, job_id="alpha"))
    started = time.monotonic()

    backend.wait_for_commands(60)

    assert time.monotonic() - started < within(0.1)


# leader lock ------------------------------------------------------------------------
def test_lock_is_renewed_and_released_only_by_its_holder(
    backend: RedisBackend, other: RedisBackend, raw: redis.Redis[str]
) -> None:
    assert backend.acquire_leadership("a", 2)
    assert not other.acquire_leadership("b", 2)
    assert not other.renew_leadership("b", 60)
    other.release_leadership("b")
    assert raw.get("sundial:leader") == "a"
    assert raw.pttl("sundial:leader") <= 2_000

    assert backend.renew_leadership("a", 60)
    assert raw.pttl("sundial:leader") > 50_000
    assert backend.acquire_leadership("a", 60)  # already ours: still ours

    backend.release_leadership("a")
    assert other.acquire_leadership("b", 60)
    assert raw.get("sundial:leader") == "b"


def test_an_expired_lease_passes_to_a_standby(backend: RedisBackend, other: RedisBackend) -> None:
    assert backend.acquire_leadership("a", 0.2)
    time.sleep(0.4)

    assert other.acquire_leadership("b", 30)
    assert not backend.renew_leadership("a", 30)


def test_close_releases_the_lock(backend: RedisBackend, other: RedisBackend) -> None:
    assert backend.acquire_leadership("a", 60)

    backend.close()

    assert other.acquire_leadership("b", 60)


def hold_lock_in_a_process(redis_url: str, instance_id: str, lease_seconds: float) -> Popen[str]:
    """A process that takes the leader lock, says so, and then does nothing."""
    code = (
        "import sys, time\n"
        "from sundial.backends.redis import RedisBackend\n"
        f"backend = RedisBackend({redis_url!r})\n"
        f"assert backend.acquire_leadership({instance_id!r}, {lease_seconds})\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = Popen([sys.executable, "-c", code], stdout=PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def test_a_holder_whose_process_died_is_replaced_before_its_lease(
    redis_url: str, other: RedisBackend
) -> None:
    holder = hold_lock_in_a_process(redis_url, "a", 60)
    assert not other.acquire_leadership("b", 60)  # alive: its connection is open

    holder.kill()
    holder.wait()

    # The server drops the dead process's connection as soon as the kernel closes it;
    # the lease has a minute left throughout.
    deadline = time.monotonic() + 10
    while not other.acquire_leadership("b", 60):
        assert time.monotonic() < deadline, "the dead holder's lock was not taken over"
        time.sleep(0.05)
    assert other.renew_leadership("b", 60)


def test_a_silent_holder_keeps_the_lock_until_its_lease_runs_out(
    backend: RedisBackend, other: RedisBackend
) -> None:
    assert backend.acquire_leadership("a", 1.5)  # and never renewed: stuck, not dead

    assert not other.acquire_leadership("b", 3)
    time.sleep(1.6)

    assert other.acquire_leadership("b", 3)
    assert not backend.renew_leadership("a", 3)


def test_a_server_refusing_client_list_leaves_the_lease_to_decide(
    redis_url: str, raw: redis.Redis[str]
) -> None:
    user, password = f"sundial-test-{os.getpid()}", "no-client-list"
    raw.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-client|list"],
    )
    parts = urlsplit(redis_url)
    limited_url = urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))
    limited = RedisBackend(limited_url)
    try:
        holder = hold_lock_in_a_process(redis_url, "a", 1.5)
        holder.kill()
        holder.wait()
        time.sleep(0.2)

        assert not limited.acquire_leadership("b", 3)  # refused: falls back to the lease
        time.sleep(1.5)
        assert limited.acquire_leadership("b", 3)
    finally:
        limited.close()
        raw.acl_deluser(user)


# errors -----------------------------------------------------------------------------
def test_unreachable_server_error_names_it_without_the_password() -> None:
    unreachable = RedisBackend("redis://:hunter2@127.0.0.1:1/0")

    with pytest.raises(BackendError) as caught:
        unreachable.ping()

    # Nothing a log line or a failing test's locals could show carries the password.
    text = f"{caught.value} {caught.value!r} {unreachable!r} {vars(unreachable)!r}"
    assert "127.0.0.1:1" in str(caught.value)
    assert "hunter2" not in text
    assert caught.value.__cause__ is None
    unreachable.close()


def test_a_malformed_url_is_rejected_with_the_reason() -> None:
    with pytest.raises(BackendError, match="port and database must be numbers"):
        RedisBackend("redis://127.0.0.1:6379/zero")
    with pytest.raises(BackendError, match="query options are not supported"):
        RedisBackend("rediss://:hunter2@127.0.0.1:6379/0?ssl_cert_reqs=none")


def test_dropped_connections_are_reopened_without_an_error(
    backend: RedisBackend, raw: redis.Redis[str]
) -> None:
    backend.save_runs([finished("alpha", 0)])
    backend.wait_for_commands(0.01)

    # What clients see when Redis restarts: their open connections are cut. Only this
    # process's connections, so that other test runs on the same server carry on.
    ours = [c for c in raw.client_list() if c["name"] == f"sundial-{os.getpid()}"]
    assert ours
    for connection in ours:
        raw.client_kill_filter(_id=connection["id"])

    assert len(backend.list_runs()) == 1
    backend.wait_for_commands(0.05)
    backend.save_runs([finished("alpha", 1)])
    assert backend.run_summaries()["alpha"].last_run_at == T0 + timedelta(minutes=1)
