"""Store fixtures: every store test runs on SQLite (a temporary file) and on a real PostgreSQL
server started for the session (tests/pg_server.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for pg_server
import pg_server

from defectlens.inference.store import Database, Store

# The store fixtures every store test uses, from tests/pg_server.py.
postgres_server = pg_server.postgres_server
postgres_store_url = pg_server.postgres_store_url
db = pg_server.db


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database's URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_server").create_database())


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)
