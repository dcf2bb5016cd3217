"""The runner against the in-memory backend: what each run leaves in history and metrics.

Every test runs real jobs through a real BackendWriter and reads back what the backend
stored, the way the API would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import FakeBackend  # tests/ is on sys.path (rootdir conftest)
from prometheus_client import CollectorRegistry
from scheduler_harness import wait_for
from timing import within

from sundial.backends import Backend, BackendError
from sundial.context import current_run
from sundial.metrics import SchedulerMetrics
from sundial.models import FINAL_OUTCOMES, JobOptions, JobView, Outcome, Run, utcnow
from sundial.triggers import IntervalSpec
from sundial_scheduler import writer as writer_module
from sundial_scheduler.claims import ClaimBatcher
from sundial_scheduler.loop_monitor import LoopMonitor
from sundial_scheduler.runner import Invocation, Runner
from sundial_scheduler.writer import BackendWriter

INSTANCE = "sched-test"
JOB = "job"


class Harness:
    """A runner wired like the scheduler's: backend, writer, metrics and two pools."""

    def __init__(self, backend: Backend, timezone: str = "UTC") -> None:
        self.backend = backend
        self.timezone = timezone
        self.registry = CollectorRegistry()
        self.metrics = SchedulerMetrics(self.registry, instance_id=INSTANCE, backend="fake")
        self.writer = BackendWriter(backend, self.metrics.backend_error)
        self.writer.start()
        self.job_pool = ThreadPoolExecutor(4, thread_name_prefix="test-job")
        self.io_pool = ThreadPoolExecutor(2, thread_name_prefix="test-io")
        self.leading = True
        self.runner = Runner(
            backend=backend,
            writer=self.writer,
            metrics=self.metrics,
            instance_id=INSTANCE,
            job_pool=self.job_pool,
            io_pool=self.io_pool,
            may_run=lambda: self.leading,
            loop_monitor=LoopMonitor(threshold=0, on_blocked=lambda *_: None),
        )

    def invocation(
        self,
        func: Callable[..., Any],
        job_id: str = JOB,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Invocation:
        trigger = IntervalSpec(seconds=60, timezone=self.timezone)
        view = JobView(
            id=job_id,
            name=job_id,
            func=f"tests:{job_id}",
            trigger=trigger,
            trigger_text=trigger.describe(),
            options=JobOptions(**options),
        )
        self.metrics.job_known(view)
        return Invocation(view, func, (), kwargs or {})

    def runs(self, job_id: str = JOB) -> list[Run]:
        """Runs of ``job_id`` as stored, oldest fire time and attempt first."""
        assert self.writer.flush(5), "the writer did not store the runs in time"
        found = [run for run in self.backend.runs.values() if run.job_id == job_id]  # type: ignore[attr-defined]
        return sorted(found, key=lambda run: (run.scheduled_time, run.attempt))

    def count(self, outcome: Outcome, job_id: str = JOB) -> float | None:
        labels = {"job_id": job_id, "outcome": outcome.value}
        return self.registry.get_sample_value("sundial_job_runs_total", labels)

    def counts(self, job_id: str = JOB) -> dict[str, float | None]:
        return {outcome.value: self.count(outcome, job_id) for outcome in FINAL_OUTCOMES}

    def gauge(self, name: str, job_id: str = JOB) -> float | None:
        return self.registry.get_sample_value(name, {"job_id": job_id})

    def close(self) -> None:
        self.writer.stop(2)
        self.job_pool.shutdown(wait=False, cancel_futures=True)
        self.io_pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(backend: Backend | None = None, timezone: str = "UTC") -> Harness:
        harness = Harness(backend or FakeBackend(), timezone)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


def only_counted(harness: Harness, outcome: Outcome, times: float = 1.0) -> None:
    """Assert runs_total counts ``times`` for ``outcome`` and 0 for every other outcome."""
    expected = {o.value: (times if o is outcome else 0.0) for o in FINAL_OUTCOMES}
    assert harness.counts() == expected


def success_of(job_id: str, scheduled: datetime) -> Run:
    return Run(
        job_id=job_id,
        scheduled_time=scheduled,
        started_at=scheduled,
        finished_at=scheduled + timedelta(seconds=1),
        duration_seconds=1.0,
        outcome=Outcome.SUCCESS,
        instance_id="earlier",
    )


# -- outcomes ---------------------------------------------------------------------------


async def test_success_is_recorded(h: Harness) -> None:
    calls: list[str] = []

    async def export(region: str) -> None:
        calls.append(region)

    scheduled = utcnow()

    await h.runner.run(h.invocation(export, kwargs={"region": "eu"}), scheduled)

    (run,) = h.runs()
    assert calls == ["eu"]
    assert run.outcome is Outcome.SUCCESS
    assert run.attempt == 1
    assert run.scheduled_time == scheduled
    assert run.instance_id == INSTANCE
    assert run.manual is False
    assert run.started_at is not None and run.finished_at is not None
    assert scheduled <= run.started_at <= run.finished_at
    assert run.duration_seconds is not None and run.duration_seconds >= 0
    assert run.error_type is None and run.error_message is None
    only_counted(h, Outcome.SUCCESS)
    assert h.gauge("sundial_job_last_success_timestamp_seconds") == run.finished_at.timestamp()
    assert h.gauge("sundial_job_running") == 0
    assert h.gauge("sundial_job_duration_seconds_count") == 1
    assert h.runner.active == set()


async def test_a_manual_run_is_marked_manual(h: Harness) -> None:
    async def noop() -> None: ...

    await h.runner.run(h.invocation(noop), utcnow(), manual=True)

    (run,) = h.runs()
    assert run.manual is True
    assert run.outcome is Outcome.SUCCESS


async def test_sync_job_runs_on_the_job_pool_and_sees_its_run(h: Harness) -> None:
    seen: dict[str, Any] = {}

    def sync_job() -> None:
        context = current_run()
        seen.update(
            job_id=context.job_id,
            run_id=context.run_id,
            attempt=context.attempt,
            thread=threading.current_thread().name,
        )

    await h.runner.run(h.invocation(sync_job), utcnow())

    (run,) = h.runs()
    assert run.outcome is Outcome.SUCCESS
    assert seen["job_id"] == JOB
    assert seen["run_id"] == run.run_id
    assert seen["attempt"] == 1
    assert seen["thread"].startswith("test-job")


def explode_sync() -> None:
    raise ValueError("disk full on /var")


async def explode_async() -> None:
    raise ValueError("disk full on /var")


@pytest.mark.parametrize("func", [explode_sync, explode_async], ids=["sync", "async"])
async def test_failure_is_recorded_with_error_and_traceback(
    h: Harness, func: Callable[[], Any]
) -> None:
    await h.runner.run(h.invocation(func), utcnow())

    (run,) = h.runs()
    assert run.outcome is Outcome.FAILURE
    assert run.error_type == "ValueError"
    assert run.error_message == "disk full on /var"
    assert run.traceback is not None
    assert func.__name__ in run.traceback
    assert "ValueError: disk full on /var" in run.traceback
    only_counted(h, Outcome.FAILURE)
    assert h.gauge("sundial_job_last_failure_timestamp_seconds") == (
        run.finished_at.timestamp()  # type: ignore[union-attr]
    )
    assert h.gauge("sundial_job_last_success_timestamp_seconds") == 0


async def test_a_huge_error_message_is_truncated(h: Harness) -> None:
    async def shout() -> None:
        raise RuntimeError("x" * 50_000)

    await h.runner.run(h.invocation(shout), utcnow())

    (run,) = h.runs()
    assert run.outcome is Outcome.FAILURE
    assert run.error_message is not None
    assert 100 < len(run.error_message) <= 2_000
    assert run.error_message.endswith("[truncated]")


async def test_async_job_past_its_timeout_is_recorded_timeout(h: Harness) -> None:
    async def slow() -> None:
        await asyncio.sleep(30)

    started = time.monotonic()

    await h.runner.run(h.invocation(slow, timeout_seconds=0.1), utcnow())

    assert time.monotonic() - started < within(0.1)
    (run,) = h.runs()
    assert run.outcome is Outcome.TIMEOUT
    assert run.error_message == "timed out after 0.1s"
    only_counted(h, Outcome.TIMEOUT)
    assert h.gauge("sundial_job_last_failure_timestamp_seconds") == (
        run.finished_at.timestamp()  # type: ignore[union-attr]
    )


async def test_sync_job_past_its_timeout_is_recorded_timeout(h: Harness) -> None:
    release = threading.Event()

    def stuck() -> None:
        release.wait(10)

    try:
        started = time.monotonic()
        await h.runner.run(h.invocation(stuck, timeout_seconds=0.1), utcnow())
        assert time.monotonic() - started < within(0.1)
        (run,) = h.runs()
    finally:
        release.set()
    assert run.outcome is Outcome.TIMEOUT
    only_counted(h, Outcome.TIMEOUT)


async def test_a_timed_out_sync_job_shows_as_running_until_its_thread_returns(
    h: Harness,
) -> None:
    # A thread cannot be stopped from outside: the run is recorded as a timeout, and the
    # running gauges keep showing the stuck work, which is what SundialJobTooLong watches.
    release = threading.Event()
    returned = threading.Event()

    def stuck() -> None:
        release.wait(10)
        returned.set()

    await h.runner.run(h.invocation(stuck, timeout_seconds=0.1), utcnow())
    (run,) = h.runs()
    assert run.outcome is Outcome.TIMEOUT
    assert h.gauge("sundial_job_running") == 1
    assert h.gauge("sundial_job_running_since_timestamp_seconds") == run.started_at.timestamp()

    release.set()
    assert returned.wait(5)
    for _ in range(50):
        if h.gauge("sundial_job_running") == 0:
            break
        await asyncio.sleep(0.02)
    assert h.gauge("sundial_job_running") == 0
    assert h.gauge("sundial_job_running_since_timestamp_seconds") == 0


async def test_a_timeout_error_raised_by_the_job_itself_is_a_failure(h: Harness) -> None:
    # The job has no Sundial timeout; its own network call timed out.
    async def connect() -> None:
        raise TimeoutError("connect to db:5432 timed out")

    await h.runner.run(h.invocation(connect), utcnow())

    (run,) = h.runs()
    assert run.error_message == "connect to db:5432 timed out"
    assert run.outcome is Outcome.FAILURE


# -- retries ----------------------------------------------------------------------------


async def test_retries_until_success(h: Harness) -> None:
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(current_run().attempt)
        if len(attempts) < 3:
            raise ConnectionError("upstream refused")

    scheduled = utcnow()

    await h.runner.run(h.invocation(flaky, retries=2, retry_backoff_seconds=0.01), scheduled)

    runs = h.runs()
    assert attempts == [1, 2, 3]
    assert [run.attempt for run in runs] == [1, 2, 3]
    assert [run.outcome for run in runs] == [Outcome.FAILURE, Outcome.FAILURE, Outcome.SUCCESS]
    assert {run.scheduled_time for run in runs} == {scheduled}
    assert len({run.run_id for run in runs}) == 3
    assert runs[0].error_type == "ConnectionError"
    # A failure that a retry fixed pages nobody.
    only_counted(h, Outcome.SUCCESS)
    assert h.gauge("sundial_job_last_failure_timestamp_seconds") == 0
    assert h.gauge("sundial_job_lag_seconds_count") == 1


async def test_the_last_failed_attempt_is_counted_once(h: Harness) -> None:
    async def broken() -> None:
        raise ConnectionError("upstream refused")

    await h.runner.run(h.invocation(broken, retries=1), utcnow())

    assert [run.outcome for run in h.runs()] == [Outcome.FAILURE, Outcome.FAILURE]
    only_counted(h, Outcome.FAILURE)


async def test_a_timed_out_attempt_is_retried(h: Harness) -> None:
    attempts: list[int] = []

    async def slow_once() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.sleep(30)

    await h.runner.run(h.invocation(slow_once, timeout_seconds=0.1, retries=1), utcnow())

    assert [run.outcome for run in h.runs()] == [Outcome.TIMEOUT, Outcome.SUCCESS]
    only_counted(h, Outcome.SUCCESS)


async def test_retry_backoff_doubles(h: Harness) -> None:
    async def broken() -> None:
        raise ConnectionError("upstream refused")

    invocation = h.invocation(broken, retries=2, retry_backoff_seconds=0.1)

    await h.runner.run(invocation, utcnow())

    first, second, third = h.runs()
    gap1 = (second.started_at - first.finished_at).total_seconds()  # type: ignore[operator]
    gap2 = (third.started_at - second.finished_at).total_seconds()  # type: ignore[operator]
    assert gap1 >= 0.09
    assert gap2 >= 0.19


# -- fire times that do not run ---------------------------------------------------------


async def test_a_fire_time_past_its_grace_is_recorded_missed(h: Harness) -> None:
    calls: list[int] = []
    late = utcnow() - timedelta(minutes=5)

    await h.runner.fire(h.invocation(lambda: calls.append(1)), [late], grace=60)

    (run,) = h.runs()
    assert calls == []
    assert run.outcome is Outcome.MISSED
    assert run.scheduled_time == late
    assert run.started_at is None
    assert run.error_message is not None
    assert "past misfire_grace_time 60s" in run.error_message
    only_counted(h, Outcome.MISSED)
    assert h.gauge("sundial_job_running") == 0


async def test_fire_runs_the_times_within_grace_and_misses_the_rest(h: Harness) -> None:
    calls: list[datetime] = []

    async def job() -> None:
        calls.append(current_run().scheduled_time)

    late = utcnow() - timedelta(minutes=5)
    fresh = utcnow() - timedelta(seconds=1)

    await h.runner.fire(h.invocation(job), [late, fresh], grace=60)

    assert calls == [fresh]
    assert [(run.scheduled_time, run.outcome) for run in h.runs()] == [
        (late, Outcome.MISSED),
        (fresh, Outcome.SUCCESS),
    ]


async def test_without_grace_a_late_fire_time_still_runs(h: Harness) -> None:
    calls: list[int] = []

    await h.runner.fire(
        h.invocation(lambda: calls.append(1)), [utcnow() - timedelta(hours=1)], grace=None
    )

    assert calls == [1]
    assert h.runs()[0].outcome is Outcome.SUCCESS


async def test_a_missed_fire_time_recorded_twice_is_one_record(h: Harness) -> None:
    late = utcnow() - timedelta(minutes=5)
    invocation = h.invocation(lambda: None)

    await h.runner.fire(invocation, [late], grace=60)
    await h.runner.fire(invocation, [late], grace=60)

    assert len(h.runs()) == 1


async def test_a_fire_time_claimed_elsewhere_does_not_run(h: Harness) -> None:
    calls: list[int] = []
    scheduled = utcnow()
    assert h.backend.claim_runs([(JOB, scheduled)], "other-instance")

    await h.runner.run(h.invocation(lambda: calls.append(1)), scheduled)

    assert calls == []
    assert h.runs() == []
    assert h.counts() == dict.fromkeys(h.counts(), 0.0)


async def test_one_fire_time_runs_once_even_when_fired_twice(h: Harness) -> None:
    calls: list[int] = []

    async def job() -> None:
        calls.append(1)
        await asyncio.sleep(0.05)

    invocation = h.invocation(job)
    scheduled = utcnow()

    await asyncio.gather(h.runner.run(invocation, scheduled), h.runner.run(invocation, scheduled))

    assert calls == [1]
    assert len(h.runs()) == 1


async def test_a_fire_time_while_the_previous_run_goes_on_is_skipped(h: Harness) -> None:
    release = asyncio.Event()

    async def job() -> None:
        await release.wait()

    invocation = h.invocation(job, max_instances=1)
    first, second = utcnow(), utcnow() + timedelta(seconds=1)
    running = asyncio.create_task(h.runner.run(invocation, first))
    await wait_for(lambda: h.gauge("sundial_job_running") == 1, within=2)

    await h.runner.run(invocation, second)
    release.set()
    await running

    assert [(run.scheduled_time, run.outcome) for run in h.runs()] == [
        (first, Outcome.SUCCESS),
        (second, Outcome.SKIPPED),
    ]
    assert h.runs()[1].error_message == "previous run still running (max_instances=1)"


async def test_the_slot_is_free_once_the_job_returns_though_history_is_stalled(
    make_harness: Callable[..., Harness],
) -> None:
    backend = SlowHistoryBackend()
    harness = make_harness(backend)

    async def job() -> None: ...

    invocation = harness.invocation(job, max_instances=1)
    first, second = utcnow(), utcnow() + timedelta(seconds=1)
    try:
        await harness.runner.run(invocation, first)
        await harness.runner.run(invocation, second)
    finally:
        backend.release.set()
    assert [run.outcome for run in harness.runs()] == [Outcome.SUCCESS, Outcome.SUCCESS]


async def test_a_manual_run_takes_no_slot(h: Harness) -> None:
    release = asyncio.Event()

    async def job() -> None:
        await release.wait()

    invocation = h.invocation(job, max_instances=1)
    manual = asyncio.create_task(h.runner.run(invocation, utcnow(), manual=True))
    await wait_for(lambda: h.gauge("sundial_job_running") == 1, within=2)
    scheduled = asyncio.create_task(h.runner.run(invocation, utcnow() + timedelta(seconds=1)))
    await wait_for(lambda: h.gauge("sundial_job_running") == 2, within=2)
    release.set()
    await asyncio.gather(manual, scheduled)

    assert [run.outcome for run in h.runs()] == [Outcome.SUCCESS, Outcome.SUCCESS]


async def test_nothing_runs_while_this_instance_may_not_run(h: Harness) -> None:
    calls: list[int] = []
    h.leading = False

    await h.runner.run(h.invocation(lambda: calls.append(1)), utcnow())

    assert calls == []
    assert h.backend.claims == set()  # type: ignore[attr-defined]
    assert h.runs() == []


async def test_no_run_without_a_claim_when_the_backend_is_down(h: Harness) -> None:
    calls: list[int] = []
    h.backend.down = True  # type: ignore[attr-defined]

    await h.runner.run(h.invocation(lambda: calls.append(1)), utcnow())

    h.backend.down = False  # type: ignore[attr-defined]
    assert calls == []
    assert h.runs() == []
    errors = {"operation": "claim_run"}
    assert h.registry.get_sample_value("sundial_backend_errors_total", errors) == 1


# -- batched claims ---------------------------------------------------------------------


def claim_calls(harness: Harness) -> int:
    return harness.backend.calls.count("claim_runs")  # type: ignore[attr-defined]


async def test_runs_firing_together_share_few_claim_calls(h: Harness) -> None:
    ran: list[str] = []
    scheduled = utcnow()

    def job(name: str) -> Callable[[], Any]:
        async def work() -> None:
            ran.append(name)

        return work

    invocations = [h.invocation(job(f"job-{n}"), job_id=f"job-{n}") for n in range(1_000)]

    await asyncio.gather(*(h.runner.run(inv, scheduled) for inv in invocations))

    assert sorted(ran) == sorted(f"job-{n}" for n in range(1_000))
    assert 1 <= claim_calls(h) <= 3  # 1,000 runs, not 1,000 claim transactions
    assert h.backend.claims == {(f"job-{n}", scheduled) for n in range(1_000)}  # type: ignore[attr-defined]


async def test_in_a_batch_a_fire_time_claimed_elsewhere_does_not_run(h: Harness) -> None:
    ran: list[str] = []
    scheduled = utcnow()
    assert h.backend.claim_runs([("taken", scheduled)], "other-instance")
    claimed_before = claim_calls(h)

    def job(name: str) -> Callable[[], Any]:
        return lambda: ran.append(name)

    names = ["before", "taken", "after"]
    invocations = [h.invocation(job(name), job_id=name) for name in names]

    await asyncio.gather(*(h.runner.run(inv, scheduled) for inv in invocations))

    assert sorted(ran) == ["after", "before"]
    assert h.runs("taken") == []
    assert [run.outcome for run in h.runs("before") + h.runs("after")] == [Outcome.SUCCESS] * 2
    assert claim_calls(h) == claimed_before + 1


async def test_a_failed_claim_batch_runs_none_of_its_runs(h: Harness) -> None:
    ran: list[str] = []
    scheduled = utcnow()
    invocations = [
        h.invocation(lambda name=f"job-{n}": ran.append(name), job_id=f"job-{n}") for n in range(20)
    ]
    h.backend.down = True  # type: ignore[attr-defined]

    await asyncio.gather(*(h.runner.run(inv, scheduled) for inv in invocations))

    h.backend.down = False  # type: ignore[attr-defined]
    assert ran == []
    assert all(h.runs(f"job-{n}") == [] for n in range(20))
    # one failed backend call, counted once, however many runs were waiting on it
    errors = {"operation": "claim_run"}
    assert h.registry.get_sample_value("sundial_backend_errors_total", errors) == 1
    assert h.runner.active == set()

    # The backend is back: the next fire time runs as usual.
    later = scheduled + timedelta(minutes=1)
    await asyncio.gather(*(h.runner.run(inv, later) for inv in invocations))

    assert sorted(ran) == sorted(f"job-{n}" for n in range(20))


class HeldClaimsBackend(FakeBackend):
    """Holds its first ``claim_runs`` call until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.batches: list[int] = []

    def claim_runs(
        self, claims: Sequence[tuple[str, datetime]], instance_id: str
    ) -> set[tuple[str, datetime]]:
        if not self.batches:
            self.release.wait(5)
        self.batches.append(len(claims))
        return super().claim_runs(claims, instance_id)


async def test_claims_arriving_during_a_slow_call_go_out_together_after_it() -> None:
    backend = HeldClaimsBackend()
    errors: list[str] = []
    scheduled = utcnow()
    with ThreadPoolExecutor(2) as pool:
        batcher = ClaimBatcher(
            backend=backend,
            instance_id=INSTANCE,
            io_pool=pool,
            on_error=errors.append,
            max_in_flight=1,
        )
        first = asyncio.create_task(batcher.claim("first", scheduled))
        await asyncio.sleep(0.01)  # its window closed: the call is out, and held
        later = []
        for n in range(30):  # arriving over many windows while the call is held
            later.append(asyncio.create_task(batcher.claim(f"job-{n}", scheduled)))
            await asyncio.sleep(0.001)
        backend.release.set()

        answers = await asyncio.gather(first, *later)

    assert answers == [True] * 31
    assert backend.batches == [1, 30]
    assert errors == []


@pytest.mark.parametrize(("options", "hops"), [({}, 1), ({"unique_per": "day"}, 2)])
async def test_only_a_guarded_run_waits_for_its_guard_on_the_io_pool(
    h: Harness, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], hops: int
) -> None:
    submitted: list[str] = []
    submit = h.io_pool.submit

    def counting_submit(func: Callable[..., Any], /, *args: Any) -> Any:
        submitted.append(getattr(func, "__name__", repr(func)))
        return submit(func, *args)

    monkeypatch.setattr(h.io_pool, "submit", counting_submit)

    async def noop() -> None: ...

    await h.runner.run(h.invocation(noop, **options), utcnow())

    assert len(submitted) == hops  # the claim, and the guard only when there is one
    (run,) = h.runs()
    assert run.outcome is Outcome.SUCCESS


# -- guards -----------------------------------------------------------------------------

NOON = datetime(2025, 6, 1, 12, tzinfo=UTC)


async def test_unique_per_day_skips_when_a_success_exists_today(h: Harness) -> None:
    calls: list[int] = []
    earlier = success_of(JOB, NOON - timedelta(hours=6))
    h.backend.save_runs([earlier])

    await h.runner.run(h.invocation(lambda: calls.append(1), unique_per="day"), NOON)

    assert calls == []
    skipped = h.runs()[-1]
    assert skipped.scheduled_time == NOON
    assert skipped.outcome is Outcome.SKIPPED
    assert skipped.error_message == f"already succeeded this day (run {earlier.run_id})"
    only_counted(h, Outcome.SKIPPED)


async def test_unique_per_day_runs_when_the_last_success_was_yesterday(h: Harness) -> None:
    calls: list[int] = []
    h.backend.save_runs([success_of(JOB, NOON - timedelta(hours=13))])

    await h.runner.run(h.invocation(lambda: calls.append(1), unique_per="day"), NOON)

    assert calls == [1]
    assert h.runs()[-1].outcome is Outcome.SUCCESS


async def test_unique_per_hour(h: Harness) -> None:
    calls: list[int] = []
    h.backend.save_runs([success_of(JOB, NOON + timedelta(minutes=5))])
    invocation = h.invocation(lambda: calls.append(1), unique_per="hour")

    await h.runner.run(invocation, NOON + timedelta(minutes=30))
    await h.runner.run(invocation, NOON + timedelta(minutes=65))

    assert calls == [1]
    assert [run.outcome for run in h.runs()] == [
        Outcome.SUCCESS,
        Outcome.SKIPPED,
        Outcome.SUCCESS,
    ]


@pytest.mark.parametrize(
    ("timezone", "runs"), [("UTC", True), ("Europe/Berlin", False)], ids=["utc", "berlin"]
)
async def test_unique_per_day_uses_the_jobs_time_zone(
    make_harness: Callable[..., Harness], timezone: str, runs: bool
) -> None:
    harness = make_harness(timezone=timezone)
    calls: list[int] = []
    # 22:30 UTC on 31 May is already 1 June in Berlin (00:30 CEST).
    harness.backend.save_runs([success_of(JOB, datetime(2025, 5, 31, 22, 30, tzinfo=UTC))])

    await harness.runner.run(harness.invocation(lambda: calls.append(1), unique_per="day"), NOON)

    assert calls == ([1] if runs else [])


async def test_requires_skips_when_the_dependency_has_not_succeeded(h: Harness) -> None:
    calls: list[int] = []
    failed = success_of("load", NOON - timedelta(minutes=30)).model_copy(
        update={"outcome": Outcome.FAILURE}
    )
    h.backend.save_runs([failed])
    invocation = h.invocation(
        lambda: calls.append(1), requires=("load",), requires_within_seconds=3600
    )

    await h.runner.run(invocation, NOON)

    assert calls == []
    (run,) = h.runs()
    assert run.outcome is Outcome.SKIPPED
    assert run.error_message is not None
    assert "dependency 'load' has not succeeded since 2025-06-01T11:00:00" in run.error_message
    only_counted(h, Outcome.SKIPPED)


async def test_requires_runs_when_the_dependency_succeeded_in_the_window(h: Harness) -> None:
    calls: list[int] = []
    h.backend.save_runs([success_of("load", NOON - timedelta(minutes=30))])
    invocation = h.invocation(
        lambda: calls.append(1), requires=("load",), requires_within_seconds=3600
    )

    await h.runner.run(invocation, NOON)

    assert calls == [1]
    assert h.runs()[0].outcome is Outcome.SUCCESS


async def test_requires_skips_when_the_dependency_success_is_too_old(h: Harness) -> None:
    calls: list[int] = []
    h.backend.save_runs([success_of("load", NOON - timedelta(hours=2))])
    invocation = h.invocation(
        lambda: calls.append(1), requires=("load",), requires_within_seconds=3600
    )

    await h.runner.run(invocation, NOON)

    assert calls == []
    assert h.runs()[0].outcome is Outcome.SKIPPED


# -- shutdown ---------------------------------------------------------------------------


async def test_drain_interrupts_a_job_still_running_after_the_grace(h: Harness) -> None:
    started = asyncio.Event()

    async def long_job() -> None:
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(h.runner.run(h.invocation(long_job), utcnow()))
    await asyncio.wait_for(started.wait(), 5)
    assert h.gauge("sundial_job_running") == 1

    left = await h.runner.drain(0.1)

    assert left == 1
    assert task.done()
    (run,) = h.runs()
    assert run.outcome is Outcome.INTERRUPTED
    assert run.error_message == "scheduler shut down"
    assert run.finished_at is not None
    only_counted(h, Outcome.INTERRUPTED)
    assert h.gauge("sundial_job_running") == 0
    assert h.runner.active == set()


async def test_drain_lets_a_job_finish_within_the_grace(h: Harness) -> None:
    started = asyncio.Event()

    async def short_job() -> None:
        started.set()
        await asyncio.sleep(0.1)

    asyncio.create_task(h.runner.run(h.invocation(short_job), utcnow()))  # noqa: RUF006
    await asyncio.wait_for(started.wait(), 5)

    left = await h.runner.drain(5)

    assert left == 0
    assert h.runs()[0].outcome is Outcome.SUCCESS


async def test_drain_during_a_retry_backoff_counts_the_fire_time_once(h: Harness) -> None:
    failed = asyncio.Event()

    async def broken() -> None:
        failed.set()
        raise ConnectionError("upstream refused")

    invocation = h.invocation(broken, retries=1, retry_backoff_seconds=30)
    asyncio.create_task(h.runner.run(invocation, utcnow()))  # noqa: RUF006
    await asyncio.wait_for(failed.wait(), 5)
    await asyncio.sleep(0.05)

    await h.runner.drain(0.1)

    # The fire time ended (its retry never ran): it must count once, as failure or
    # interrupted, or a failing job stays invisible to SundialJobFailed.
    counted = h.count(Outcome.FAILURE) + h.count(Outcome.INTERRUPTED)  # type: ignore[operator]
    assert counted == 1


# -- not blocking -----------------------------------------------------------------------


async def test_a_sync_job_does_not_block_async_jobs(h: Harness) -> None:
    events: list[str] = []
    loop = asyncio.get_running_loop()
    sync_started = asyncio.Event()

    def blocking_job() -> None:
        loop.call_soon_threadsafe(sync_started.set)
        time.sleep(0.5)
        events.append("sync finished")

    async def async_job() -> None:
        await sync_started.wait()  # runs while the sync job sleeps, if the loop is free
        events.append("async finished")

    scheduled = utcnow()

    await asyncio.gather(
        h.runner.run(h.invocation(blocking_job, job_id="blocking"), scheduled),
        h.runner.run(h.invocation(async_job, job_id="quick"), scheduled),
    )

    assert events == ["async finished", "sync finished"]
    assert h.runs("blocking")[0].outcome is Outcome.SUCCESS
    assert h.runs("quick")[0].outcome is Outcome.SUCCESS
    quick = h.runs("quick")[0]
    blocking = h.runs("blocking")[0]
    assert quick.finished_at < blocking.finished_at  # type: ignore[operator]


class SlowHistoryBackend(FakeBackend):
    """Saving runs blocks until ``release`` is set: a backend that has stalled."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def save_runs(self, runs: Sequence[Run]) -> None:
        self.release.wait(10)
        super().save_runs(runs)


async def test_a_stalled_history_write_does_not_slow_the_job(
    make_harness: Callable[..., Harness],
) -> None:
    backend = SlowHistoryBackend()
    harness = make_harness(backend)

    async def job() -> None: ...

    try:
        await asyncio.wait_for(harness.runner.run(harness.invocation(job), utcnow()), 2)
        assert backend.runs == {}
    finally:
        backend.release.set()
    (run,) = harness.runs()
    assert run.outcome is Outcome.SUCCESS


# -- the history writer -----------------------------------------------------------------


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "RETRY_INITIAL_SECONDS", 0.01)
    monkeypatch.setattr(writer_module, "RETRY_MAX_SECONDS", 0.05)


class FlakyBackend(FakeBackend):
    """The first ``failures`` calls to save_runs raise ``error``."""

    def __init__(self, failures: int, error: type[Exception] = BackendError) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.save_calls = 0

    def save_runs(self, runs: Sequence[Run]) -> None:
        self.save_calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error("connection refused")
        super().save_runs(runs)


def finished_run(number: int) -> Run:
    return success_of(JOB, NOON + timedelta(minutes=number))


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("error", [BackendError, RuntimeError], ids=["backend", "bug"])
def test_writer_saves_every_run_after_backend_errors(error: type[Exception]) -> None:
    backend = FlakyBackend(failures=3, error=error)
    errors: list[str] = []
    writer = BackendWriter(backend, errors.append)
    writer.start()
    runs = [finished_run(n) for n in range(20)]

    for run in runs:
        writer.record(run)

    try:
        assert writer.flush(5)
        assert backend.runs == {run.run_id: run for run in runs}
        assert errors == ["write"] * 3
        # The writer is still alive: a later record is saved too.
        late = finished_run(99)
        writer.record(late)
        assert writer.flush(5)
        assert late.run_id in backend.runs
    finally:
        assert writer.stop(2)


class GatedBackend(FakeBackend):
    """The first save_runs call waits for the test, then fails or succeeds."""

    def __init__(self, fail_first: bool) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.entered = threading.Event()
        self.release = threading.Event()
        self.saved: list[Run] = []
        self.first = True

    def save_runs(self, runs: Sequence[Run]) -> None:
        if self.first:
            self.first = False
            self.entered.set()
            self.release.wait(5)
            if self.fail_first:
                raise BackendError("connection reset")
        self.saved.extend(runs)
        super().save_runs(runs)


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("fail_first", [True, False], ids=["write-failed", "write-succeeded"])
def test_writer_keeps_the_newest_version_of_a_run(fail_first: bool) -> None:
    backend = GatedBackend(fail_first)
    writer = BackendWriter(backend, lambda operation: None)
    writer.start()
    running = Run(job_id=JOB, scheduled_time=NOON, started_at=NOON, instance_id=INSTANCE)
    done = running.finish(Outcome.SUCCESS)

    writer.record(running)
    assert backend.entered.wait(5)
    writer.record(done)  # arrives while the older version is being written
    backend.release.set()

    try:
        assert writer.flush(5)
        assert backend.runs[running.run_id].outcome is Outcome.SUCCESS
        assert backend.saved[-1] == done
    finally:
        writer.stop(2)


@pytest.mark.usefixtures("fast_retries")
def test_writer_holds_runs_while_the_backend_is_down() -> None:
    backend = FakeBackend()
    backend.down = True
    errors: list[str] = []
    writer = BackendWriter(backend, errors.append)
    writer.start()
    run = finished_run(1)

    writer.record(run)

    try:
        assert not writer.flush(0.3)
        assert errors and set(errors) == {"write"}
        backend.down = False
        assert writer.flush(5)
        assert backend.runs == {run.run_id: run}
    finally:
        assert writer.stop(2)


def test_writer_applies_catalog_changes_in_order() -> None:
    backend = FakeBackend()
    writer = BackendWriter(backend, lambda operation: None)
    trigger = IntervalSpec(seconds=60)
    view = JobView(
        id="gone", name="Gone", func="x:y", trigger=trigger, trigger_text=trigger.describe()
    )
    kept = view.model_copy(update={"id": "kept"})

    writer.save_job(view)
    writer.save_job(kept)
    writer.delete_job("gone")  # newer than the save: the job must not come back
    writer.start()

    try:
        assert writer.flush(5)
        assert set(backend.jobs) == {"kept"}
    finally:
        writer.stop(2)
