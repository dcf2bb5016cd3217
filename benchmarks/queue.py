"""The queue executor: runs dispatched to ``sundial-worker`` processes, timed from outside.

A ``sundial-scheduler`` process schedules N jobs due every second (``queue_jobs``) with
``SUNDIAL_EXECUTOR=queue`` and one or two workers take the runs; the same scheduler with
the local executor, and plain APScheduler, run the same load for comparison. Dispatch lag
is a run's recorded start on the worker minus its fire time, read from run history the
way the lag benchmark reads the local executor's. The scheduler's own CPU time (user and
system, from ``/proc``) over the measured window, divided by the runs due in it, is its
cost per run; the workers' CPU is read the same way.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.failover import cluster_helpers
from benchmarks.lag import LagPlan, LagResult, measure_lag, summarise
from benchmarks.report import Row
from benchmarks.runner import REPO
from benchmarks.scratch import Scratch
from benchmarks.stats import load
from benchmarks.worker import recorded_runs, window_after

#: the benchmark's scheduler leads alone; the default lease
LEASE_SECONDS = 10.0
#: how long a scheduler and its workers may take to be ready (a fresh backend's set-up)
START_SECONDS = 120.0
POLL_SECONDS = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class QueuePlan:
    #: jobs due every second for the lag and CPU rows, on every side
    rate: int
    #: rates tried for sustained throughput: up from ``rate`` until one is not sustained,
    #: or down until one is
    ladder: tuple[int, ...]
    workers: tuple[int, ...]
    lag: LagPlan
    #: local and queue measurements at ``rate`` taken in turns for the CPU ratio
    cpu_pairs: int

    @classmethod
    def full(cls) -> QueuePlan:
        return cls(
            rate=100,
            ladder=(25, 50, 100, 150, 200, 300, 400, 600, 800),
            workers=(1, 2),
            # a longer window than the lag rows': CPU time is read in 10 ms ticks, and the
            # scheduler's start-up work must be over before it is read
            lag=LagPlan(warmup=5, fires=10, patience=5),
            cpu_pairs=3,
        )

    @classmethod
    def quick(cls) -> QueuePlan:
        return cls(
            rate=100,
            ladder=(),
            workers=(1, 2),
            lag=LagPlan(warmup=2, fires=3, patience=2),
            cpu_pairs=1,
        )

    def next_rate(self, tried: dict[int, bool]) -> int | None:
        """The next rate of the ladder to try, given which rates were sustained: up from
        the highest sustained one until one is not, down while none is."""
        ok = [rate for rate, sustained in tried.items() if sustained]
        if not ok:
            return max((rate for rate in self.ladder if rate < min(tried)), default=None)
        if any(rate > max(ok) for rate in tried):
            return None
        return min((rate for rate in self.ladder if rate > max(ok)), default=None)


@dataclass(frozen=True)
class Dispatch:
    """One measured window: lag, and CPU seconds of the scheduler and of the workers."""

    executor: str
    workers: int
    lag: LagResult
    scheduler_cpu_s: float
    workers_cpu_s: float

    @property
    def runs(self) -> int:
        return self.lag.expected

    @property
    def scheduler_cpu_per_run_s(self) -> float:
        return self.scheduler_cpu_s / self.runs

    @property
    def workers_cpu_per_run_s(self) -> float | None:
        return self.workers_cpu_s / self.runs if self.workers else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "lag": self.lag.as_dict(),
            "scheduler_cpu_per_run_s": self.scheduler_cpu_per_run_s,
            "workers_cpu_per_run_s": self.workers_cpu_per_run_s,
        }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name in parentheses may hold spaces; the fields after it do not.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def measure_dispatch(
    backend: str,
    url: str,
    *,
    executor: str,
    workers: int,
    jobs: int,
    plan: LagPlan,
    workdir: Path,
) -> Dispatch:
    """``jobs`` jobs due every second on one scheduler process and ``workers`` workers."""
    failover = cluster_helpers()
    before = load()
    workdir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "lease_seconds": LEASE_SECONDS,
        "job_modules": "benchmarks.queue_jobs",
        "env": {
            "SUNDIAL_EXECUTOR": executor,
            "SUNDIAL_BENCH_JOBS": str(jobs),
            "SUNDIAL_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(REPO),
        },
    }
    with (
        failover.Cluster(url, workdir, size=1, **options) as scheduler,
        failover.Cluster(
            url, workdir, size=workers, kind=failover.WORKER, name="worker", **options
        ) as pool,
    ):
        scheduler.wait_for_role("leader", within=START_SECONDS)
        _wait_ready(scheduler, pool)
        start, end = window_after(plan.warmup, plan.fires)
        processes = [scheduler.slots[0].process.pid] + [r.process.pid for r in pool.live()]
        sleep_until(start)
        at_start = [cpu_seconds(pid) for pid in processes]
        sleep_until(end)
        at_end = [cpu_seconds(pid) for pid in processes]
        expected = jobs * plan.fires
        while True:
            scheduler.check_alive()
            pool.check_alive()
            found, not_run = recorded_runs(url, start, end)
            deadline = time.time()
            if len(found) >= expected or deadline > end + plan.patience:
                break
            time.sleep(POLL_SECONDS)
    used = [after - begun for begun, after in zip(at_start, at_end, strict=True)]
    raw = {
        "window": [start, end],
        "deadline": deadline,
        "expected": expected,
        "starts": found,
        "probe_starts": found,
        "setup_s": 0.0,
        "stop_s": 0.0,
        "not_run": not_run,
    }
    side = f"{executor} x{workers}" if workers else executor
    return Dispatch(
        executor=executor,
        workers=workers,
        lag=summarise(side, backend, jobs, raw, before),
        scheduler_cpu_s=round(used[0], 3),
        workers_cpu_s=round(sum(used[1:]), 3),
    )


def _wait_ready(scheduler: Any, pool: Any) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not all(replica.ready() for replica in pool.live()):
        scheduler.check_alive()
        pool.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not ready within {START_SECONDS:.0f}s")
        time.sleep(POLL_SECONDS)


@dataclass
class QueueBench:
    """The queue rows of one backend: lag and CPU at one rate beside the local executor and
    plain APScheduler, then the highest rate each worker count sustains."""

    plan: QueuePlan
    scratch: Scratch
    workdir: Path
    log: Callable[[str], None]
    fail: Callable[[str], None]
    rows: list[Row] = field(default_factory=list)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: the measurement at the plan's rate of each worker count beyond the first
    cpu: dict[int, Dispatch | None] = field(default_factory=dict)

    def dispatch(self, backend: str, executor: str, workers: int, jobs: int) -> Dispatch | None:
        name = f"{executor} executor" + (f", {workers} worker(s)" if workers else "")
        self.log(f"{backend}: {name}, {jobs:,} jobs due every second")
        try:
            with self.scratch.backend(backend) as url:
                result = measure_dispatch(
                    backend,
                    url,
                    executor=executor,
                    workers=workers,
                    jobs=jobs,
                    plan=self.plan.lag,
                    workdir=self.workdir / f"queue-{backend}-{executor}-{workers}-{jobs}",
                )
        except Exception as error:  # one failed scenario must not end the whole run
            self.fail(f"{backend} {name} at {jobs} failed: {error}")
            return None
        self.details.setdefault("dispatch", []).append(result.as_dict())
        lag = result.lag
        self.log(
            f"  p50 {_ms(lag.p50_s)} p99 {_ms(lag.p99_s)}, {lag.achieved_per_s:,.0f} runs/s, "
            f"{lag.started}/{lag.expected} started; scheduler CPU "
            f"{_ms(result.scheduler_cpu_per_run_s)}/run"
        )
        return result

    def plain(self, backend: str, jobs: int) -> LagResult | None:
        self.log(f"{backend}: plain APScheduler, {jobs:,} jobs due every second")
        try:
            with self.scratch.backend(backend) as url:
                result = measure_lag(
                    "plain", backend, url, jobs, self.plan.lag, log=self.workdir / "workers.log"
                )
        except Exception as error:
            self.fail(f"{backend} plain at {jobs} failed: {error}")
            return None
        self.details.setdefault("plain", []).append(result.as_dict())
        return result

    def run(self, backend: str) -> None:
        rate, first = self.plan.rate, self.plan.workers[0]
        # CPU time per run drifts with the machine's load: local and queue are measured
        # in turns, and each pair gives one ratio.
        pairs = [
            (self.dispatch(backend, "local", 0, rate), self.dispatch(backend, "queue", first, rate))
            for _ in range(self.plan.cpu_pairs)
        ]
        local = next((one for one, _ in pairs if one is not None), None)
        plain = self.plain(backend, rate)
        for name, fraction in (("p50", "p50_s"), ("p99", "p99_s")):
            self.rows.append(
                Row(
                    backend,
                    f"local executor: start lag {name}, {rate} due/s",
                    "s",
                    getattr(local.lag if local else None, fraction, None),
                    getattr(plain, fraction, None),
                    "scheduler process, job module, no workers" if name == "p50" else "",
                )
            )
        for workers in self.plan.workers:
            at_rate = [queued for _, queued in pairs] if workers == first else []
            self.worker_rows(backend, workers, local, plain, at_rate)
        self.cpu_rows(backend, pairs)

    def worker_rows(
        self,
        backend: str,
        workers: int,
        local: Dispatch | None,
        plain: LagResult | None,
        measured_at_rate: list[Dispatch | None],
    ) -> None:
        rate = self.plan.rate
        pool = _pool(workers)
        at_rate = next((one for one in measured_at_rate if one is not None), None)
        if not measured_at_rate:
            at_rate = self.dispatch(backend, "queue", workers, rate)
            self.cpu[workers] = at_rate
        measured: dict[int, Dispatch] = {}
        tried: dict[int, bool] = {}
        if at_rate is not None:
            measured[rate], tried[rate] = at_rate, at_rate.lag.sustained
        while tried and (jobs := self.plan.next_rate(tried)) is not None:
            result = self.dispatch(backend, "queue", workers, jobs)
            tried[jobs] = result is not None and result.lag.sustained
            if result is not None:
                measured[jobs] = result
        for name, fraction in (("p50", "p50_s"), ("p99", "p99_s")):
            ours = getattr(at_rate.lag if at_rate else None, fraction, None)
            theirs = getattr(local.lag if local else None, fraction, None)
            self.rows.append(
                Row(
                    backend,
                    f"{pool}: dispatch lag {name}, {rate} due/s",
                    "s",
                    ours,
                    getattr(plain, fraction, None),
                    f"worker start - fire time; local executor {_ms(theirs)}",
                )
            )
        best = max(
            (r for r in measured.values() if r.lag.sustained),
            key=lambda r: r.lag.jobs,
            default=None,
        )
        above = sorted(
            n for n, ok in tried.items() if not ok and (best is None or n > best.lag.jobs)
        )
        if best is None:
            note = f"none of {sorted(tried)}/s sustained"
        else:
            limit = f", not {above[0]:,}/s" if above else " (highest tried)"
            per_worker = best.lag.achieved_per_s / workers
            note = f"{best.lag.jobs:,}/s sustained{limit}; {per_worker:,.0f}/s per worker"
        self.rows.append(
            Row(
                backend,
                f"{pool}: sustained runs/s (lag p99 ≤ 1 s)",
                "runs/s",
                best.lag.achieved_per_s if best else None,
                None,
                note,
            )
        )

    def cpu_rows(self, backend: str, pairs: list[tuple[Dispatch | None, Dispatch | None]]) -> None:
        """The scheduler's CPU per run on the queue executor against the local executor's:
        the median of the paired ratios for the first worker count, the median local
        figure for the others."""
        rate, first = self.plan.rate, self.plan.workers[0]
        locals_ = [one.scheduler_cpu_per_run_s for one, _ in pairs if one is not None]
        local_cpu = statistics.median(locals_) if locals_ else None
        both = [(one, queued) for one, queued in pairs if one is not None and queued is not None]
        for workers in self.plan.workers:
            if workers == first:
                measured = [queued for _, queued in both]
                ratios = [
                    queued.scheduler_cpu_per_run_s / one.scheduler_cpu_per_run_s
                    for one, queued in both
                ]
                how = f"median of {len(ratios)} pairs taken in turns"
            else:
                measured = [one for one in [self.cpu.get(workers)] if one is not None]
                ratios = (
                    [measured[0].scheduler_cpu_per_run_s / local_cpu]
                    if measured and local_cpu
                    else []
                )
                how = "against the local median"
            cpu = (
                statistics.median(m.scheduler_cpu_per_run_s for m in measured) if measured else None
            )
            parts = [f"local executor {_ms(local_cpu)}"]
            if ratios:
                parts.append(
                    f"queue ÷ local {statistics.median(ratios):.2f}x ({how}: "
                    + ", ".join(f"{ratio:.2f}" for ratio in ratios)
                    + "; target ≤ 0.5x)"
                )
            workers_cpu = [m.workers_cpu_per_run_s for m in measured if m.workers_cpu_per_run_s]
            if workers_cpu:
                parts.append(f"workers {_ms(statistics.median(workers_cpu))}/run")
            self.rows.append(
                Row(
                    backend,
                    f"{_pool(workers)}: scheduler CPU per run, {rate} due/s",
                    "s",
                    cpu,
                    None,
                    "; ".join(parts),
                )
            )


def _pool(workers: int) -> str:
    return f"queue, {workers} worker{'s' if workers > 1 else ''}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.1f} ms"
