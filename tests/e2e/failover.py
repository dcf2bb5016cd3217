"""Scheduler replicas as real processes, leader kills, and the arithmetic of failover.

Shared by the failover and outage tests and by the benchmark (``make bench``): a
:class:`Cluster` runs ``python -m sundial_scheduler`` replicas on one backend,
:func:`kill_leaders` kills whichever replica leads at random moments, and the functions
at the end read run history to measure failover and to find duplicate runs, gaps and
unfinished runs.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sundial.backends import Backend, RunCursor
from sundial.models import Outcome, Run

E2E_DIR = Path(__file__).resolve().parent
#: outcomes of runs that really started (missed and skipped fire times never did)
STARTED = frozenset(
    {Outcome.RUNNING, Outcome.SUCCESS, Outcome.FAILURE, Outcome.TIMEOUT, Outcome.INTERRUPTED}
)
PAGE = 1_000
POLL_SECONDS = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Replica:
    """One ``sundial-scheduler`` process."""

    slot: int
    instance_id: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    #: set when the test ended the process on purpose (kill or SIGTERM)
    ended_on_purpose: bool = False

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def readyz(self) -> dict[str, Any]:
        """The ``/readyz`` body (answered while not ready too); empty if no answer."""
        try:
            body = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return body if isinstance(body, dict) else {}

    def role(self) -> str | None:
        """``leader`` or ``standby``, as the replica reports it."""
        role = self.readyz().get("role")
        return role if isinstance(role, str) else None

    def ready(self) -> bool | None:
        """Whether the replica reaches its backend, as it reports it."""
        ready = self.readyz().get("ready")
        return ready if isinstance(ready, bool) else None

    def kill(self) -> datetime:
        """SIGKILL; returns the moment just before the signal."""
        self.ended_on_purpose = True
        moment = now()
        self.process.kill()
        self.process.wait()
        return moment

    def terminate(self) -> datetime:
        self.ended_on_purpose = True
        moment = now()
        self.process.send_signal(signal.SIGTERM)
        return moment

    def events(self) -> list[dict[str, Any]]:
        """The JSON log events written so far."""
        found: list[dict[str, Any]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by SIGKILL
        return found


#: how each kind of process is started, and the variable that sets its metrics port
SCHEDULER = ("sundial_scheduler", "SUNDIAL_METRICS_PORT")
WORKER = ("sundial_scheduler.worker", "SUNDIAL_WORKER_METRICS_PORT")


class Cluster:
    """``size`` replicas on one backend; a killed replica's slot can be started again.

    Scheduler replicas by default; ``kind=WORKER`` starts ``sundial-worker`` processes.
    """

    def __init__(
        self,
        backend_url: str,
        workdir: Path,
        *,
        size: int = 3,
        lease_seconds: float = 3,
        grace_seconds: float = 10,
        job_modules: str = "chaos_jobs",
        env: Mapping[str, str] | None = None,
        kind: tuple[str, str] = SCHEDULER,
        name: str = "replica",
    ) -> None:
        self.backend_url = backend_url
        self.workdir = workdir
        self.size = size
        self.lease_seconds = lease_seconds
        self._module, self._port_variable = kind
        self._name = name
        self._env = {
            "SUNDIAL_BACKEND_URL": backend_url,
            "SUNDIAL_JOB_MODULES": job_modules,
            "SUNDIAL_METRICS_HOST": "127.0.0.1",
            "SUNDIAL_LEADER_LEASE_SECONDS": f"{lease_seconds:g}",
            "SUNDIAL_SHUTDOWN_GRACE_SECONDS": f"{grace_seconds:g}",
            "SUNDIAL_LOG_FORMAT": "json",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(E2E_DIR), os.environ.get("PYTHONPATH")])
            ),
            **(env or {}),
        }
        self.slots: dict[int, Replica] = {}
        self.every: list[Replica] = []  # every replica ever started, for their logs
        self._generation = 0

    def __enter__(self) -> Cluster:
        for slot in range(self.size):
            self.spawn(slot)
        return self

    def __exit__(self, *_: object) -> None:
        for replica in self.every:
            if replica.running:
                replica.process.kill()
                replica.process.wait()

    def spawn(self, slot: int) -> Replica:
        """Start a replica in ``slot`` (a new process with a new instance id)."""
        self._generation += 1
        instance_id = f"{self._name}{slot}-{self._generation}"
        port = free_port()
        log_path = self.workdir / f"{instance_id}.log"
        env = (
            os.environ
            | self._env
            | {
                self._port_variable: str(port),
                "SUNDIAL_INSTANCE_ID": instance_id,
            }
        )
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", self._module],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(slot, instance_id, port, process, log_path)
        self.slots[slot] = replica
        self.every.append(replica)
        return replica

    def live(self) -> list[Replica]:
        return [replica for replica in self.slots.values() if replica.running]

    def check_alive(self) -> None:
        """Fail if any replica exited without being told to."""
        for replica in self.every:
            if not replica.running and not replica.ended_on_purpose:
                tail = replica.log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(
                    f"{replica.instance_id} exited with {replica.process.returncode}:\n{tail}"
                )

    def leader(self) -> Replica | None:
        """The one live replica that says it leads (None while there is not exactly one)."""
        leaders = [replica for replica in self.live() if replica.role() == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def wait_for_role(self, role: str, *, within: float) -> Replica:
        """A live replica that reports ``role`` (``leader``, ``standby``)."""
        deadline = time.monotonic() + within
        while True:
            self.check_alive()
            found = next((r for r in self.live() if r.role() == role), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no replica reported {role} within {within}s")
            time.sleep(POLL_SECONDS)

    def wait_for_leader(
        self,
        backend: Backend,
        *,
        within: float,
        after: datetime | None = None,
        other_than: Replica | None = None,
    ) -> Replica:
        """The leader, once it has started a run (after ``after``, if given).

        ``other_than``: a leader told to stop, which may still start a run or two before
        it notices, is not the successor being waited for.
        """
        deadline = time.monotonic() + within
        while True:
            self.check_alive()
            leader = self.leader()
            if (
                leader is not None
                and leader is not other_than
                and first_start(backend.list_runs(limit=100), after=after, by=leader.instance_id)
            ):
                return leader
            if time.monotonic() > deadline:
                roles = {replica.instance_id: replica.role() for replica in self.live()}
                raise AssertionError(f"no leader running jobs within {within}s; roles: {roles}")
            time.sleep(POLL_SECONDS)

    def stop(self, *, within: float = 30) -> dict[str, int | None]:
        """SIGTERM every live replica; their exit codes (None if one did not exit)."""
        replicas = self.live()
        for replica in replicas:
            replica.terminate()
        codes: dict[str, int | None] = {}
        for replica in replicas:
            try:
                codes[replica.instance_id] = replica.process.wait(timeout=within)
            except subprocess.TimeoutExpired:
                codes[replica.instance_id] = None
        return codes

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every replica's log events called ``name``."""
        found = (event for replica in self.every for event in replica.events())
        return [event for event in found if event.get("event") == name]


@dataclass(frozen=True)
class Kill:
    """A leader killed with SIGKILL."""

    instance_id: str
    at: datetime


def kill_leaders(
    cluster: Cluster,
    backend: Backend,
    *,
    seconds: float,
    rng: random.Random,
    pause: tuple[float, float] = (0.5, 5.0),
    failover_within: float = 30,
    on_kill: Callable[[Kill], None] | None = None,
) -> list[Kill]:
    """For ``seconds``, kill the leader at random moments and start a new replica each time.

    Each kill waits until the new leader has started a run, then a random ``pause``, so
    that every outage is a separate one: the gap checks bound one failover, not several.
    """
    kills: list[Kill] = []
    leader = cluster.wait_for_leader(backend, within=failover_within)
    deadline = time.monotonic() + seconds
    while time.monotonic() + pause[0] < deadline:
        time.sleep(rng.uniform(*pause))
        cluster.check_alive()
        current = cluster.leader()
        if current is not None:
            leader = current
        kill = Kill(leader.instance_id, leader.kill())
        kills.append(kill)
        if on_kill is not None:
            on_kill(kill)
        cluster.spawn(leader.slot)
        leader = cluster.wait_for_leader(backend, within=failover_within, after=kill.at)
    return kills


# -- reading run history ----------------------------------------------------------------
def all_runs(backend: Backend) -> list[Run]:
    """Every run in the backend, newest first."""
    runs: list[Run] = []
    cursor: RunCursor | None = None
    while True:
        page = backend.list_runs(before=cursor, limit=PAGE)
        runs.extend(page)
        if len(page) < PAGE:
            return runs
        cursor = RunCursor(page[-1].scheduled_time, page[-1].run_id)


def first_start(
    runs: Iterable[Run], *, after: datetime | None = None, by: str | None = None, not_by: str = ""
) -> datetime | None:
    """When the first run that really started did so (after ``after``, by/not by an instance)."""
    starts = [
        run.started_at
        for run in runs
        if run.outcome in STARTED
        and run.started_at is not None
        and (after is None or run.started_at > after)
        and (by is None or run.instance_id == by)
        and run.instance_id != not_by
    ]
    return min(starts, default=None)


def failover_seconds(kills: Sequence[Kill], runs: Sequence[Run]) -> list[float]:
    """For each kill, seconds until another instance started a run."""
    seconds: list[float] = []
    for kill in kills:
        started = first_start(runs, after=kill.at, not_by=kill.instance_id)
        if started is None:
            raise AssertionError(f"no run started after the kill of {kill.instance_id}")
        seconds.append((started - kill.at).total_seconds())
    return seconds


def summarise(seconds: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(seconds),
        "median_s": round(statistics.median(seconds), 3) if seconds else None,
        "max_s": round(max(seconds), 3) if seconds else None,
        "values_s": [round(value, 3) for value in seconds],
    }


def duplicate_fire_times(runs: Iterable[Run]) -> list[tuple[str, datetime, list[str]]]:
    """``(job_id, scheduled_time, instance ids)`` run more than once (first attempts)."""
    seen: dict[tuple[str, datetime], list[str]] = defaultdict(list)
    for run in runs:
        if run.outcome in STARTED and run.attempt == 1 and not run.manual:
            seen[(run.job_id, run.scheduled_time)].append(run.instance_id)
    return [(job, at, who) for (job, at), who in sorted(seen.items()) if len(who) > 1]


def longest_gap(
    runs: Iterable[Run], job_id: str, key: Callable[[Run], datetime | None]
) -> tuple[float, datetime | None]:
    """The longest time between consecutive successful runs of ``job_id`` by ``key``.

    Returns the gap in seconds and the moment it began.
    """
    moments = sorted(
        moment
        for run in runs
        if run.job_id == job_id and run.outcome is Outcome.SUCCESS
        if (moment := key(run)) is not None
    )
    gaps = [((b - a).total_seconds(), a) for a, b in itertools.pairwise(moments)]
    return max(gaps, default=(0.0, None), key=lambda gap: gap[0])


def unfinished(runs: Iterable[Run]) -> list[Run]:
    """Runs still ``running`` (every run should have finished or been interrupted)."""
    return [run for run in runs if run.outcome is Outcome.RUNNING or run.finished_at is None]


def write_report(path: Path, name: str, report: Mapping[str, Any]) -> None:
    """Merge ``report`` into the JSON object in ``path`` under ``name``."""
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            existing = {}
    existing[name] = dict(report)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
