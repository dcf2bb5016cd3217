"""``python -m benchmarks``: run every measurement on each backend, print the table."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import sustained
from benchmarks.catalog import fill, plain_api, sundial_api
from benchmarks.failover import measure_failover
from benchmarks.lag import SIDES, LagPlan, LagResult, measure_lag
from benchmarks.memory import measure_memory
from benchmarks.monitor import measure_monitor, measure_monitor_parts
from benchmarks.queue import QueueBench, QueuePlan
from benchmarks.report import Row, render
from benchmarks.scratch import BACKENDS, Scratch
from benchmarks.stats import load
from benchmarks.worker import production_logging

#: throughput search: each step up multiplies the jobs due per second by this
STEP_UP = 1.5
STEP_UP_LIMIT = 3
STEP_DOWN = (2, 5, 10)
SMALLEST_STEP = 10
#: split a bracket [sustained, not sustained] once when its ends are this far apart
SPLIT_ABOVE = 1.3
#: the default SUNDIAL_LEADER_LEASE_SECONDS; the failover target is stated against it
LEASE_SECONDS = 10.0
#: the table's width when stdout is not a terminal (rich would assume 80 columns)
TABLE_WIDTH = 180
#: what ``--only`` can pick; every one runs by default, on each backend in this order
SCENARIOS = ("lag", "stored", "monitor", "queue", "failover", "sustained")


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    lag: LagPlan
    search: bool
    catalog_jobs: int
    api_repeats: int
    full_reads: int
    kills: int
    #: times the leader is paused (SIGSTOP) for the partitioned-but-alive failover rows
    pauses: int
    queue: QueuePlan
    short: bool = False

    @classmethod
    def full(cls) -> Plan:
        return cls(
            sizes=(500, 1_000, 2_000),
            lag=LagPlan(warmup=3, fires=6, patience=5),
            search=True,
            catalog_jobs=100_000,
            api_repeats=50,
            full_reads=3,
            kills=5,
            pauses=3,
            queue=QueuePlan.full(),
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            sizes=(1_000,),
            lag=LagPlan(warmup=2, fires=3, patience=2),
            search=False,
            catalog_jobs=10_000,
            api_repeats=20,
            full_reads=2,
            kills=0,
            pauses=0,
            queue=QueuePlan.quick(),
            short=True,
        )


@dataclass
class Bench:
    plan: Plan
    scratch: Scratch
    workdir: Path
    console: Console
    scenarios: tuple[str, ...] = SCENARIOS
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        self.console.log(f"{message}  [dim]({load()})[/dim]")

    def detail(self, backend: str, key: str, value: Any) -> None:
        self.details.setdefault(backend, {}).setdefault(key, []).append(value)

    # -- lag and throughput -------------------------------------------------------------
    def lag(self, backend: str, side: str, jobs: int) -> LagResult | None:
        self.log(f"{backend}: {side}, {jobs:,} jobs due every second")
        try:
            with self.scratch.backend(backend) as url:
                result = measure_lag(
                    side, backend, url, jobs, self.plan.lag, log=self.workdir / "workers.log"
                )
        except Exception as error:  # one failed scenario must not end the whole run
            self.console.log(f"[red]{backend} {side} lag at {jobs} failed: {error}[/red]")
            return None
        self.detail(backend, "lag", result.as_dict())
        self.log(
            f"  p50 {_ms(result.p50_s)} p99 {_ms(result.p99_s)}, "
            f"{result.achieved_per_s:,.0f} runs/s, {result.started}/{result.expected} started"
            + (f", {result.recorded} recorded" if result.recorded is not None else "")
        )
        return result

    def lag_rows(self, backend: str) -> dict[str, dict[int, LagResult]]:
        measured: dict[str, dict[int, LagResult]] = {side: {} for side in SIDES}
        for jobs in self.plan.sizes:
            for side in SIDES:
                if (result := self.lag(backend, side, jobs)) is not None:
                    measured[side][jobs] = result
            sundial, plain = measured["sundial"].get(jobs), measured["plain"].get(jobs)
            note = _lag_note(sundial, plain)
            for name, fraction in (("p50", "p50_s"), ("p99", "p99_s")):
                self.rows.append(
                    Row(
                        backend,
                        f"lag {name}, {jobs:,} due at once",
                        "s",
                        getattr(sundial, fraction, None),
                        getattr(plain, fraction, None),
                        note if name == "p99" else "",
                    )
                )
        return measured

    def throughput_row(self, backend: str, measured: dict[str, dict[int, LagResult]]) -> None:
        best: dict[str, LagResult | None] = {}
        notes = []
        for side in SIDES:
            results = measured[side]
            if self.plan.search and results:
                self._search(backend, side, results)
            sustained = [r for r in results.values() if r.sustained]
            best[side] = max(sustained, key=lambda r: r.jobs, default=None)
            notes.append(_throughput_note(side, best[side], results))
        self.rows.append(
            Row(
                backend,
                "sustained runs/s (lag p99 ≤ 1 s)",
                "runs/s",
                best["sundial"].achieved_per_s if best["sundial"] else None,
                best["plain"].achieved_per_s if best["plain"] else None,
                "; ".join(notes),
            )
        )

    def _search(self, backend: str, side: str, results: dict[int, LagResult]) -> None:
        """Bracket the highest sustained rate (step down or up), then split the bracket once."""

        def attempt(jobs: int) -> bool:
            result = self.lag(backend, side, jobs)
            if result is not None:
                results[jobs] = result
            return result is not None and result.sustained

        ok = [n for n, r in results.items() if r.sustained]
        if not ok:
            smallest = min(results)
            for divisor in STEP_DOWN:
                jobs = smallest // divisor
                if jobs < SMALLEST_STEP or attempt(jobs):
                    break
        elif max(ok) == max(results):
            jobs = max(ok)
            for _ in range(STEP_UP_LIMIT):
                jobs = int(round(jobs * STEP_UP, -2))
                if not attempt(jobs):
                    break
        ok = [n for n, r in results.items() if r.sustained]
        above = [n for n in results if ok and n > max(ok)]
        if ok and above and min(above) > max(ok) * SPLIT_ABOVE:
            attempt(int(round((max(ok) + min(above)) / 2, -1)))

    # -- stored jobs: API and memory ---------------------------------------------------
    def stored_rows(self, backend: str) -> None:
        count = self.plan.catalog_jobs
        rng = random.Random(7)
        try:
            self.log(f"{backend}: scheduler memory with no stored jobs")
            with self.scratch.backend(backend) as url:
                baseline = {
                    side: measure_memory(side, url, log=self.workdir / "workers.log")
                    for side in SIDES
                }
            self.log(f"{backend}: filling catalog and store with {count:,} jobs")
            with self.scratch.backend(backend) as url:
                filled = fill(url, count)
                self.detail(backend, "fill", filled | {"jobs": count})
                self.log(f"{backend}: API vs get_jobs()/get_job() over {count:,} jobs")
                ours = sundial_api(url, count, self.plan.api_repeats, rng)
                theirs = plain_api(url, count, self.plan.api_repeats, self.plan.full_reads, rng)
                self.detail(backend, "api", {"sundial": _plain(ours), "plain": _plain(theirs)})
                self._api_rows(backend, count, ours, theirs)
                self.log(f"{backend}: scheduler memory with {count:,} stored jobs")
                memory = {
                    side: measure_memory(side, url, log=self.workdir / "workers.log")
                    for side in ("plain", "sundial")
                }
                self.detail(backend, "memory", memory | {"baseline": baseline})
                self._memory_rows(backend, count, memory, baseline)
        except Exception as error:
            self.console.log(f"[red]{backend} stored-job benchmarks failed: {error}[/red]")
            self.rows.append(
                Row(backend, f"{count:,} stored jobs", "", None, None, f"failed: {error}")
            )

    def _api_rows(self, backend: str, count: int, ours: Any, theirs: Any) -> None:
        jobs = f"{count:,} jobs"
        for name, fraction in (("p50", "p50_s"), ("p99", "p99_s")):
            self.rows.append(
                Row(
                    backend,
                    f"list: API page of 100 vs get_jobs(), {name}",
                    "s",
                    getattr(ours["list"], fraction),
                    getattr(theirs["list"], fraction),
                    f"{jobs}; get_jobs() reads all" if name == "p50" else "",
                )
            )
        for name, fraction in (("p50", "p50_s"), ("p99", "p99_s")):
            self.rows.append(
                Row(
                    backend,
                    f"one job: API GET /jobs/{{id}} vs get_job(), {name}",
                    "s",
                    getattr(ours["get"], fraction),
                    getattr(theirs["get"], fraction),
                    "API adds run stats" if name == "p50" else "",
                )
            )

    def _memory_rows(
        self, backend: str, count: int, memory: dict[str, Any], baseline: dict[str, Any]
    ) -> None:
        ours, theirs = memory["sundial"], memory["plain"]

        def per_job(side: str, reading: str, value: str) -> float:
            grown = memory[side][reading][value] - baseline[side]["steady"]["VmRSS"]
            return float(grown / count)

        self.rows.append(
            Row(
                backend,
                f"scheduler RSS per job above an empty one, {count:,} jobs",
                "KiB",
                per_job("sundial", "steady", "VmRSS"),
                per_job("plain", "after_get_jobs", "VmHWM"),
                f"empty: Sundial {baseline['sundial']['steady']['VmRSS'] / 1024:,.0f} MiB, "
                f"plain {baseline['plain']['steady']['VmRSS'] / 1024:,.0f} MiB; plain holds "
                "no job between reads: its peak while get_jobs() holds them all; "
                "target ≤ 4 KiB",
            )
        )
        self.rows.append(
            Row(
                backend,
                f"one /metrics scrape, {count:,} jobs",
                "s",
                ours["scrape_s"],
                None,
                f"{ours['scrape_bytes'] / 2**20:,.0f} MiB of text, peak RSS then "
                f"{ours['after_scrape']['VmHWM'] / 1024:,.0f} MiB; plain exports no metrics; "
                "target < 1 s",
            )
        )
        self.rows.append(
            Row(
                backend,
                f"scheduler RSS, {count:,} jobs",
                "MiB",
                ours["steady"]["VmRSS"] / 1024,
                theirs["steady"]["VmRSS"] / 1024,
                f"Sundial leader ready in {ours['ready_s']:.1f}s, "
                f"catalog rewritten by {ours['settled_s']:.1f}s",
            )
        )
        self.rows.append(
            Row(
                backend,
                f"scheduler peak RSS, {count:,} jobs",
                "MiB",
                ours["steady"]["VmHWM"] / 1024,
                theirs["after_get_jobs"]["VmHWM"] / 1024,
                "plain: peak after one get_jobs()",
            )
        )

    # -- the event-loop monitor ---------------------------------------------------------
    def monitor_row(self, backend: str) -> None:
        self.log(f"{backend}: event-loop monitor on vs off")
        try:
            with self.scratch.backend(backend) as url:
                report = measure_monitor(url, log=self.workdir / "workers.log")
        except Exception as error:
            self.console.log(f"[red]{backend} monitor cost failed: {error}[/red]")
            self.rows.append(Row(backend, "event-loop monitor cost", "%", None, None, str(error)))
            return
        parts = measure_monitor_parts()
        self.detail(backend, "monitor", report | {"parts": parts})
        on, off = report["best"]["on"], report["best"]["off"]
        offs = [sample["cpu_s"] for sample in report["samples"]["off"]]
        noise = (max(offs) - min(offs)) / min(offs) * 100 if min(offs) else 0.0
        self.rows.append(
            Row(
                backend,
                f"event-loop monitor: extra CPU, {report['jobs']} async jobs/s",
                "%",
                (on - off) / off * 100 if off else None,
                None,
                f"CPU over {report['seconds']}s: on {on:.2f}s, off {off:.2f}s (best of "
                f"2 each; two off runs differ by {noise:.1f} %); target ≤ 1 %; plain: no monitor",
            )
        )
        # The same cost from the monitor's own work, timed apart (see benchmarks.monitor).
        own = parts["per_run_s"] * report["jobs"] + parts["per_second_s"]
        self.rows.append(
            Row(
                backend,
                f"event-loop monitor: its own work, {report['jobs']} async jobs/s",
                "%",
                own / (off / report["seconds"]) * 100 if off else None,
                None,
                f"{parts['per_run_s'] * 1e6:.2f} µs per run watched, "
                f"{parts['per_second_s'] * 1e3:.2f} ms a second beating; "
                "share of the off run's CPU",
            )
        )

    # -- failover -----------------------------------------------------------------------
    def failover_row(self, backend: str) -> None:
        if self.plan.kills == 0:
            self.rows.append(
                Row(backend, "failover", "s", None, None, "skipped with --quick; see make chaos")
            )
            return
        self._failover(backend, "kill -9", self.plan.kills, stop=False)
        self._failover(backend, "SIGSTOP", self.plan.pauses, stop=True)

    def _failover(self, backend: str, how: str, times: int, *, stop: bool) -> None:
        self.log(f"{backend}: failover, {times} times {how} to the leader")
        try:
            with self.scratch.backend(backend) as url:
                report = measure_failover(
                    url,
                    kills=times,
                    lease_seconds=LEASE_SECONDS,
                    workdir=self.workdir / f"failover-{backend}-{'stop' if stop else 'kill'}",
                    stop=stop,
                )
        except Exception as error:
            self.console.log(f"[red]{backend} failover ({how}) failed: {error}[/red]")
            self.rows.append(Row(backend, f"failover, {how}", "s", None, None, f"failed: {error}"))
            return
        self.detail(backend, "failover_stop" if stop else "failover", report)
        for name, key in (("median", "median_s"), ("max", "max_s")):
            self.rows.append(
                Row(
                    backend,
                    f"failover {name}: {how} → first run of new leader",
                    "s",
                    report[key],
                    None,
                    f"{report['count']} times, lease {LEASE_SECONDS:g}s, "
                    f"{report['duplicates']} fire times run twice; plain: no HA"
                    if name == "median"
                    else ("leader resumed after; fencing holds" if stop else ""),
                )
            )

    # -- the queue executor -------------------------------------------------------------
    def queue_rows(self, backend: str) -> None:
        queue = QueueBench(
            self.plan.queue,
            self.scratch,
            self.workdir,
            log=self.log,
            fail=lambda message: self.console.log(f"[red]{message}[/red]"),
            rows=self.rows,
        )
        queue.run(backend)
        self.details[backend]["queue"] = queue.details

    # -- sustained load, SIGTERM, burst ----------------------------------------------------
    def sustained_rows(self, backend: str) -> None:
        self.log(f"{backend}: sustained load, SIGTERM under it, and a burst")
        try:
            self.rows.extend(
                sustained.rows(self.scratch, backend, self.workdir, quick=self.plan.short)
            )
        except (RuntimeError, OSError) as error:
            self.console.log(f"[red]{backend} sustained load failed: {error}[/red]")
            self.rows.append(Row(backend, "sustained load", "%", None, None, f"failed: {error}"))

    def run(self, backend: str) -> None:
        self.details.setdefault(backend, {})["load_at_start"] = load()
        if "lag" in self.scenarios:
            measured = self.lag_rows(backend)
            self.throughput_row(backend, measured)
        if "stored" in self.scenarios:
            self.stored_rows(backend)
        if "monitor" in self.scenarios:
            self.monitor_row(backend)
        if "queue" in self.scenarios:
            self.queue_rows(backend)
        if "failover" in self.scenarios:
            self.failover_row(backend)
        if "sustained" in self.scenarios:
            self.sustained_rows(backend)
        self.details[backend]["load_at_end"] = load()


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.0f} ms"


def _plain(timings: dict[str, Any]) -> dict[str, Any]:
    return {name: vars(value) for name, value in timings.items()}


def _lag_note(sundial: LagResult | None, plain: LagResult | None) -> str:
    parts = []
    for name, result in (("Sundial", sundial), ("plain", plain)):
        if result is None:
            parts.append(f"{name}: failed")
        elif not result.sustained:
            parts.append(
                f"{name} behind: {result.achieved_per_s:,.0f} runs/s, "
                f"{result.started:,}/{result.expected:,} started"
            )
    if sundial is not None and sundial.recorded is not None and sundial.recorded < sundial.started:
        parts.append(f"history: {sundial.recorded}/{sundial.started} recorded at stop")
    return "; ".join(parts)


def _throughput_note(side: str, best: LagResult | None, results: dict[int, LagResult]) -> str:
    name = "Sundial" if side == "sundial" else "plain"
    if best is None:
        return f"{name}: none of {sorted(results)} sustained"
    above = sorted(n for n, r in results.items() if n > best.jobs and not r.sustained)
    limit = f", not {above[0]:,}" if above else " (highest tried)"
    return f"{name}: {best.jobs:,}/s{limit}"


def _scenarios(text: str) -> tuple[str, ...]:
    picked = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(picked) - set(SCENARIOS))
    if unknown or not picked:
        raise argparse.ArgumentTypeError(f"pick from {', '.join(SCENARIOS)}; not {unknown}")
    return picked


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Sundial against plain APScheduler 3 on the same backend (make bench).",
    )
    parser.add_argument("--quick", action="store_true", help="a one-minute version")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    parser.add_argument(
        "--only",
        type=_scenarios,
        default=SCENARIOS,
        help=f"comma-separated scenarios of {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(part) for part in text.split(",") if part.strip()),
        help="jobs due at the same second, e.g. 500,1000,2000",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    if args.sizes:
        plan = replace(plan, sizes=args.sizes)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    production_logging()  # the API's log lines must not mix with the table or the JSON
    console = Console(stderr=True)
    workdir = Path(tempfile.mkdtemp(prefix="sundial-bench-"))
    bench = Bench(plan, Scratch(), workdir, console, scenarios=args.only)
    started = datetime.now(UTC)
    begun = time.monotonic()
    console.log(f"benchmark logs in {workdir}; {load()}")
    for backend in backends:
        bench.run(backend)
    took = time.monotonic() - begun
    if args.json:
        document = {
            "started_at": started.isoformat(),
            "seconds": round(took, 1),
            "quick": args.quick,
            "sizes": list(plan.sizes),
            "load_at_end": load(),
            "rows": [row.as_dict() for row in bench.rows],
            "details": bench.details,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    render(
        bench.rows,
        title=f"Sundial vs plain APScheduler, {started:%Y-%m-%d %H:%M} UTC, {took:.0f}s, "
        f"{load()} at the end",
        console=Console(width=None if sys.stdout.isatty() else TABLE_WIDTH),
    )
