"""Scheduling lag and throughput: N jobs due at every whole second, both sides.

Lag is a run's start minus its fire time. For Sundial it comes from the run history the
scheduler recorded (``started_at - scheduled_time``); for plain APScheduler from the
coroutine's own clock. Fire times of the window that had not started when the worker
gave up count with the lag they had reached by then (a lower bound), so a side that
falls behind shows it in p99 instead of dropping out of the statistics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.runner import run_worker
from benchmarks.stats import load, percentile

SIDES = ("sundial", "plain")
#: p99 lag above this means the side does not sustain the rate (issue 7)
SUSTAINED_P99_SECONDS = 1.0


@dataclass(frozen=True)
class LagPlan:
    warmup: float
    fires: int
    patience: float


@dataclass(frozen=True)
class LagResult:
    side: str
    backend: str
    jobs: int
    expected: int
    started: int
    recorded: int | None
    p50_s: float | None
    p99_s: float | None
    max_s: float | None
    achieved_per_s: float
    setup_s: float
    history_flush_s: float | None
    load: str

    @property
    def sustained(self) -> bool:
        return (
            self.started == self.expected
            and self.p99_s is not None
            and self.p99_s <= SUSTAINED_P99_SECONDS
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"sustained": self.sustained}


def measure_lag(
    side: str, backend: str, url: str, jobs: int, plan: LagPlan, *, log: Path
) -> LagResult:
    before = load()
    raw = run_worker(
        [
            "lag",
            side,
            url,
            f"--jobs={jobs}",
            f"--warmup={plan.warmup}",
            f"--fires={plan.fires}",
            f"--patience={plan.patience}",
        ],
        log=log,
        timeout=jobs / 20 + plan.warmup + plan.fires + plan.patience + 120,
    )
    return summarise(side, backend, jobs, raw, before)


def summarise(side: str, backend: str, jobs: int, raw: dict[str, Any], before: str) -> LagResult:
    start, end = raw["window"]
    deadline: float = raw["deadline"]
    recorded: list[tuple[float, float]] = [(s, t) for s, t in raw["starts"]]
    probed: list[tuple[float, float]] = [(s, t) for s, t in raw["probe_starts"]]
    # Sundial's lag is read from its run history; should history have lost runs, the
    # job's own clock stands in (and ``recorded`` shows the loss).
    starts = recorded if len(recorded) >= len(probed) else probed
    lags = [started - scheduled for scheduled, started in starts]
    # Fire times not started by the deadline: at least this late.
    per_second = Counter(int(scheduled) for scheduled, _ in starts)
    for second in range(start, end):
        lags.extend([deadline - second] * max(0, jobs - per_second[second]))
    started = len(probed)
    all_started = started >= raw["expected"]
    last = max((moment for _, moment in starts), default=deadline) if all_started else deadline
    span = max(float(end - start), last - start)
    return LagResult(
        side=side,
        backend=backend,
        jobs=jobs,
        expected=int(raw["expected"]),
        started=started,
        recorded=len(recorded) if side == "sundial" else None,
        p50_s=percentile(lags, 0.50),
        p99_s=percentile(lags, 0.99),
        max_s=max(lags, default=None),
        achieved_per_s=round(started / span, 1),
        setup_s=round(float(raw["setup_s"]), 2),
        history_flush_s=round(float(raw["stop_s"]), 2) if side == "sundial" else None,
        load=f"{before} -> {load()}",
    )
