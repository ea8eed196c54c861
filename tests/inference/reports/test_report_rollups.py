"""The rollup tables (migration 0006) against the figures counted from the results
themselves (`raw_queries.py`), on SQLite and PostgreSQL: kept up to date by the triggers as
results, defects and labels (corrections included) are stored, and filled from the results
stored before by the migration."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import raw_queries
from sqlalchemy import insert, text

from defectlens.errors import InputError
from defectlens.inference.reports import queries
from defectlens.inference.reports.calendar import (
    DEFAULT_SHIFTS,
    parse_shifts,
    periods,
    plant_zone,
    window,
)
from defectlens.inference.store import Database, new_result_id, open_database, upgrade
from defectlens.inference.store.tables import LabelRow, ResultDefectRow, ResultRow

BERLIN = plant_zone("Europe/Berlin")
SHIFTS = parse_shifts(DEFAULT_SHIFTS)
FIRST, LAST = date(2026, 3, 27), date(2026, 3, 30)  # summer time starts 29 March
TRIGGERS = {"report_count_result", "report_count_defect", "report_count_label"}


def seed_history(db: Database, rng: random.Random, count: int = 300) -> None:
    """`count` results over five days around the window: re-inspected serials, results
    without line, product or serial, two defects of one class on a part, two model
    versions, scores near the threshold, QA labels and corrections of labels (some
    corrected twice)."""
    start = datetime(2026, 3, 26, 20, tzinfo=UTC)
    serials: list[str] = []
    labels: list[tuple[int, str]] = []
    for i in range(count):
        at = start + timedelta(minutes=i * 23 + rng.randrange(20), seconds=rng.random() * 59)
        verdict = "NG" if rng.random() < 0.3 else "OK"
        if serials and rng.random() < 0.2:
            serial: str | None = rng.choice(serials)
        elif rng.random() < 0.1:
            serial = None
        else:
            serial = f"SN{i}"
            serials.append(serial)
        result_id = new_result_id(at)
        values: dict[str, Any] = {
            "result_id": result_id,
            "verdict": verdict,
            "score": rng.choice([0.1, 0.3, 0.47, 0.52, 0.9, 1.4, 2.5, -0.1]),
            "threshold": 0.5,
            "station": rng.choice(["S1", "S2", "S3"]),
            "line": rng.choice(["L1", "L2", None]),
            "product": rng.choice(["P1", "P2", None]),
            "serial": serial,
            "received_at": at,
            "model_name": "m",
            "model_version": "v1" if i < count // 2 else "v2",
            "timings_ms": {},
        }
        defects = rng.sample(["scratch", "dent", "scratch", "crack"], rng.randrange(3))
        with db.write() as session:
            session.execute(insert(ResultRow), [values])
            if verdict == "NG" and defects:
                session.execute(insert(ResultDefectRow), [_defect(result_id, d) for d in defects])
            if rng.random() < 0.3:
                label = LabelRow(
                    result_id=result_id,
                    label=rng.choice(["OK", "NG"]),
                    defect_class=rng.choice(["scratch", "dent", None]),
                    author="qa",
                )
                session.add(label)
                session.flush()
                labels.append((label.id, result_id))
        if labels and rng.random() < 0.15:  # a correction, of any earlier label
            old, labelled = rng.choice(labels)
            with db.write() as session:
                label = LabelRow(
                    result_id=labelled,
                    label=rng.choice(["OK", "NG"]),
                    defect_class=rng.choice(["crack", None]),
                    author="qa2",
                    overrides_label_id=old,
                )
                session.add(label)
                session.flush()
                labels.append((label.id, labelled))


def _defect(result_id: str, name: str) -> dict[str, Any]:
    return {
        "result_id": result_id,
        "class_": name,
        "score": 0.9,
        "x0": 0,
        "y0": 0,
        "x1": 1,
        "y1": 1,
        "area_px": 1,
    }


def assert_rollups_match(db: Database) -> None:
    start, end = window(FIRST, LAST, BERLIN)
    shifts = periods(FIRST, LAST, "shift", BERLIN, SHIFTS)
    for scope in (
        queries.Scope(start, end),
        queries.Scope(start, end, line="L1"),
        queries.Scope(start, end, station="S2"),
    ):
        assert queries.totals(db, scope) == raw_queries.totals(db, scope)
        for dimension in queries.DIMENSIONS:
            found = [c for c in queries.by_dimension(db, scope, dimension) if c.parts]
            assert found == raw_queries.by_dimension(db, scope, dimension)
        assert queries.by_period(db, scope, shifts) == raw_queries.by_period(db, scope, shifts)
        assert queries.model_defect_classes(db, scope) == raw_queries.model_defect_classes(
            db, scope
        )
        assert queries.qa_defect_classes(db, scope) == raw_queries.qa_defect_classes(db, scope)
        labels = {
            (m.model_name, m.model_version): (m.labelled, m.overridden)
            for m in queries.by_model(db, scope)
            if m.labelled
        }
        assert labels == raw_queries.labels_by_model(db, scope)


def test_the_triggers_keep_the_rollups_equal_to_the_results(db: Database) -> None:
    seed_history(db, random.Random(7))
    with db.read() as session:
        assert session.execute(text("SELECT COUNT(*) FROM labels")).scalar_one() > 80
        assert (
            session.execute(
                text("SELECT COUNT(*) FROM labels WHERE overrides_label_id IS NOT NULL")
            ).scalar_one()
            > 20
        )
    assert_rollups_match(db)


def test_the_migration_counts_the_results_stored_before_it(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    upgrade(url, "0005")
    before = open_database(url, migrate=False)
    try:
        seed_history(before, random.Random(11), count=200)
    finally:
        before.close()
    with open_database(url) as db:  # migrates to the head: the rollups are backfilled
        assert_rollups_match(db)
        with db.read() as session:
            if db.dialect == "sqlite":
                found = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            else:
                found = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            assert set(session.scalars(text(found))) >= TRIGGERS


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_period_off_the_quarter_hours_is_refused() -> None:
    start = datetime(2026, 3, 1, 0, 10, tzinfo=UTC)
    with pytest.raises(InputError, match="quarter hour"):
        queries.Scope(start, start + timedelta(days=1))
    with pytest.raises(InputError, match="quarter hour"):
        parse_shifts("A=06:10-14:00")
    # Kathmandu is UTC+05:45: its midnights fall on a UTC quarter hour.
    assert window(FIRST, LAST, plant_zone("Asia/Kathmandu"))[0].minute == 15
