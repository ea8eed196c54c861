"""Migrations: the only way the schema is made; they match the ORM tables on both databases."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from defectlens.errors import DefectLensError, InputError
from defectlens.inference.store import Database, open_database, upgrade
from defectlens.inference.store.connect import make_engine
from defectlens.inference.store.migrate import alembic_config, current_revision, head_revision
from defectlens.inference.store.tables import Base

TABLES = {
    "stations", "model_versions", "deployments", "results", "result_defects", "images",
    "labels", "dataset_versions", "training_jobs", "api_keys", "audit_log", "outbox",
    "samples", "label_classes", "label_regions",
}  # fmt: skip


def test_migrations_on_an_empty_database_twice(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # already at head: nothing to do, no error
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    open_database(database_url).close()  # opening migrates too, and is as idempotent


def test_migrated_schema_matches_the_tables(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "workspace" / "defectlens.db"  # the folder is created on open
    with open_database(f"sqlite:///{path}") as db, db.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert (session.execute(text("PRAGMA busy_timeout")).scalar() or 0) >= 1000
    assert path.exists()


def test_sqlite_commits_are_synced_whatever_the_build_defaults_to(tmp_path: Path) -> None:
    # Some SQLite builds default to synchronous=NORMAL in WAL mode, which a power cut can
    # take answered parts back from: a connection that starts out NORMAL must become FULL.
    path = tmp_path / "store.db"

    def normal_connection() -> sqlite3.Connection:
        connection = sqlite3.connect(path, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    engine = make_engine(f"sqlite:///{path}", creator=normal_connection)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        engine.dispose()


def test_unreachable_server_names_the_url_without_its_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://plant:s3cret-pw@127.0.0.1:{port}/defectlens"
    with pytest.raises(DefectLensError) as caught:
        open_database(url)
    message = str(caught.value)
    assert f"127.0.0.1:{port}/defectlens" in message and "plant" in message
    assert "s3cret-pw" not in message


def test_malformed_url_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not a SQLAlchemy URL"):
        open_database("no database here")


def test_0002_keeps_existing_rows_and_goes_back(database_url: str) -> None:
    # A database from before service instances, idempotency keys and scoped keys: its rows
    # survive the upgrade as the default instance's, without a key, valid for every station.
    upgrade(database_url, "0001")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO results (result_id, verdict, score, threshold, station, "
                    "received_at, model_name, model_version, timings_ms) VALUES ('R1', 'NG', "
                    "0.9, 0.5, 'S1', '2026-11-26 08:00:00+00:00', 'm', 'v', '{}')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO images (result_id, kind, path, bytes, created_at, labeled) "
                    "VALUES ('R1', 'image', 'a.png', 10, '2026-11-26 08:00:00+00:00', false)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO api_keys (prefix, sha256, role, name, created_at) VALUES "
                    "('0123abcd', :sha, 'line', 'plc', '2026-11-26 08:00:00+00:00')"
                ),
                {"sha": "0" * 64},
            )
        upgrade(database_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT instance FROM images")).all() == [("default",)]
            assert connection.execute(text("SELECT idempotency_key FROM results")).all() == [
                (None,)
            ]
            keys = connection.execute(text("SELECT stations, expires_at FROM api_keys")).all()
            assert keys == [(None, None)]
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        assert current_revision(engine) == "0001"
        assert "instance" not in {c["name"] for c in inspect(engine).get_columns("images")}
        upgrade(database_url)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
