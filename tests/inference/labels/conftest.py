"""Label store fixtures: a migrated store on SQLite and on a real PostgreSQL
(tests/pg_server.py), and a workspace whose `labels/` folder holds the imported files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for pg_server
import pg_server

from defectlens.inference.store import Database, Store
from defectlens.settings import Settings

postgres_server = pg_server.postgres_server
postgres_store_url = pg_server.postgres_store_url
db = pg_server.db


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")
