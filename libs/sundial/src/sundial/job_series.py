"""Per-job series, held as a few numbers per job and rendered only when scraped.

A leader may hold a hundred thousand jobs. One ``prometheus_client`` child per job and
series costs tens of kilobytes per job (each child keeps its own lock, value objects
and label tuple) and makes a scrape format millions of sample objects. Here each job is
one slotted record of plain numbers; :class:`JobSeries` is a collector that builds the
metric families from them on demand (for ``registry.get_sample_value`` and any other
reader of the registry), and :meth:`JobSeries.text` writes the same series straight in
the text exposition format, which is what the ``/metrics`` route serves.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, compress, repeat
from operator import attrgetter, itemgetter
from typing import Any, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from sundial.models import FINAL_OUTCOMES

#: the client's number format (the one its own histograms' ``le`` labels use)
_go_float = cast(Callable[[float], str], floatToGoString)

#: run durations: sub-second to two hours; the too-long threshold is at least minutes
DURATION_BUCKETS = (0.1, 1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 7200.0)
#: start lag: the lag alert's threshold (30 s) lies below the last bucket
LAG_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0)
OUTCOMES = tuple(outcome.value for outcome in FINAL_OUTCOMES)

INFO_LABELS = ("job_id", "name", "trigger", "critical")


class JobRecord:
    """What the series of one job show; updated in place."""

    __slots__ = (
        "blocked",
        "duration",
        "duration_sum",
        "expected_interval",
        "info",
        "label",
        "lag",
        "lag_sum",
        "last_failure",
        "last_success",
        "next_run",
        "running",
        "runs",
        "timeout",
    )

    def __init__(self, info: tuple[str, str, str, str]) -> None:
        self.info = info
        self.label = f'job_id="{_escape(info[0])}"'
        self.next_run: float | None = None
        self.expected_interval: float | None = None
        self.timeout = 0.0
        self.runs = [0] * len(OUTCOMES)
        self.duration = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.lag = [0] * (len(LAG_BUCKETS) + 1)
        self.lag_sum = 0.0
        #: start times of the runs in progress; None while none runs
        self.running: list[float] | None = None
        self.last_success = 0.0
        self.last_failure = 0.0
        self.blocked = 0.0

    # Bucket counts are kept cumulative (as exposed: each counts what is at most its
    # bound), so that a scrape does no arithmetic per job.
    def observe_duration(self, seconds: float) -> None:
        _observe(self.duration, bisect.bisect_left(DURATION_BUCKETS, seconds))
        self.duration_sum += seconds

    def observe_lag(self, seconds: float) -> None:
        _observe(self.lag, bisect.bisect_left(LAG_BUCKETS, seconds))
        self.lag_sum += seconds


def _observe(cumulative: list[int], first: int) -> None:
    for index in range(first, len(cumulative)):
        cumulative[index] += 1


def _field(name: str) -> Callable[[list[JobRecord]], list[Any]]:
    get = attrgetter(name)
    return lambda records: list(map(get, records))


def _running(records: list[JobRecord]) -> list[float]:
    return [float(len(r.running)) if r.running else 0.0 for r in records]


def _running_since(records: list[JobRecord]) -> list[float]:
    return [min(r.running) if r.running else 0.0 for r in records]


#: (name, help, the value of each record, None for no sample)
_GAUGES: tuple[tuple[str, str, Callable[[list[JobRecord]], list[Any]]], ...] = (
    ("sundial_job_next_run_timestamp_seconds", "Next fire time", _field("next_run")),
    ("sundial_job_running", "Runs in progress", _running),
    (
        "sundial_job_running_since_timestamp_seconds",
        "Start of the oldest run in progress (0 when none)",
        _running_since,
    ),
    (
        "sundial_job_last_success_timestamp_seconds",
        "Last successful finish",
        _field("last_success"),
    ),
    (
        "sundial_job_last_failure_timestamp_seconds",
        "Last failed or timed-out finish",
        _field("last_failure"),
    ),
    (
        "sundial_job_expected_interval_seconds",
        "Usual time between fires",
        _field("expected_interval"),
    ),
    ("sundial_job_timeout_seconds", "Run timeout (0 = none)", _field("timeout")),
)
_BLOCKED = (
    "sundial_job_event_loop_blocked_seconds",
    "Time the event loop was blocked while this async job ran",
)
_HISTOGRAMS = (
    ("sundial_job_duration_seconds", "Run duration", DURATION_BUCKETS, "duration"),
    ("sundial_job_lag_seconds", "Actual start minus scheduled time", LAG_BUCKETS, "lag"),
)


class JobSeries(Collector):
    """Every job's series, from :class:`JobRecord` s kept by job id."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self._lock = threading.Lock()
        self._apart = threading.local()

    def add(self, info: tuple[str, str, str, str]) -> JobRecord:
        """The record of the job ``info`` names, created with every count at 0."""
        record = self.jobs.get(info[0])
        if record is None:
            record = JobRecord(info)
            with self._lock:
                self.jobs[info[0]] = record
        return record

    def remove(self, job_id: str) -> None:
        with self._lock:
            self.jobs.pop(job_id, None)

    def clear(self) -> None:
        with self._lock:
            self.jobs = {}

    def _records(self) -> list[JobRecord]:
        with self._lock:
            return list(self.jobs.values())

    @contextmanager
    def rendered_apart(self) -> Iterator[None]:
        """While inside, :meth:`collect` on this thread yields nothing (see :meth:`text`)."""
        self._apart.on = True
        try:
            yield
        finally:
            self._apart.on = False

    # -- the collector ------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        if getattr(self._apart, "on", False):
            return
        records = self._records()
        info = GaugeMetricFamily("sundial_job_info", "Job metadata", labels=INFO_LABELS)
        for record in records:
            info.add_metric(record.info, 1)
        yield info
        runs = CounterMetricFamily(
            "sundial_job_runs", "Runs by outcome", labels=("job_id", "outcome")
        )
        for record in records:
            for outcome, count in zip(OUTCOMES, record.runs, strict=True):
                runs.add_metric((record.info[0], outcome), count)
        yield runs
        for name, doc, values in _GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=("job_id",))
            for record, number in zip(records, values(records), strict=True):
                if number is not None:
                    gauge.add_metric((record.info[0],), number)
            yield gauge
        blocked = CounterMetricFamily(*_BLOCKED, labels=("job_id",))
        for record in records:
            blocked.add_metric((record.info[0],), record.blocked)
        yield blocked
        for name, doc, bounds, field in _HISTOGRAMS:
            histogram = HistogramMetricFamily(name, doc, labels=("job_id",))
            for record in records:
                cumulative = getattr(record, field)
                histogram.add_metric(
                    (record.info[0],),
                    [
                        (_go_float(bound), float(total))
                        for bound, total in zip((*bounds, math.inf), cumulative, strict=True)
                    ],
                    getattr(record, f"{field}_sum"),
                )
            yield histogram

    # -- the text format, written directly ----------------------------------------------
    def text(self) -> Iterator[bytes]:
        """The same series in the Prometheus text format, a chunk per family or bucket.

        No object is made per sample: each chunk interleaves the jobs' labels and
        values with constant pieces (``zip``, ``repeat``, ``join``), so a scrape of a
        hundred thousand jobs takes well under a second and never holds the whole text.
        """
        records = self._records()
        labels = [r.label for r in records]
        yield b"# HELP sundial_job_info Job metadata\n# TYPE sundial_job_info gauge\n"
        yield "".join(
            f'sundial_job_info{{{r.label},name="{_escape(r.info[1])}",'
            f'trigger="{_escape(r.info[2])}",critical="{r.info[3]}"}} 1.0\n'
            for r in records
        ).encode()
        name = "sundial_job_runs_total"
        yield f"# HELP {name} Runs by outcome\n# TYPE {name} counter\n".encode()
        runs = _columns([r.runs for r in records], len(OUTCOMES))
        for outcome, counts in zip(OUTCOMES, runs, strict=True):
            yield _lines(f"{name}{{", labels, f',outcome="{outcome}"}} ', counts)
        for name, doc, values in _GAUGES:
            yield f"# HELP {name} {doc}\n# TYPE {name} gauge\n".encode()
            yield _lines(f"{name}{{", labels, "} ", values(records))
        name = f"{_BLOCKED[0]}_total"
        yield f"# HELP {name} {_BLOCKED[1]}\n# TYPE {name} counter\n".encode()
        yield _lines(f"{name}{{", labels, "} ", _field("blocked")(records))
        for name, doc, bounds, field in _HISTOGRAMS:
            yield f"# HELP {name} {doc}\n# TYPE {name} histogram\n".encode()
            cumulative = _columns([getattr(r, field) for r in records], len(bounds) + 1)
            for bound, counts in zip((*bounds, math.inf), cumulative, strict=True):
                le = f',le="{_go_float(bound)}"}} '
                yield _lines(f"{name}_bucket{{", labels, le, counts)
            yield _lines(f"{name}_count{{", labels, "} ", cumulative[-1])
            yield _lines(f"{name}_sum{{", labels, "} ", _field(f"{field}_sum")(records))


def _columns(rows: list[list[int]], width: int) -> list[list[int]]:
    """``rows`` (each ``width`` long) transposed: a list per position, across the rows.

    Read a position at a time rather than by ``zip(*rows)``, which makes an iterator
    per row: a hundred thousand new objects that the garbage collector tracks start
    its full collections, each walking every object of the process.
    """
    return [list(map(itemgetter(position), rows)) for position in range(width)]


def _lines(head: str, labels: list[str], middle: str, values: Sequence[float | None]) -> bytes:
    """``head + label + middle + value`` on a line per job, joined without a loop in Python.

    A job whose value is None gets no line.
    """
    if None in values:
        labels = list(compress(labels, [value is not None for value in values]))
        values = [value for value in values if value is not None]
    if not values:
        return b""
    if values.count(values[0]) == len(values):
        # Every job shows the same number (counts at rest): one join over the labels.
        tail = f"{middle}{values[0]!r}\n"
        return (head + (tail + head).join(labels) + tail).encode()
    pieces = zip(repeat(head), labels, repeat(middle), map(repr, values), repeat("\n"))
    return "".join(chain.from_iterable(pieces)).encode()


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value
