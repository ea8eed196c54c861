"""Schema migrations, run from Python: Alembic with the script folder shipped in the package.

The only way the store's schema is created or changed (never `create_all`), so SQLite and
PostgreSQL databases, new or years old, end up with the same tables.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from defectlens.inference.store.connect import BEGIN_MODE, check_reachable, make_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

MIGRATION_LOCK = 0x6465666563746C
"""PostgreSQL advisory lock key ('defectl'): one migrator at a time on a shared server."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations under {MIGRATIONS_DIR}"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision`, in one transaction where the
    database allows it. Services starting together against one PostgreSQL take turns."""
    config = alembic_config()
    connect = engine.connect().execution_options(**{BEGIN_MODE: "IMMEDIATE"})
    with connect as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            # A migration takes as long as its tables need (an index on millions of rows),
            # and waits for the services already running to let go of them.
            connection.execute(text("SET LOCAL statement_timeout = 0"))
            connection.execute(text("SET LOCAL lock_timeout = 0"))
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (the latest by default)."""
    engine = make_engine(url)
    try:
        check_reachable(engine)
        upgrade_engine(engine, revision)
    finally:
        engine.dispose()
