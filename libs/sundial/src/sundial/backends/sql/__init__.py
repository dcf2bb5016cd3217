"""The SQL backend: Postgres for deployments, SQLite for one machine (see ``backend``)."""

from sundial.backends.sql.backend import SqlBackend

__all__ = ["SqlBackend"]
