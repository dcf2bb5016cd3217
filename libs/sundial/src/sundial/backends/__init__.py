"""Backends behind one interface; :func:`open_backend` picks one from a URL."""

from __future__ import annotations

from sundial.backends.base import Backend, BackendError, RunCursor

__all__ = ["Backend", "BackendError", "RunCursor", "open_backend"]


def open_backend(url: str) -> Backend:
    """The backend for ``SUNDIAL_BACKEND_URL`` (not yet set up: call ``setup()``)."""
    if url.startswith(("redis://", "rediss://")):
        from sundial.backends.redis import RedisBackend

        return RedisBackend(url)
    if url.startswith(("postgresql", "sqlite")):
        from sundial.backends.sql import SqlBackend

        return SqlBackend(url)
    raise BackendError(f"unsupported backend URL {url.split('://')[0]!r}")
