"""Private Postgres and Redis servers that a test can crash and start again.

The machine's shared servers serve every other test; these run on a free port of their
own, in a scratch directory, for as long as the ``with`` block.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from failover import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# A run recorded while the server was up must survive the crash: Redis writes every
# command to its append-only file before answering (a server with neither AOF nor RDB
# forgets everything on restart, and no scheduler could keep a record then).
REDIS_DURABLE = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")


@dataclass
class Server:
    """A private backend server the test can crash and start again."""

    url: str
    crash: Callable[[], None]
    start: Callable[[], None]


def wait_ready(check: Callable[[], object], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            check()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def redis_server() -> Iterator[Server]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sundial-redis-"))
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    process: subprocess.Popen[bytes] | None = None
    url = f"redis://127.0.0.1:{port}/0"

    def start() -> None:
        nonlocal process
        log = (workdir / "redis.log").open("ab")
        process = subprocess.Popen([*command, *REDIS_DURABLE], stdout=log, stderr=log)
        wait_ready(redis.Redis.from_url(url).ping)

    def crash() -> None:
        assert process is not None
        process.kill()
        process.wait()

    start()
    try:
        yield Server(url, crash, start)
    finally:
        if process is not None and process.poll() is None:
            crash()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[Server]:
    if not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    # Postgres refuses to run as root: as root, run it as the machine's postgres user.
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run a server as")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sundial-pg-"))
    if prefix:
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
    data = workdir / "data"

    def pg(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    pg(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def start() -> None:
        log = str(workdir / "postgres.log")
        pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", log, "-w", "start")

    def crash() -> None:
        # "immediate" is a crash for the clients: every backend dies at once, no
        # checkpoint; the next start recovers from the WAL.
        pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")

    start()
    try:
        yield Server(url, crash, start)
    finally:
        subprocess.run(
            [*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(workdir, ignore_errors=True)
