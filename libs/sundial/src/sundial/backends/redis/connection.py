"""Where the Redis server is, how Sundial connects to it, and how its errors read."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from sundial.backends.base import BackendError

#: fail fast on a dead server instead of hanging a scheduler wakeup
SOCKET_TIMEOUT_SECONDS = 5.0
#: PING a connection idle this long before use, so a restarted Redis is noticed
HEALTH_CHECK_INTERVAL_SECONDS = 30

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Target:
    """Where the server is, parsed once from the URL (the password never leaves here)."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None = field(repr=False)
    ssl: bool = False

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise BackendError(f"not a Redis URL (scheme {parts.scheme!r}); use redis://")
        if parts.query:
            # Silently dropping options such as TLS settings would be worse than refusing.
            raise BackendError(
                f"Redis URL for {parts.hostname}: query options are not supported; "
                "use redis[s]://[user[:password]@]host[:port][/db]"
            )
        path = parts.path.strip("/")
        try:
            port = parts.port or 6379
            db = int(path) if path else 0
        except ValueError:
            raise BackendError(
                f"Redis URL for {parts.hostname}: port and database must be numbers, "
                "as in redis://host:6379/0"
            ) from None
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
        )

    def describe(self) -> str:
        return f"redis backend at {self.host}:{self.port}/{self.db}"

    def connect_args(self, *, socket_timeout: float = SOCKET_TIMEOUT_SECONDS) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` (and so for APScheduler's job store)."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "ssl": self.ssl,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
            "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
            # Lets an operator tell Sundial's connections apart in CLIENT LIST.
            "client_name": f"sundial-{os.getpid()}",
            "retry": Retry(EqualJitterBackoff(cap=1.0, base=0.05), retries=3),
        }

    def client(
        self, *, socket_timeout: float = SOCKET_TIMEOUT_SECONDS, **options: Any
    ) -> redis.Redis[str]:
        """A client of the URL's database that decodes replies as text.

        ``options`` override or add ``redis.Redis`` arguments (a connection name, say).
        """
        arguments = self.connect_args(socket_timeout=socket_timeout) | options
        return redis.Redis(db=self.db, decode_responses=True, **arguments)

    def error(self, operation: str, error: redis.RedisError) -> BackendError:
        """A BackendError that names the server and the operation, never the password."""
        detail = str(error)
        if self.password:
            detail = detail.replace(self.password, "***")
        return BackendError(
            f"{self.describe()} failed during {operation}: {type(error).__name__}: {detail}"
        )


class _OnTarget(Protocol):
    @property
    def target(self) -> Target: ...


_S = TypeVar("_S", bound=_OnTarget)


def guarded(
    method: Callable[Concatenate[_S, _P], _T],
) -> Callable[Concatenate[_S, _P], _T]:
    """Turn redis-py errors into :class:`BackendError` that name the server, not secrets."""

    @functools.wraps(method)
    def call(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as error:
            raise self.target.error(method.__name__, error) from None

    return call
