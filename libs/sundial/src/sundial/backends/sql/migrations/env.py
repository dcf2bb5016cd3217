"""Alembic environment for Sundial's SQL backend.

``SqlBackend.setup()`` runs the upgrade in code and hands over its open connection (in
``config.attributes``), already inside the transaction that holds the migration lock.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

VERSION_TABLE = "sundial_alembic_version"


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "Sundial's migrations run from SqlBackend.setup() (the scheduler and the API "
            "call it at start-up), not from the alembic command line"
        )
    # A prefixed version table keeps clear of an application's own Alembic history
    # when Sundial shares its database.
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
