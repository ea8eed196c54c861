"""The store's database handle: an engine and sessions, migrated to the latest schema on open."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any

from sqlalchemy import Engine, Table, insert, text
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection

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
        self._keep_writer = engine.dialect.name == "sqlite"
        self._kept_writer: PoolProxiedConnection | None = None
        """On SQLite, the connection `insert_rows` keeps checked out between parts (guarded
        by `_write_turn`)."""

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

    def insert_rows(self, rows: Sequence[tuple[Table, Sequence[dict[str, Any]]]]) -> None:
        """Insert `rows` (table, values of each row) in one transaction, on the driver itself.

        For the per-part insert: SQLAlchemy's execution layer costs more than the SQL there.
        Each statement is compiled once per table, columns and dialect, and each value goes
        through its column type's bind processor, the conversion SQLAlchemy itself applies,
        so the rows read back through SQLAlchemy as if it had written them. Python-side
        column defaults are not applied: values that leave out such a column, or name no
        column, are refused (`ValueError`); a column without one that is left out is NULL.
        Driver errors come out as SQLAlchemy's (`IntegrityError`, `OperationalError`, ...);
        on any error nothing is written.
        """
        dialect = self.engine.dialect
        dbapi = dialect.loaded_dbapi
        with self._write_turn:
            raw = self._insert_connection()
            cursor = None
            statement = "BEGIN IMMEDIATE" if dialect.name == "sqlite" else None
            try:
                cursor = raw.cursor()
                if statement is not None:
                    cursor.execute(statement)
                for table, values in rows:
                    if values:
                        prepared = _prepared_insert(dialect, table, tuple(values[0]))
                        statement = prepared.sql
                        cursor.executemany(statement, prepared.parameters(values))
                raw.commit()
            except BaseException as error:
                rolled_back = _rollback(raw)
                disconnect = isinstance(error, dbapi.Error) and dialect.is_disconnect(
                    error, raw.dbapi_connection, cursor
                )
                if disconnect or not rolled_back:  # the connection is no longer usable
                    raw.invalidate(error if isinstance(error, Exception) else None)
                    if raw is self._kept_writer:
                        self._kept_writer = None
                if isinstance(error, dbapi.Error):
                    raise DBAPIError.instance(
                        statement, None, error, dbapi.Error, dialect=dialect
                    ) from error
                raise
            finally:
                if cursor is not None:
                    with suppress(dbapi.Error):  # a dead connection's cursor: reported above
                        cursor.close()
                if raw is not self._kept_writer:
                    raw.close()  # back to the pool (an invalidated one is discarded there)

    def _insert_connection(self) -> PoolProxiedConnection:
        """The DBAPI connection for one `insert_rows`. On SQLite, where writes take turns
        anyway, one is checked out once and kept: a checkout and a return (with its reset)
        per part cost more than the insert. Elsewhere, one from the pool per call."""
        if not self._keep_writer:
            return self.engine.raw_connection()
        if self._kept_writer is None:
            self._kept_writer = self.engine.raw_connection()
        return self._kept_writer

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
        with self._write_turn:
            kept, self._kept_writer = self._kept_writer, None
            if kept is not None:
                kept.close()
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PreparedInsert:
    """An INSERT of some columns of a table, compiled for one dialect."""

    def __init__(self, dialect: Dialect, table: Table, columns: tuple[str, ...]) -> None:
        compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
        self.sql = compiled.string
        order = list(compiled.positiontup) if compiled.positiontup is not None else None
        names = order if order is not None else list(compiled.binds)
        unknown, missing = sorted(set(columns) - set(names)), sorted(set(names) - set(columns))
        if unknown:
            raise ValueError(f"insert into {table.name}: no column {', '.join(unknown)}")
        if missing:
            raise ValueError(
                f"insert into {table.name}: the values leave out {', '.join(missing)}, which "
                "have Python-side defaults; give them values"
            )
        types = {column.key: column.type for column in table.columns}
        self._pairs = [
            (name, types[name].dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]
        """Each parameter's column name and bind processor (None: the value goes as is)."""
        self._positional = order is not None

    def parameters(
        self, rows: Sequence[dict[str, Any]]
    ) -> Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]]:
        """The driver's parameters for `rows`: converted values in the statement's order (or
        by name, for drivers with named parameters)."""
        pairs = self._pairs
        if self._positional:
            return [
                tuple(
                    row[name] if process is None else process(row[name]) for name, process in pairs
                )
                for row in rows
            ]
        return [
            {name: row[name] if process is None else process(row[name]) for name, process in pairs}
            for row in rows
        ]


@functools.lru_cache(maxsize=64)
def _prepared_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> _PreparedInsert:
    return _PreparedInsert(dialect, table, columns)


def _rollback(raw: Any) -> bool:
    """Roll back after a failed insert; False if that failed too (the connection is then
    discarded)."""
    try:
        raw.rollback()
    except Exception:  # the original error is the one to report
        log.warning("rollback after a failed insert failed", exc_info=True)
        return False
    return True


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
