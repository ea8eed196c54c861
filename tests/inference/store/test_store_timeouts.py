"""Timeouts: a locked, slow or vanished database fails a call within the timeout with
`OperationalError`, on PostgreSQL and SQLite, instead of holding the caller's thread."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from pg_server import PostgresServer
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from store_factories import make_result

from defectlens.errors import InputError
from defectlens.inference.store import Database, Store, open_database
from defectlens.inference.store.connect import make_engine
from defectlens.inference.store.migrate import MIGRATION_LOCK

TIMEOUT_S = 1.0
SLACK_S = 1.5
"""How much later than the timeout a call may fail on a busy test machine."""


def timed_failure(call: Callable[[], object]) -> float:
    """Seconds until `call()` raised `OperationalError` (the test fails if it did not)."""
    started = time.monotonic()
    with pytest.raises(OperationalError):
        call()
    return time.monotonic() - started


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    database = open_database(pg_url, timeout_s=TIMEOUT_S)
    yield database
    database.close()


def blocker_connection(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """Another client of the same database (e.g. a long report or a stuck migration)."""
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))


def test_postgresql_write_blocked_by_a_lock_fails_within_the_timeout(
    pg_db: Database, pg_url: str
) -> None:
    store = Store(pg_db)
    store.save_result(make_result(1))
    with blocker_connection(pg_url) as blocker:
        blocker.execute("LOCK TABLE results IN ACCESS EXCLUSIVE MODE")  # held until rollback
        assert timed_failure(lambda: store.save_result(make_result(2))) >= TIMEOUT_S * 0.9
        assert timed_failure(lambda: store.get_result("0" * 26)) < TIMEOUT_S + SLACK_S
        blocker.rollback()
    store.save_result(make_result(3))  # the pool's connections are fine afterwards
    assert [r.serial for r in store.list_results()[0]] == ["SN00003", "SN00001"]


def test_postgresql_row_lock_and_slow_statement_fail_within_the_timeout(
    pg_db: Database, pg_url: str
) -> None:
    store = Store(pg_db)
    store.ensure_station("S1")
    with blocker_connection(pg_url) as blocker:
        blocker.execute("SELECT * FROM stations WHERE id = 'S1' FOR UPDATE")
        elapsed = timed_failure(lambda: store.ensure_station("S1", line="L2"))
        assert elapsed < TIMEOUT_S + SLACK_S
        blocker.rollback()

    def slow_query() -> None:
        with pg_db.read() as session:
            session.execute(text("SELECT pg_sleep(30)"))

    assert timed_failure(slow_query) < TIMEOUT_S + SLACK_S
    assert store.ensure_station("S1", line="L2").line == "L2"


def test_postgresql_connections_carry_the_timeouts(pg_db: Database) -> None:
    with pg_db.read() as session:
        settings = {
            name: session.execute(text(f"SHOW {name}")).scalar()
            for name in ("statement_timeout", "lock_timeout")
        }
        params = _libpq_params(session)
    assert settings == {"statement_timeout": "1s", "lock_timeout": "1s"}
    assert params["connect_timeout"] == "2"  # libpq's least
    assert params["keepalives"] == "1" and params["keepalives_idle"] == "1"
    assert params["keepalives_count"] == "3" and params["tcp_user_timeout"] == "1000"
    assert pg_db.engine.pool.timeout() == TIMEOUT_S


def test_postgresql_settings_in_the_url_win(pg_url: str) -> None:
    url = f"{pg_url}?connect_timeout=7&options=-c%20application_name%3Dline4"
    with open_database(url, timeout_s=3, migrate=False) as db, db.read() as session:
        params = _libpq_params(session)
        name = session.execute(text("SHOW application_name")).scalar()
        statement_timeout = session.execute(text("SHOW statement_timeout")).scalar()
    assert params["connect_timeout"] == "7" and name == "line4" and statement_timeout == "3s"


def test_migrations_wait_as_long_as_they_need(postgres_server: PostgresServer) -> None:
    # A migration may rebuild an index on millions of rows, or wait for another service's
    # migration: neither the statement nor the lock timeout applies to it.
    url = postgres_server.create_database()
    with blocker_connection(url) as blocker:  # another service migrating the database
        blocker.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))

        def migrate() -> None:
            open_database(url, timeout_s=0.2).close()

        with ThreadPoolExecutor(max_workers=1) as pool:
            migrating = pool.submit(migrate)
            time.sleep(1.0)
            assert not migrating.done()
            blocker.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            migrating.result(timeout=30)
    with open_database(url, timeout_s=TIMEOUT_S, migrate=False) as db:
        assert Store(db).list_stations() == []


def _libpq_params(session: Session) -> dict[str, str]:
    """The connection parameters libpq was given for the session's connection."""
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver.info.get_parameters()


# -- SQLite -------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def test_sqlite_writer_locked_out_by_another_process_fails_after_the_busy_timeout(
    sqlite_path: Path,
) -> None:
    with open_database(f"sqlite:///{sqlite_path}", timeout_s=TIMEOUT_S) as db:
        store = Store(db)
        store.save_result(make_result(1))
        blocker = sqlite3.connect(sqlite_path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # e.g. a long write from the CLI
            elapsed = timed_failure(lambda: store.save_result(make_result(2)))
            assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + SLACK_S
            assert store.get_result("0" * 26) is None  # readers are not held up (WAL)
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        store.save_result(make_result(3))
        assert [r.serial for r in store.list_results()[0]] == ["SN00003", "SN00001"]


def test_sqlite_writers_queued_here_share_one_timeout(sqlite_path: Path) -> None:
    # Writers of this process queue on a lock before SQLite's; waiting there counts against
    # the same timeout, so the last in the queue does not wait the timeout twice (or more).
    with open_database(f"sqlite:///{sqlite_path}", timeout_s=TIMEOUT_S) as db:
        store = Store(db)
        blocker = sqlite3.connect(sqlite_path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")

            def save(n: int) -> float:
                return timed_failure(lambda: store.save_result(make_result(n)))

            with ThreadPoolExecutor(max_workers=4) as pool:
                times = list(pool.map(save, range(4)))
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        assert max(times) < TIMEOUT_S + SLACK_S, times
        store.save_result(make_result(9))  # the whole timeout again once nobody waits
        with db.write() as session:
            assert session.execute(text("PRAGMA busy_timeout")).scalar() == 1000


def test_sqlite_write_held_by_this_process_times_out_the_next(sqlite_path: Path) -> None:
    with open_database(f"sqlite:///{sqlite_path}", timeout_s=TIMEOUT_S) as db:
        inside, release = threading.Event(), threading.Event()

        def long_write() -> None:
            with db.write():
                inside.set()
                release.wait(10)

        holder = threading.Thread(target=long_write)
        holder.start()
        try:
            assert inside.wait(5)
            elapsed = timed_failure(lambda: Store(db).save_result(make_result(1)))
            assert elapsed < TIMEOUT_S + SLACK_S
        finally:
            release.set()
            holder.join()
        Store(db).save_result(make_result(2))


def test_sqlite_busy_timeout_is_the_timeout(sqlite_path: Path) -> None:
    with open_database(f"sqlite:///{sqlite_path}", timeout_s=2.5) as db, db.read() as session:
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 2500


def test_a_timeout_that_is_not_positive_is_an_input_error(sqlite_path: Path) -> None:
    with pytest.raises(InputError, match="timeout 0"):
        make_engine(f"sqlite:///{sqlite_path}", timeout_s=0)
