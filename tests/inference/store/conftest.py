"""Store fixtures: every store test runs on SQLite (a temporary file) and on a real PostgreSQL
server started for the session (tests/pg_server.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for pg_server
from pg_server import PostgresServer, postgres_server  # noqa: F401  (the session fixture)
from sqlalchemy import text

from defectlens.inference.store import Database, Store, open_database, upgrade
from defectlens.inference.store.tables import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database's URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_server").create_database())


@pytest.fixture(scope="session")
def postgres_store_url(request: pytest.FixtureRequest) -> str:
    """One migrated PostgreSQL database for the session (CREATE DATABASE costs ~0.4 s)."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database("store_tests")
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An open, migrated and empty store database, once per backend."""
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        database = open_database(request.getfixturevalue("postgres_store_url"))
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        with database.write() as session:  # empty it: earlier tests share the database
            session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    database.close()


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)
