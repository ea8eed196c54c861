"""Alembic environment for the result store: runs on the connection `migrate.py` hands over.

Run through `defectlens.inference.store.migrate.upgrade(url)`, never the `alembic` command
line, so an installed package can migrate without an alembic.ini.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from defectlens.inference.store.tables import Base


def run_migrations_online() -> None:
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run the store's migrations with defectlens.inference.store.migrate.upgrade(url)"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by table copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
