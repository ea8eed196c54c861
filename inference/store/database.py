"""The store's database handle: an engine and sessions, migrated to the latest schema on open."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from defectlens.inference.store.connect import (
    BEGIN_MODE,
    BUSY_TIMEOUT_MS,
    DEFAULT_TIMEOUT_S,
    check_reachable,
    make_engine,
    safe_url,
)
from defectlens.inference.store.migrate import upgrade_engine

log = logging.getLogger(__name__)

_WAIT_UNNOTICED_S = 0.01
"""A wait for this process's other writers shorter than this is not taken off SQLite's busy
timeout (changing it costs a statement)."""


class Database:
    """One database: sessions for reading and for writing (each a single transaction).

    `timeout_s` is what the engine was made with (`make_engine`): on SQLite a write waits at
    most that long in all, for this process's other writers and then for SQLite's lock.
    """

    def __init__(self, engine: Engine, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self._reader = sessionmaker(engine, expire_on_commit=False)
        # On SQLite a writer takes the write lock at BEGIN, so two writers queue on the busy
        # timeout instead of one failing when it upgrades a read lock.
        self._write_engine = engine.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        # SQLite has one writer at a time, and a writer that finds the lock taken polls for it
        # with sleeps of 1, 2, 5, 10... ms (a p99 of 20-55 ms instead of 7 ms per part with
        # four threads writing). Writers of this process queue on a lock instead, held only
        # for the write's transaction; the busy timeout is left for writers in other
        # processes (the CLI, another service).
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def url(self) -> str:
        """The URL with the password hidden, for messages and logs."""
        return safe_url(self.engine.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in one transaction, rolled back at the end (nothing is written)."""
        with self._reader() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one transaction: committed if the block ends normally, otherwise
        rolled back entirely. `OperationalError` if the database stays locked or does not
        answer for `timeout_s`."""
        with self._write_turn() as options, self._writer() as session, session.begin():
            if options:
                session.connection(execution_options=options)
            yield session

    @contextmanager
    def _write_turn(self) -> Iterator[dict[str, Any]]:
        """On SQLite, this process's turn to write, and the execution options that leave the
        transaction the rest of `timeout_s`; elsewhere nothing to wait for."""
        if self._write_lock is None:
            yield {}
            return
        started = time.monotonic()
        if not self._write_lock.acquire(timeout=self.timeout_s):
            raise OperationalError(
                "BEGIN IMMEDIATE",
                None,
                sqlite3.OperationalError(
                    f"database is locked: this service's other writes held it for "
                    f"{self.timeout_s:g} s"
                ),
            )
        try:
            waited = time.monotonic() - started
            if waited < _WAIT_UNNOTICED_S:
                yield {}
            else:
                left_ms = max(1, round((self.timeout_s - waited) * 1000))
                yield {BUSY_TIMEOUT_MS: left_ms}
        finally:
            self._write_lock.release()

    def ping(self) -> bool:
        """Whether the database answers now (for readiness checks)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            log.warning("database %s does not answer", self.url, exc_info=True)
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_database(
    url: str | URL, *, migrate: bool = True, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Database:
    """Open the database at `url` and migrate it to the latest schema (unless `migrate` is
    False). No later call waits much longer than `timeout_s` for the database (see
    `make_engine`): a slow, locked or vanished database fails it with SQLAlchemy's
    `OperationalError`. Migrations themselves run without a statement or lock timeout.

    Raises `DefectLensError` naming the URL (without its password) if the server cannot be
    reached, `InputError` if the URL or the timeout is not usable.
    """
    engine = make_engine(url, timeout_s=timeout_s)
    try:
        check_reachable(engine)
        if migrate:
            upgrade_engine(engine)
    except BaseException:
        engine.dispose()
        raise
    log.info("result store: %s (%s)", safe_url(engine.url), engine.dialect.name)
    return Database(engine, timeout_s)
