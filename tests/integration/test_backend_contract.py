"""The behaviour every backend promises, run against SQLite, Postgres and Redis alike."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from apscheduler.schedulers.background import BackgroundScheduler
from timing import within

from sundial.backends import Backend, BackendError, RunCursor, history, open_backend
from sundial.backends.queue import RunMessage
from sundial.backends.sql import schema
from sundial.models import (
    Command,
    CommandKind,
    CommandState,
    Instance,
    InstanceRole,
    JobOptions,
    JobState,
    JobView,
    Outcome,
    QueueDepth,
    Run,
)
from sundial.triggers import CronSpec, IntervalSpec

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LEASE = 30.0
UNREACHABLE = {
    "postgres": "postgresql+psycopg://sundial:s3cret-pw@127.0.0.1:1/sundial",
    "redis": "redis://:s3cret-pw@127.0.0.1:1/0",
    "sqlite": "sqlite:////proc/no-such-dir/sundial.db",
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ended(minutes: float) -> datetime:
    """When a run made by :func:`run` at ``minutes`` finished."""
    return at(minutes) + timedelta(seconds=10)


def job(
    job_id: str, *, state: JobState = JobState.SCHEDULED, tags: tuple[str, ...] = ()
) -> JobView:
    return JobView(
        id=job_id,
        name=f"{job_id} job",
        func="reports:build",
        trigger=IntervalSpec(seconds=60),
        trigger_text="every minute",
        state=state,
        next_run_time=at(1),
        kwargs={"region": "eu", "token": "t0k"},
        options=JobOptions(tags=tags, secret_kwargs=("token",), retries=2),
    )


def run(
    job_id: str,
    minute: float,
    outcome: Outcome = Outcome.SUCCESS,
    *,
    run_id: str | None = None,
    instance_id: str = "i-1",
) -> Run:
    """A run fired at ``minute``, started on time and (unless running) done 10 s later."""
    scheduled = at(minute)
    done = outcome is not Outcome.RUNNING
    fields = {
        "job_id": job_id,
        "scheduled_time": scheduled,
        "started_at": scheduled,
        "finished_at": scheduled + timedelta(seconds=10) if done else None,
        "duration_seconds": 10.0 if done else None,
        "outcome": outcome,
        "instance_id": instance_id,
    }
    if outcome in (Outcome.FAILURE, Outcome.TIMEOUT):
        fields |= {"error_type": "ValueError", "error_message": "bad input"}
    if run_id is not None:
        fields["run_id"] = run_id
    return Run.model_validate(fields)


def instance(instance_id: str, role: InstanceRole = InstanceRole.STANDBY) -> Instance:
    return Instance(
        id=instance_id, host="host-a", pid=4242, role=role, version="1.2.3", started_at=T0
    )


@pytest.fixture
def other(backend_url: str) -> Iterator[Backend]:
    """A second backend object on the same store, as another process would open it."""
    second = open_backend(backend_url)
    yield second
    second.close()


# lifecycle ----------------------------------------------------------------------------
def test_setup_twice_keeps_data(backend: Backend, other: Backend) -> None:
    original = job("a")
    backend.save_jobs([original])
    backend.setup()
    other.setup()
    assert other.get_job("a") == original


def test_setup_from_several_processes_at_once(backend_url: str) -> None:
    starting = [open_backend(backend_url) for _ in range(4)]
    errors: list[BaseException] = []

    def set_up(target: Backend) -> None:
        try:
            target.setup()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=set_up, args=(target,)) for target in starting]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        starting[0].save_jobs([job("a")])
        assert [j.id for j in starting[-1].list_jobs()] == ["a"]
    finally:
        for target in starting:
            target.close()


@pytest.mark.parametrize("backend_url", ["sqlite", "postgres"], indirect=True)
def test_an_older_schema_is_migrated_with_its_data(backend_url: str) -> None:
    """A database written by the previous release: its summaries keep their meaning."""
    engine = sa.create_engine(backend_url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        alembic_command.upgrade(config, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO sundial_run_summaries (job_id, last_success_at, "
                "last_success_finished_at, consecutive_failures) VALUES ('etl', :started, "
                ":finished, 0)"
            ),
            {"started": at(0), "finished": ended(0)},
        )
    engine.dispose()

    upgraded = open_backend(backend_url)
    try:
        upgraded.setup()
        assert upgraded.run_summaries()["etl"].last_success_at == ended(0)
    finally:
        upgraded.close()


def test_ping_answers(backend: Backend) -> None:
    backend.ping()


@pytest.mark.parametrize("backend_url", ["sqlite", "postgres"], indirect=True)
def test_url_forms_a_user_would_write(backend: Backend, backend_url: str, tmp_path: Path) -> None:
    if backend.kind == "postgres":
        url = backend_url.replace("postgresql+psycopg://", "postgresql://")
    else:
        url = f"sqlite:///{tmp_path / 'not' / 'yet' / 'there' / 'sundial.db'}"
    plain = open_backend(url)
    try:
        plain.setup()
        plain.ping()
    finally:
        plain.close()


def test_unreachable_backend_raises_backend_error_without_password(backend: Backend) -> None:
    with pytest.raises(BackendError) as caught:
        broken = open_backend(UNREACHABLE[backend.kind])
        try:
            broken.ping()
        finally:
            broken.close()
    assert "s3cret-pw" not in str(caught.value)
    assert backend.kind in str(caught.value)


# catalog ------------------------------------------------------------------------------
def test_catalog_round_trip_replace_and_delete(backend: Backend) -> None:
    original = job("nightly", tags=("reports",))
    backend.save_jobs([original])
    assert backend.get_job("nightly") == original
    assert backend.get_job("missing") is None

    changed = original.model_copy(
        update={"trigger": CronSpec(expression="0 3 * * *"), "state": JobState.PAUSED}
    )
    backend.save_jobs([changed])
    stored = backend.get_job("nightly")
    assert stored == changed
    assert stored is not None and stored.public_kwargs()["token"] == "***"

    backend.delete_jobs(["nightly", "never-existed"])
    assert backend.get_job("nightly") is None
    assert backend.list_jobs() == []


def test_list_jobs_filters_pages_and_counts(backend: Backend) -> None:
    backend.save_jobs(
        [
            job("e", tags=("etl",)),
            job("a", tags=("etl", "daily")),
            job("c", state=JobState.PAUSED, tags=("daily",)),
            job("b"),
            job("d", state=JobState.PAUSED, tags=("etl",)),
        ]
    )
    assert [j.id for j in backend.list_jobs()] == ["a", "b", "c", "d", "e"]

    first = backend.list_jobs(limit=2)
    second = backend.list_jobs(after=first[-1].id, limit=2)
    third = backend.list_jobs(after=second[-1].id, limit=2)
    assert [[j.id for j in page] for page in (first, second, third)] == [
        ["a", "b"],
        ["c", "d"],
        ["e"],
    ]

    assert [j.id for j in backend.list_jobs(state=JobState.PAUSED)] == ["c", "d"]
    assert [j.id for j in backend.list_jobs(tag="etl")] == ["a", "d", "e"]
    assert [j.id for j in backend.list_jobs(tag="etl", state=JobState.SCHEDULED)] == ["a", "e"]
    assert [j.id for j in backend.list_jobs(tag="etl", after="a", limit=1)] == ["d"]
    assert backend.list_jobs(tag="nope") == []

    # Retagging a job moves it between tag listings.
    backend.save_jobs([job("a", tags=("weekly",))])
    assert [j.id for j in backend.list_jobs(tag="etl")] == ["d", "e"]
    assert [j.id for j in backend.list_jobs(tag="weekly")] == ["a"]

    assert backend.count_jobs() == {JobState.SCHEDULED: 3, JobState.PAUSED: 2}


def test_count_jobs_lists_every_state_when_empty(backend: Backend) -> None:
    assert backend.count_jobs() == dict.fromkeys(JobState, 0)


# claims -------------------------------------------------------------------------------
def test_a_fire_time_is_claimed_once_across_instances(backend: Backend, other: Backend) -> None:
    assert backend.claim_runs([("report", at(0))], "i-1")
    assert not backend.claim_runs([("report", at(0))], "i-1")
    assert not other.claim_runs([("report", at(0))], "i-2")
    # The same instant written in another time zone is the same fire time.
    paris = timezone(timedelta(hours=2))
    assert not other.claim_runs([("report", at(0).astimezone(paris))], "i-2")

    assert other.claim_runs([("report", at(1))], "i-2")
    assert backend.claim_runs([("other-job", at(0))], "i-1")


def test_concurrent_claims_have_one_winner(backend: Backend, other: Backend) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def claim(target: Backend, who: str) -> None:
        won = target.claim_runs([("race", at(5))], who) != set()
        with lock:
            results.append(won)

    threads = [
        threading.Thread(target=claim, args=(target, f"i-{n}"))
        for n, target in enumerate([backend, other] * 4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_a_claim_batch_wins_exactly_the_fire_times_nobody_held(
    backend: Backend, other: Backend
) -> None:
    assert other.claim_runs([("report", at(0))], "i-2")
    assert other.claim_runs([("report", at(2))], "i-2")
    paris = timezone(timedelta(hours=2))
    batch = [
        ("report", at(0)),
        ("report", at(1)),
        ("report", at(2).astimezone(paris)),
        ("report", at(3).astimezone(paris)),
        ("etl", at(0)),
    ]

    won = backend.claim_runs(batch, "i-1")

    assert won == {("report", at(1)), ("report", at(3)), ("etl", at(0))}
    # The pairs come back as they were passed in, time zone included.
    assert {when.utcoffset() for job_id, when in won if job_id == "report"} == {
        timedelta(0),
        timedelta(hours=2),
    }
    assert backend.claim_runs(batch, "i-1") == set()
    assert other.claim_runs(batch, "i-2") == set()
    assert backend.claim_runs([], "i-1") == set()


def test_a_fire_time_twice_in_one_batch_is_won_once(backend: Backend) -> None:
    paris = timezone(timedelta(hours=2))
    won = backend.claim_runs([("report", at(0)), ("report", at(0).astimezone(paris))], "i-1")
    assert len(won) == 1
    assert not backend.claim_runs([("report", at(0))], "i-1")


def test_a_large_claim_batch_is_all_or_nothing_per_fire_time(backend: Backend) -> None:
    taken = [(f"job-{n}", at(0)) for n in range(0, 1_500, 10)]
    assert backend.claim_runs(taken, "i-2") == set(taken)
    batch = [(f"job-{n}", at(0)) for n in range(1_500)]

    won = backend.claim_runs(batch, "i-1")

    assert won == set(batch) - set(taken)
    assert len(won) == 1_350


Claims = list[tuple[str, datetime]]


def claim_together(*calls: tuple[Backend, Claims, str]) -> list[set[tuple[str, datetime]]]:
    """Run ``claim_runs`` calls on threads released at the same moment; their results."""
    results: list[set[tuple[str, datetime]] | BackendError] = [set() for _ in calls]
    start = threading.Barrier(len(calls))

    def claim(index: int, target: Backend, claims: Claims, who: str) -> None:
        start.wait()
        try:
            results[index] = target.claim_runs(claims, who)
        except BackendError as error:
            results[index] = error

    threads = [threading.Thread(target=claim, args=(i, *call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [result for result in results if isinstance(result, BackendError)]
    assert failed == []
    return [result for result in results if not isinstance(result, BackendError)]


def test_concurrent_claim_batches_never_both_win_a_fire_time(
    backend: Backend, other: Backend
) -> None:
    for minute in range(10):
        fire_times = [(f"race-{n}", at(minute)) for n in range(900)]
        # The second claimant asks in the opposite order: a backend that takes row locks
        # in the order given deadlocks here, failing one of the two batches.
        first, second = claim_together(
            (backend, fire_times[:600], "i-1"), (other, fire_times[300:][::-1], "i-2")
        )
        assert first.isdisjoint(second)
        assert first | second == set(fire_times)


# runs ---------------------------------------------------------------------------------
def test_save_runs_upserts_and_survives_a_new_instance(backend: Backend, backend_url: str) -> None:
    started = run("etl", 0, Outcome.RUNNING)
    backend.save_runs([started])
    assert backend.get_run(started.run_id) == started

    failed = started.model_copy(
        update={
            "outcome": Outcome.FAILURE,
            "finished_at": at(0) + timedelta(seconds=3),
            "duration_seconds": 3.0,
            "error_type": "KeyError",
            "error_message": "'customer'",
            "traceback": "Traceback (most recent call last):\n  ...",
            "attempt": 2,
            "manual": True,
        }
    )
    backend.save_runs([failed])
    assert backend.list_runs(job_id="etl") == [failed]

    batch = [run(f"bulk-{n % 7}", n / 10) for n in range(400)]
    backend.save_runs(batch)

    reopened = open_backend(backend_url)
    try:
        assert reopened.get_run(started.run_id) == failed
        stored = reopened.list_runs(since=at(0), limit=1000)
        assert len(stored) == 401
        assert {r.run_id for r in stored} == {r.run_id for r in [*batch, failed]}
    finally:
        reopened.close()
    assert backend.get_run("missing") is None


def test_datetimes_come_back_aware_utc(backend: Backend) -> None:
    tokyo = timezone(timedelta(hours=9))
    record = run("tz", 0).model_copy(update={"scheduled_time": at(0).astimezone(tokyo)})
    backend.save_runs([record])
    stored = backend.get_run(record.run_id)
    assert stored is not None
    assert stored.scheduled_time == at(0)
    assert stored.scheduled_time.utcoffset() == timedelta(0)
    assert stored.finished_at is not None and stored.finished_at.utcoffset() == timedelta(0)


def test_list_runs_newest_first_with_filters_and_cursor(backend: Backend) -> None:
    runs = [
        run("a", 0, run_id="r00"),
        run("a", 1, Outcome.FAILURE, run_id="r01"),
        run("b", 1, run_id="r02"),
        run("b", 1, Outcome.FAILURE, run_id="r03"),
        run("a", 2, Outcome.RUNNING, run_id="r04"),
        run("b", 3, Outcome.MISSED, run_id="r05"),
    ]
    backend.save_runs(runs)

    newest_first = ["r05", "r04", "r03", "r02", "r01", "r00"]
    assert [r.run_id for r in backend.list_runs()] == newest_first
    assert [r.run_id for r in backend.list_runs(job_id="a")] == ["r04", "r01", "r00"]
    assert [r.run_id for r in backend.list_runs(outcome=Outcome.FAILURE)] == ["r03", "r01"]
    assert [r.run_id for r in backend.list_runs(since=at(1))] == newest_first[:5]
    assert [r.run_id for r in backend.list_runs(job_id="b", outcome=Outcome.SUCCESS)] == ["r02"]

    pages: list[str] = []
    cursor: RunCursor | None = None
    while True:
        page = backend.list_runs(before=cursor, limit=4 if cursor is None else 1)
        if not page:
            break
        pages.extend(r.run_id for r in page)
        cursor = RunCursor(page[-1].scheduled_time, page[-1].run_id)
    assert pages == newest_first

    tie = RunCursor(at(1), "r03")
    assert [r.run_id for r in backend.list_runs(before=tie)] == ["r02", "r01", "r00"]
    assert [r.run_id for r in backend.list_runs(before=tie, job_id="a")] == ["r01", "r00"]


def test_last_run_by_start_with_outcome_and_since(backend: Backend) -> None:
    assert backend.last_run("etl") is None
    backend.save_runs(
        [
            run("etl", 0, run_id="ok-old"),
            run("etl", 10, Outcome.FAILURE, run_id="failed"),
            run("etl", 5, run_id="ok-new"),
            run("other", 20, run_id="elsewhere"),
        ]
    )
    last = backend.last_run("etl")
    assert last is not None and last.run_id == "failed"
    success = backend.last_run("etl", outcome=Outcome.SUCCESS)
    assert success is not None and success.run_id == "ok-new"
    assert backend.last_run("etl", outcome=Outcome.SUCCESS, since=at(6)) is None
    recent = backend.last_run("etl", outcome=Outcome.SUCCESS, since=at(5))
    assert recent is not None and recent.run_id == "ok-new"


def test_run_summaries_count_failures_until_a_success(backend: Backend) -> None:
    backend.save_runs([run("etl", 0), run("etl", 1, Outcome.FAILURE)])
    backend.save_runs([run("etl", 2, Outcome.TIMEOUT), run("etl", 3, Outcome.RUNNING)])
    summary = backend.run_summaries(["etl"])["etl"]
    assert summary.consecutive_failures == 2
    assert summary.last_outcome is Outcome.TIMEOUT
    assert summary.last_run_at == at(2)
    assert summary.last_duration_seconds == 10.0
    # Last success and failure are dated by when those runs finished.
    assert summary.last_success_at == ended(0)
    assert summary.last_failure_at == ended(2)

    backend.save_runs([run("etl", 4)])
    summary = backend.run_summaries(["etl"])["etl"]
    assert summary.consecutive_failures == 0
    assert summary.last_outcome is Outcome.SUCCESS
    assert summary.last_success_at == ended(4)
    assert summary.last_failure_at == ended(2)

    backend.save_runs([run("etl", 5, Outcome.FAILURE)])
    assert backend.run_summaries(["etl"])["etl"].consecutive_failures == 1


def test_run_summaries_order_a_batch_by_finish_and_count_each_run_once(
    backend: Backend,
) -> None:
    newest_first = [
        run("etl", 3, Outcome.FAILURE),
        run("etl", 2, Outcome.FAILURE),
        run("etl", 1),
        run("etl", 0, Outcome.FAILURE),
    ]
    backend.save_runs(newest_first)
    summary = backend.run_summaries()["etl"]
    assert summary.consecutive_failures == 2
    assert summary.last_run_at == at(3)
    assert summary.last_success_at == ended(1)

    backend.save_runs(newest_first[:2])
    assert backend.run_summaries()["etl"].consecutive_failures == 2


def test_run_summaries_select_jobs_and_skip_unfinished(backend: Backend) -> None:
    backend.save_runs([run("a", 0), run("b", 0, Outcome.FAILURE), run("c", 0, Outcome.RUNNING)])
    assert set(backend.run_summaries()) == {"a", "b"}
    assert set(backend.run_summaries(["b", "c", "unknown"])) == {"b"}
    assert backend.run_summaries([]) == {}


def test_saving_a_batch_twice_counts_its_failures_once(backend: Backend) -> None:
    batch = [run("flaky", minute, Outcome.FAILURE) for minute in range(3)]

    backend.save_runs(batch)
    backend.save_runs(batch)  # a retry after a lost reply

    assert backend.run_summaries()["flaky"].consecutive_failures == 3


def test_a_late_running_record_does_not_reopen_a_finished_run(backend: Backend) -> None:
    started = run("etl", 0, Outcome.RUNNING)
    done = started.finish(Outcome.SUCCESS)
    backend.save_runs([done])

    backend.save_runs([started])  # the earlier record, from a batch put back after a failure

    stored = backend.get_run(done.run_id)
    assert stored is not None
    assert stored.outcome is Outcome.SUCCESS
    assert stored.finished_at == done.finished_at
    assert backend.list_runs(outcome=Outcome.RUNNING) == []
    assert backend.interrupt_orphaned_runs(set()) == []
    assert backend.run_summaries(["etl"])["etl"].last_outcome is Outcome.SUCCESS


def test_the_first_final_record_of_a_run_stays(backend: Backend) -> None:
    started = run("etl", 0, Outcome.RUNNING)
    timed_out = started.finish(Outcome.TIMEOUT)
    backend.save_runs([timed_out])

    backend.save_runs([started.finish(Outcome.SUCCESS)])

    stored = backend.get_run(started.run_id)
    assert stored is not None and stored.outcome is Outcome.TIMEOUT
    summary = backend.run_summaries(["etl"])["etl"]
    assert summary.last_outcome is Outcome.TIMEOUT
    assert summary.consecutive_failures == 1


def test_a_late_success_does_not_end_a_later_failure_streak(backend: Backend) -> None:
    backend.save_runs([run("etl", 2, Outcome.FAILURE)])

    backend.save_runs([run("etl", 1)])  # finished before that failure, stored after it

    summary = backend.run_summaries(["etl"])["etl"]
    assert summary.consecutive_failures == 1
    assert summary.last_outcome is Outcome.FAILURE
    assert summary.last_success_at == ended(1)


def test_an_interrupt_sweep_racing_finishing_runs_keeps_history_consistent(
    backend: Backend, other: Backend
) -> None:
    """The sweep and a writer finishing the same runs: every run ends with one outcome,
    the sweep reports what it wrote, and the summary is the fold of what was kept."""
    orphans = [
        run("etl", minute / 100, Outcome.RUNNING, instance_id="dead") for minute in range(60)
    ]
    backend.save_runs(orphans)
    start = threading.Barrier(2)
    swept: list[int] = []

    def finish_them() -> None:
        start.wait()
        for orphan in orphans:
            other.save_runs([orphan.finish(Outcome.SUCCESS)])

    def sweep() -> None:
        start.wait()
        time.sleep(0.01)  # let the writer get under way
        swept.append(len(backend.interrupt_orphaned_runs(["alive"])))

    threads = [threading.Thread(target=finish_them), threading.Thread(target=sweep)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = [backend.get_run(orphan.run_id) for orphan in orphans]
    assert all(
        r is not None and r.outcome in (Outcome.SUCCESS, Outcome.INTERRUPTED) for r in stored
    )
    kept = [r for r in stored if r is not None]
    assert swept == [sum(1 for r in kept if r.outcome is Outcome.INTERRUPTED)]
    expected = history.fold_all({}, kept)["etl"].public()
    assert backend.run_summaries(["etl"])["etl"] == expected


def test_interrupt_orphaned_runs(backend: Backend) -> None:
    orphan = run("etl", 0, Outcome.RUNNING, instance_id="dead")
    alive = run("etl", 1, Outcome.RUNNING, instance_id="alive")
    done = run("etl", 0.5, Outcome.FAILURE, instance_id="dead")
    backend.save_runs([orphan, alive, done])

    assert [run.run_id for run in backend.interrupt_orphaned_runs(["alive"])] == [orphan.run_id]
    interrupted = backend.get_run(orphan.run_id)
    assert interrupted is not None
    assert interrupted.outcome is Outcome.INTERRUPTED
    assert interrupted.finished_at is not None
    assert interrupted.error_message == "instance dead stopped before the run finished"
    still = backend.get_run(alive.run_id)
    assert still is not None and still.outcome is Outcome.RUNNING
    failed = backend.get_run(done.run_id)
    assert failed is not None and failed.outcome is Outcome.FAILURE

    summary = backend.run_summaries(["etl"])["etl"]
    assert summary.last_outcome is Outcome.INTERRUPTED
    assert backend.interrupt_orphaned_runs(["alive"]) == []
    assert len(backend.interrupt_orphaned_runs([])) == 1


def test_prune_removes_old_history_only(backend: Backend) -> None:
    old = run("etl", 0)
    old_missed = Run(job_id="etl", scheduled_time=at(1), outcome=Outcome.MISSED)
    old_running = run("etl", 2, Outcome.RUNNING)
    recent = run("etl", 120)
    backend.save_runs([old, old_missed, old_running, recent])
    backend.claim_runs([("etl", at(0))], "i-1")
    backend.claim_runs([("etl", at(120))], "i-1")
    applied = Command(kind=CommandKind.PAUSE, job_id="etl", created_at=at(0))
    pending = Command(kind=CommandKind.RESUME, job_id="etl", created_at=at(0))
    backend.enqueue_command(applied)
    backend.enqueue_command(pending)
    backend.finish_command(applied.id, CommandState.APPLIED, None)

    cut_off = at(60)
    assert backend.prune(older_than=cut_off) == 2
    assert {r.run_id for r in backend.list_runs()} == {old_running.run_id, recent.run_id}
    assert backend.claim_runs([("etl", at(0))], "i-1")  # the old claim is gone
    assert not backend.claim_runs([("etl", at(120))], "i-1")
    # finish_command stamps "now", which is long after T0: prune with a later cut-off.
    backend.prune(older_than=datetime.now(UTC) + timedelta(minutes=1))
    assert backend.get_command(applied.id) is None
    assert backend.get_command(pending.id) is not None
    # Pruning history keeps each job's digest.
    assert "etl" in backend.run_summaries()


# instances ----------------------------------------------------------------------------
def test_heartbeats_record_role_and_last_seen(backend: Backend, other: Backend) -> None:
    backend.heartbeat(instance("sched-1", InstanceRole.LEADER))
    other.heartbeat(instance("sched-2"))
    before = datetime.now(UTC) - timedelta(seconds=5)
    seen = {i.id: i for i in backend.list_instances()}
    assert set(seen) == {"sched-1", "sched-2"}
    assert seen["sched-1"].role is InstanceRole.LEADER
    assert seen["sched-2"].host == "host-a" and seen["sched-2"].pid == 4242
    assert seen["sched-2"].started_at == T0
    assert seen["sched-2"].last_seen > before

    other.heartbeat(instance("sched-2", InstanceRole.STOPPING))
    roles = {i.id: i.role for i in backend.list_instances()}
    assert roles == {"sched-1": InstanceRole.LEADER, "sched-2": InstanceRole.STOPPING}

    backend.remove_instance("sched-2")
    backend.remove_instance("never-there")
    assert [i.id for i in backend.list_instances()] == ["sched-1"]


def test_a_workers_heartbeat_records_its_queues(backend: Backend, other: Backend) -> None:
    worker = instance("worker-1", InstanceRole.WORKER)
    other.heartbeat(worker.model_copy(update={"queues": ["default", "heavy"]}))
    backend.heartbeat(instance("sched-1", InstanceRole.LEADER))
    seen = {i.id: i for i in backend.list_instances()}
    assert seen["worker-1"].queues == ["default", "heavy"]
    assert seen["sched-1"].queues == []


# commands -----------------------------------------------------------------------------
def test_commands_are_pending_oldest_first_and_finish_once(backend: Backend) -> None:
    first = Command(
        kind=CommandKind.RESCHEDULE,
        job_id="etl",
        payload={"trigger": {"type": "interval", "seconds": 30}},
        created_at=at(0),
    )
    second = Command(kind=CommandKind.PAUSE, job_id="etl", created_at=at(1))
    third = Command(kind=CommandKind.RUN, job_id="report", created_at=at(2))
    for command in (third, first, second):
        backend.enqueue_command(command)

    assert backend.get_command(first.id) == first
    assert backend.get_command("missing") is None
    assert [c.id for c in backend.pending_commands()] == [first.id, second.id, third.id]
    assert [c.id for c in backend.pending_commands(limit=2)] == [first.id, second.id]

    backend.finish_command(first.id, CommandState.APPLIED, None)
    backend.finish_command(second.id, CommandState.REJECTED, "job etl is already paused")
    backend.finish_command(first.id, CommandState.REJECTED, "too late")
    assert [c.id for c in backend.pending_commands()] == [third.id]

    applied = backend.get_command(first.id)
    assert applied is not None
    assert applied.state is CommandState.APPLIED and applied.reason is None
    assert applied.finished_at is not None
    rejected = backend.get_command(second.id)
    assert rejected is not None and rejected.reason == "job etl is already paused"


def test_wait_for_commands_wakes_on_enqueue_from_another_instance(
    backend: Backend, other: Backend
) -> None:
    backend.wait_for_commands(0.05)  # the first wait may set up listening

    def enqueue_soon() -> None:
        time.sleep(0.3)
        other.enqueue_command(Command(kind=CommandKind.RUN, job_id="etl"))

    sender = threading.Thread(target=enqueue_soon)
    started = time.monotonic()
    sender.start()
    deadline = started + 60
    while not backend.pending_commands() and time.monotonic() < deadline:
        backend.wait_for_commands(deadline - time.monotonic())
    sender.join()
    # Woken by the command, long before the wait's end; backends without push
    # notification poll at most twice a second.
    assert time.monotonic() - started < within(0.5)
    assert len(backend.pending_commands()) == 1


def test_wait_for_commands_returns_after_timeout(backend: Backend) -> None:
    started = time.monotonic()
    backend.wait_for_commands(0.2)
    assert time.monotonic() - started < within(0.2)


# leadership ---------------------------------------------------------------------------
def test_only_one_leader_at_a_time(backend: Backend, other: Backend) -> None:
    assert backend.acquire_leadership("sched-1", LEASE) is True
    assert backend.acquire_leadership("sched-1", LEASE) is True  # already ours
    assert other.acquire_leadership("sched-2", LEASE) is False
    assert backend.renew_leadership("sched-1", LEASE) is True
    assert other.renew_leadership("sched-2", LEASE) is False

    backend.release_leadership("sched-1")
    assert backend.renew_leadership("sched-1", LEASE) is False
    assert other.acquire_leadership("sched-2", LEASE) is True
    assert backend.acquire_leadership("sched-1", LEASE) is False
    other.release_leadership("sched-2")


def test_close_releases_leadership(backend: Backend, backend_url: str, other: Backend) -> None:
    first = open_backend(backend_url)  # `backend` has set the store up
    assert first.acquire_leadership("sched-1", LEASE) is True
    first.close()
    assert other.acquire_leadership("sched-2", LEASE) is True


def test_an_expired_lease_can_be_taken_over(backend: Backend, other: Backend) -> None:
    """A leader that stops renewing (frozen, stuck) loses the lock after its lease."""
    assert backend.acquire_leadership("sched-1", 0.3) is True
    time.sleep(0.5)
    assert other.acquire_leadership("sched-2", LEASE) is True
    assert backend.renew_leadership("sched-1", LEASE) is False


@pytest.mark.parametrize("backend_url", ["postgres"], indirect=True)
def test_leader_whose_session_dies_is_told_so(
    backend: Backend, other: Backend, backend_url: str
) -> None:
    assert backend.acquire_leadership("sched-1", LEASE) is True
    admin = sa.create_engine(backend_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                )
            ).all()
    finally:
        admin.dispose()
    assert killed
    assert backend.renew_leadership("sched-1", LEASE) is False
    assert other.acquire_leadership("sched-2", LEASE) is True
    assert backend.acquire_leadership("sched-1", LEASE) is False


# APScheduler job store ----------------------------------------------------------------
def test_job_store_keeps_jobs_for_the_next_scheduler(backend: Backend, other: Backend) -> None:
    first = BackgroundScheduler(jobstores={"default": backend.create_jobstore()}, timezone=UTC)
    first.start(paused=True)
    try:
        first.add_job("time:sleep", "interval", args=[0], minutes=5, id="nap", name="nap")
        next_fire = first.get_job("nap").next_run_time
    finally:
        first.shutdown(wait=False)

    second = BackgroundScheduler(jobstores={"default": other.create_jobstore()}, timezone=UTC)
    second.start(paused=True)
    try:
        stored = second.get_job("nap")
        assert stored is not None
        assert stored.name == "nap"
        assert stored.next_run_time == next_fire
        second.remove_job("nap")
        assert second.get_jobs() == []
    finally:
        second.shutdown(wait=False)


# runs on workers ------------------------------------------------------------------------
def queued(job_id: str, minute: float, *, attempt: int = 1, queue: str = "default") -> Run:
    return Run(
        job_id=job_id,
        scheduled_time=at(minute),
        attempt=attempt,
        outcome=Outcome.QUEUED,
        instance_id="leader-1",
        queue=queue,
    )


def test_a_queued_run_starts_once_however_often_its_message_arrives(
    backend: Backend, other: Backend
) -> None:
    waiting = queued("etl", 0)
    backend.save_runs([waiting])

    first = backend.start_run(waiting.run_id, "worker-1")
    again = other.start_run(waiting.run_id, "worker-2")

    assert first is not None and first.outcome is Outcome.RUNNING
    assert first.instance_id == "worker-1" and first.started_at is not None
    assert again is None
    stored = backend.get_run(waiting.run_id)
    assert stored is not None and stored.instance_id == "worker-1"


def test_concurrent_starts_of_one_run_have_one_winner(backend: Backend, other: Backend) -> None:
    runs = [queued("etl", minute) for minute in range(20)]
    backend.save_runs(runs)
    starts: dict[str, list[str]] = {run.run_id: [] for run in runs}
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def take(target: Backend, worker: str) -> None:
        barrier.wait()
        for run in runs:
            if target.start_run(run.run_id, worker) is not None:
                with lock:
                    starts[run.run_id].append(worker)

    threads = [
        threading.Thread(target=take, args=(b, f"w-{n}")) for n, b in enumerate((backend, other))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(len(winners) == 1 for winners in starts.values()), starts


def test_a_run_given_up_on_while_queued_does_not_start(backend: Backend) -> None:
    waiting = queued("etl", 0)
    backend.save_runs([waiting])

    missed = backend.update_runs(
        [waiting.run_id], lambda run: history.miss_unstarted(run, "no worker took it")
    )

    assert [run.outcome for run in missed] == [Outcome.MISSED]
    assert backend.start_run(waiting.run_id, "worker-1") is None
    stored = backend.get_run(waiting.run_id)
    assert stored is not None and stored.outcome is Outcome.MISSED
    assert stored.started_at is None
    assert backend.run_summaries(["etl"])["etl"].last_outcome is Outcome.MISSED


def test_a_late_queued_record_does_not_undo_a_start(backend: Backend) -> None:
    waiting = queued("etl", 0)
    backend.save_runs([waiting])
    backend.start_run(waiting.run_id, "worker-1")

    backend.save_runs([waiting])

    stored = backend.get_run(waiting.run_id)
    assert stored is not None and stored.outcome is Outcome.RUNNING


def test_the_orphan_sweep_leaves_queued_runs_to_the_workers(backend: Backend) -> None:
    waiting = queued("etl", 0)
    backend.save_runs([waiting])

    assert backend.interrupt_orphaned_runs(["someone-else"]) == []
    stored = backend.get_run(waiting.run_id)
    assert stored is not None and stored.outcome is Outcome.QUEUED


def test_queued_and_running_runs_count_against_max_instances(backend: Backend) -> None:
    first, second, done = queued("etl", 0), queued("etl", 1), run("etl", 2)
    backend.save_runs([first, second, done, queued("other", 0)])
    backend.start_run(first.run_id, "worker-1")

    assert backend.count_active(["etl", "other", "idle"]) == {"etl": 2, "other": 1, "idle": 0}


def procrastinate_jobs(url: str) -> list[tuple[str, str, dict[str, object]]]:
    """procrastinate's job rows, as a worker would find them."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT queue_name, status, args FROM procrastinate_jobs ORDER BY id")
            )
            return [(row.queue_name, row.status, row.args) for row in rows]
    finally:
        engine.dispose()


def delivered(backend: Backend, queues: list[str], *, seconds: float) -> list[RunMessage]:
    """The messages a worker of ``queues`` is handed within ``seconds``."""
    got: list[RunMessage] = []

    async def consume() -> None:
        stop = asyncio.Event()

        async def handle(message: RunMessage) -> None:
            got.append(message)

        asyncio.get_running_loop().call_later(seconds, stop.set)
        await backend.run_queue().consume(
            queues=queues, concurrency=2, handle=handle, stop=stop, grace=1
        )

    asyncio.run(consume())
    return got


ENGINES = ["postgres", "redis"]


@pytest.mark.parametrize("backend_url", ENGINES, indirect=True)
def test_a_dispatched_run_is_recorded_claimed_and_delivered_to_its_queue(
    backend: Backend,
) -> None:
    heavy = queued("etl", 0, queue="heavy")

    done = backend.claim_and_queue([heavy], "leader-1", {"etl": 3})

    assert [run.run_id for run in done.queued] == [heavy.run_id]
    stored = backend.get_run(heavy.run_id)
    assert stored is not None and stored.outcome is Outcome.QUEUED and stored.queue == "heavy"
    assert not backend.claim_runs([("etl", at(0))], "leader-2")
    assert delivered(backend, ["default"], seconds=1.5) == []
    (message,) = delivered(backend, ["heavy"], seconds=1.5)
    assert message == RunMessage.of(heavy)


@pytest.mark.parametrize("backend_url", ENGINES, indirect=True)
def test_a_retry_is_delivered_only_once_its_backoff_has_passed(backend: Backend) -> None:
    retry = queued("etl", 0, attempt=2).model_copy(
        update={"due_at": datetime.now(UTC) + timedelta(seconds=2.5)}
    )
    # Sent together with the retry: runs already due, each at a fire time of its own.
    due_now = [queued(f"report-{n}", n / 1000) for n in range(3)]

    backend.queue_runs([retry, *due_now])

    first = delivered(backend, ["default"], seconds=1)
    assert sorted(m.run_id for m in first) == sorted(run.run_id for run in due_now)
    assert [m.run_id for m in delivered(backend, ["default"], seconds=3)] == [retry.run_id]


@pytest.mark.parametrize("backend_url", ["redis"], indirect=True)
def test_a_queued_run_whose_message_was_lost_is_sent_again(backend: Backend) -> None:
    lost = queued("etl", 0)
    backend.save_runs([lost])  # recorded, but no message: the leader died in between

    assert backend.reconcile_queued(datetime.now(UTC)) == 1

    assert [m.run_id for m in delivered(backend, ["default"], seconds=1.5)] == [lost.run_id]
    assert backend.reconcile_queued(datetime.now(UTC)) == 0  # once is enough


@pytest.mark.parametrize("backend_url", ["postgres"], indirect=True)
def test_a_failure_between_claim_and_enqueue_leaves_neither(
    backend: Backend, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = queued("etl", 0)

    def broken(*_: object) -> None:
        raise ConnectionError("the connection dropped while deferring")

    monkeypatch.setattr(backend.run_queue(), "enqueue", broken)
    with pytest.raises(ConnectionError):
        backend.claim_and_queue([waiting], "leader-1", {})
    monkeypatch.undo()

    assert backend.get_run(waiting.run_id) is None
    assert procrastinate_jobs(backend_url) == []
    assert backend.claim_and_queue([waiting], "leader-2", {}).queued  # the fire time is free


@pytest.mark.parametrize("backend_url", ["postgres"], indirect=True)
def test_a_job_at_its_limit_gets_no_more_runs_queued(backend: Backend, backend_url: str) -> None:
    backend.claim_and_queue([queued("etl", 0)], "leader-1", {"etl": 1})

    done = backend.claim_and_queue([queued("etl", 1), queued("etl", 2)], "leader-1", {"etl": 1})

    assert done.queued == [] and len(done.over_limit) == 2
    assert len(procrastinate_jobs(backend_url)) == 1
    assert not backend.claim_runs([("etl", at(1))], "leader-2")  # still claimed


@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
def test_the_queue_executor_needs_a_backend_with_a_task_engine(backend: Backend) -> None:
    with pytest.raises(BackendError, match=r"needs a Postgres .* or Redis"):
        backend.run_queue()


def test_queue_depths_count_waiting_runs_and_the_oldest_due(backend: Backend) -> None:
    retry = queued("etl", 0, attempt=2).model_copy(update={"due_at": at(30)})
    backend.save_runs([queued("etl", 5), retry, queued("big", 9, queue="heavy"), run("etl", 1)])
    started = queued("etl", 2)
    backend.save_runs([started])
    backend.start_run(started.run_id, "worker-1")

    depths = backend.queued_by_queue()

    assert depths == {"default": QueueDepth(2, at(5)), "heavy": QueueDepth(1, at(9))}
