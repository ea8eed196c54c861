"""Engines for the store's database URL: SQLite pragmas, PostgreSQL, and a clear error when the
server cannot be reached.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from defectlens.errors import DefectLensError, InputError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another one before giving up."""

BEGIN_MODE = "defectlens_sqlite_begin"
"""Execution option: `IMMEDIATE` takes SQLite's write lock at BEGIN (writers queue on the busy
timeout instead of failing on a lock upgrade); other databases ignore it."""


def parse_url(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError as error:
        raise InputError(
            f"database URL {url!r} is not a SQLAlchemy URL "
            "(e.g. sqlite:///path/defectlens.db or postgresql+psycopg://user:pw@host/db)"
        ) from error


def safe_url(url: str | URL) -> str:
    """The URL for messages and logs: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for `url`; for SQLite, the file's folder is created and every connection
    gets WAL, foreign keys and a busy timeout."""
    parsed = parse_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver we ship
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, **kwargs)
        return create_engine(parsed, pool_pre_ping=True, **kwargs)
    except NoSuchModuleError as error:
        raise InputError(
            f"database URL {safe_url(parsed)}: unsupported database or driver "
            f"{parsed.drivername!r}; use sqlite:/// or postgresql+psycopg://"
        ) from error


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so BEGIN
        # covers reads too and DDL is transactional (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Every commit synced to disk, so a power cut cannot take back an answered part.
        # (Many builds default to this, some to NORMAL in WAL mode: say it.)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(BEGIN_MODE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    return engine


def check_reachable(engine: Engine) -> None:
    """Connect once; a `DefectLensError` naming the URL (no password) if that fails."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DefectLensError(
            f"cannot reach the database at {safe_url(engine.url)}: {reason}. Check "
            "DEFECTLENS_DATABASE_URL and that the database server is running and reachable."
        ) from error
