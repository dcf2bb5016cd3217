"""Scratch space on the local servers: fresh Postgres databases and a spare Redis db.

Every scenario starts empty: a new Postgres database (all of this run's databases are
dropped at the end) or a flushed Redis database (flushed again at the end).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import redis
import sqlalchemy as sa

POSTGRES_URL_VARIABLE = "SUNDIAL_BENCH_POSTGRES_URL"
REDIS_URL_VARIABLE = "SUNDIAL_BENCH_REDIS_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: the test suite takes Redis databases 1-12 by process id; without an explicit db the
#: benchmark takes an empty one of the rest
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
HIGHEST_REDIS_DB = 15
LOWEST_REDIS_DB = 13
BACKENDS = ("postgres", "redis")


class ScratchError(RuntimeError):
    """A server the benchmark needs is missing or busy."""


@dataclass
class Scratch:
    """Hands out empty backends of one benchmark run and cleans up after them."""

    postgres_server: str = field(
        default_factory=lambda: os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)
    )
    redis_server: str = field(
        default_factory=lambda: os.environ.get(REDIS_URL_VARIABLE, DEFAULT_REDIS_URL)
    )
    prefix: str = field(default_factory=lambda: f"sundial_bench_{uuid.uuid4().hex[:8]}")
    _count: int = 0
    _redis_url: str | None = None

    @contextmanager
    def backend(self, kind: str) -> Iterator[str]:
        """An empty backend of ``kind`` (``postgres`` or ``redis``) for one scenario."""
        if kind == "postgres":
            with self._postgres() as url:
                yield url
        elif kind == "redis":
            with self._redis() as url:
                yield url
        else:
            raise ScratchError(f"unknown backend {kind!r}; use one of {BACKENDS}")

    @contextmanager
    def _postgres(self) -> Iterator[str]:
        self._count += 1
        name = f"{self.prefix}_{self._count}"
        admin = sa.create_engine(self.postgres_server, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as error:
            raise ScratchError(
                f"cannot create a database on {POSTGRES_URL_VARIABLE} "
                f"({sa.make_url(self.postgres_server).render_as_string()}): {error.orig}"
            ) from None
        try:
            yield (
                sa.make_url(self.postgres_server)
                .set(database=name)
                .render_as_string(hide_password=False)
            )
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    @contextmanager
    def _redis(self) -> Iterator[str]:
        url = self._redis_url or self._pick_redis_db()
        self._redis_url = url
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
            yield url
        finally:
            client.flushdb()
            client.close()

    def _pick_redis_db(self) -> str:
        parts = urlsplit(self.redis_server)
        if parts.path.strip("/"):
            return self.redis_server  # chosen explicitly: used (and flushed) as given
        for db in range(HIGHEST_REDIS_DB, LOWEST_REDIS_DB - 1, -1):
            url = urlunsplit(parts._replace(path=f"/{db}"))
            client = redis.Redis.from_url(url)
            try:
                if client.dbsize() == 0:
                    return url
            except redis.RedisError as error:
                raise ScratchError(f"cannot reach Redis at {REDIS_URL_VARIABLE}: {error}") from None
            finally:
                client.close()
        raise ScratchError(
            f"no empty Redis database on {self.redis_server}; name one in {REDIS_URL_VARIABLE}"
        )
