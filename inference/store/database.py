"""The store's database handle: an engine and sessions, migrated to the latest schema on open."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from defectlens.inference.store.connect import (
    BEGIN_MODE,
    check_reachable,
    make_engine,
    safe_url,
)
from defectlens.inference.store.migrate import upgrade_engine

log = logging.getLogger(__name__)


class Database:
    """One database: sessions for reading and for writing (each a single transaction)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader = sessionmaker(engine, expire_on_commit=False)
        # On SQLite a writer takes the write lock at BEGIN, so two writers queue on the busy
        # timeout instead of one failing when it upgrades a read lock.
        self._write_engine = engine.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        # SQLite has one writer at a time, and a writer that finds the lock taken polls for it
        # with sleeps of 1, 2, 5, 10... ms. Writers of this process queue on a lock instead,
        # and the next one starts the moment the previous one commits; the busy timeout is
        # left for writers in other processes (the CLI, another service).
        self._write_turn: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

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
        rolled back entirely."""
        with self._write_turn, self._writer() as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A Core connection in one transaction, like `write` but without the ORM's unit of
        work: for the per-part insert, where that bookkeeping costs more than the SQL."""
        with self._write_turn, self._write_engine.begin() as connection:
            yield connection

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


def open_database(url: str | URL, *, migrate: bool = True) -> Database:
    """Open the database at `url` and migrate it to the latest schema.

    Raises `DefectLensError` naming the URL (without its password) if the server cannot be
    reached, `InputError` if the URL is malformed.
    """
    engine = make_engine(url)
    try:
        check_reachable(engine)
        if migrate:
            upgrade_engine(engine)
    except BaseException:
        engine.dispose()
        raise
    log.info("result store: %s (%s)", safe_url(engine.url), engine.dialect.name)
    return Database(engine)
