"""Engines for the store's database URL: SQLite pragmas, PostgreSQL, and a clear error when the
server cannot be reached.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from defectlens.errors import DefectLensError, InputError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
"""How long one database call may wait, by default: for a connection, a lock, a statement."""

BEGIN_MODE = "defectlens_sqlite_begin"
"""Execution option: `IMMEDIATE` takes SQLite's write lock at BEGIN (writers queue on the busy
timeout instead of failing on a lock upgrade); other databases ignore it."""

BUSY_TIMEOUT_MS = "defectlens_sqlite_busy_timeout_ms"
"""Execution option: SQLite's busy timeout for the transaction about to begin (what is left of
a write's time after it waited for this process's other writers); other databases ignore it."""

_BUSY_TIMEOUT_SET = "defectlens_busy_timeout_ms"
"""Key in a pooled SQLite connection's `info`: the busy timeout it has now."""


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


def make_engine(url: str | URL, *, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs: Any) -> Engine:
    """An engine for `url` on which no call waits much longer than `timeout_s` for the
    database: for a connection from the pool or to the server, for a lock, for a statement.

    PostgreSQL gets libpq's connect timeout, a statement and a lock timeout, TCP keepalives
    and a TCP user timeout (a server that vanished is noticed), each unless the URL sets it.
    SQLite gets its busy timeout, WAL, synced commits and foreign keys; the file's folder is
    created. A slow or hung database then fails calls with `OperationalError` instead of
    holding the caller's thread."""
    if not timeout_s > 0:
        raise InputError(f"database timeout {timeout_s} s: must be more than 0")
    parsed = parse_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver we ship
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, timeout_s, **kwargs)
        if parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {
                **_postgresql_timeouts(parsed, timeout_s),
                **kwargs.get("connect_args", {}),
            }
        return create_engine(parsed, pool_pre_ping=True, pool_timeout=timeout_s, **kwargs)
    except NoSuchModuleError as error:
        raise InputError(
            f"database URL {safe_url(parsed)}: unsupported database or driver "
            f"{parsed.drivername!r}; use sqlite:/// or postgresql+psycopg://"
        ) from error


def _postgresql_timeouts(url: URL, timeout_s: float) -> dict[str, Any]:
    """libpq connection parameters that bound every wait on the server by `timeout_s`; those
    the URL sets itself are left to it (its `options` are kept, ours added)."""
    milliseconds = max(1, round(timeout_s * 1000))
    seconds = max(1, math.ceil(timeout_s))
    ours: dict[str, Any] = {
        "connect_timeout": max(2, seconds),  # whole seconds; libpq takes 1 as 2
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": max(1, math.ceil(timeout_s / 3)),
        "keepalives_count": 3,
        # Sent data unacknowledged this long (a server gone without a word): the connection
        # is dropped, where the kernel would otherwise retransmit for about 15 minutes.
        "tcp_user_timeout": milliseconds,
    }
    params = {key: value for key, value in ours.items() if key not in url.query}
    server = f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"
    given = url.query.get("options")
    params["options"] = f"{given} {server}" if isinstance(given, str) and given else server
    return params


def _sqlite_engine(url: URL, timeout_s: float, **kwargs: Any) -> Engine:
    database = url.database or ""
    in_memory = not database or database == ":memory:" or "mode=memory" in database
    if not in_memory and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    if not in_memory:
        kwargs.setdefault("pool_timeout", timeout_s)
    engine = create_engine(url, **kwargs)
    busy_timeout_ms = max(1, round(timeout_s * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so BEGIN
        # covers reads too and DDL is transactional (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Every commit synced to disk, so a power cut cannot take back an answered part.
        # (Many builds default to this, some to NORMAL in WAL mode: say it.)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()
        record.info[_BUSY_TIMEOUT_SET] = busy_timeout_ms

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        # A write that waited for this process's other writers gets only the time it has
        # left; the next transaction on the connection gets the whole timeout back.
        wanted = int(options.get(BUSY_TIMEOUT_MS, busy_timeout_ms))
        info = connection.connection.info
        if info.get(_BUSY_TIMEOUT_SET) != wanted:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={wanted}")
            info[_BUSY_TIMEOUT_SET] = wanted
        mode = options.get(BEGIN_MODE)
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
