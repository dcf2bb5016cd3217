"""Layered fixtures: service URL (given or from testcontainers) -> isolated URL -> backend.

CI sets ``SUNDIAL_TEST_POSTGRES_URL`` and ``SUNDIAL_TEST_REDIS_URL`` to the machine's
servers; without them the suite starts containers (images from
``SUNDIAL_TEST_POSTGRES_IMAGE`` / ``SUNDIAL_TEST_REDIS_IMAGE``).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from sundial.backends import Backend, open_backend

POSTGRES_IMAGE = os.environ.get("SUNDIAL_TEST_POSTGRES_IMAGE", "postgres:16-alpine")
REDIS_IMAGE = os.environ.get("SUNDIAL_TEST_REDIS_IMAGE", "redis:7-alpine")
# Test processes take Redis databases 1-12 (0 is left alone, 13-15 are the benchmark's),
# one each, held by a lock file for as long as the process runs.
REDIS_TEST_DBS = range(1, 13)
BACKENDS = ("sqlite", "postgres", "redis")
#: where the unit tests live, as their node ids begin
UNIT_PREFIX = "tests/unit/"
#: the order in which the kinds of test run: under ``-n``, what runs beside the unit
#: tests is the integration suite, which takes a busy machine in its stride best
ORDER = ("tests/integration/", "tests/e2e/", UNIT_PREFIX)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(
        key=lambda item: next(
            (rank for rank, prefix in enumerate(ORDER) if item.nodeid.startswith(prefix)),
            len(ORDER),
        )
    )


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How ``pytest -n N`` (``make test``) shares the tests out.

    The integration and end-to-end tests run schedulers, fleets of real processes and
    servers, and bound how long behaviour may take: they form one unit and run one after
    another on one worker, as they would without ``-n``. The unit tests, modules whole,
    run on the other workers beside them.
    """
    from xdist.scheduler import LoadScopeScheduling

    class UnitTestsBeside(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.startswith(UNIT_PREFIX) else "services"

    return UnitTestsBeside(config, log)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A Postgres server URL (``postgresql+psycopg://``) that may create databases."""
    url = os.environ.get("SUNDIAL_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver="psycopg") as container:
        yield container.get_connection_url()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    url = os.environ.get("SUNDIAL_TEST_REDIS_URL")
    if url:
        yield url
        return
    from testcontainers.community.redis import RedisContainer

    with RedisContainer(REDIS_IMAGE) as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"sundial_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_server_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_test_db() -> Iterator[int]:
    """A Redis database number that no other test process on this machine uses meanwhile.

    Every test empties its database, so two test runs at once (CI beside a developer's
    run) must never share one.
    """
    for db in REDIS_TEST_DBS:
        path = os.path.join(tempfile.gettempdir(), f"sundial-test-redis-db-{db}.lock")
        with open(path, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            yield db
            return
    raise RuntimeError(
        f"every test Redis database ({REDIS_TEST_DBS.start}-{REDIS_TEST_DBS.stop - 1}) is "
        "in use by another test run on this machine"
    )


@pytest.fixture
def redis_url(redis_server_url: str, redis_test_db: int) -> Iterator[str]:
    """A Redis database of its own, empty at the start of the test."""
    url = redis_server_url.rsplit("/", 1)[0] + f"/{redis_test_db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sundial.db'}"


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    """The URL of an isolated backend of each kind in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def backend(backend_url: str) -> Iterator[Backend]:
    """A set-up backend of each kind in turn."""
    instance = open_backend(backend_url)
    instance.setup()
    yield instance
    instance.close()
