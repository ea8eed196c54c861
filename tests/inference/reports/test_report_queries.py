"""The report's SQL on real SQLite and PostgreSQL, against hand-counted seeded results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from report_seed import Seed

from defectlens.inference.reports import queries
from defectlens.inference.reports.calendar import (
    DEFAULT_SHIFTS,
    parse_shifts,
    periods,
    plant_zone,
    window,
)
from defectlens.inference.reports.figures import Counts
from defectlens.inference.store import Database

BERLIN = plant_zone("Europe/Berlin")
SHIFTS = parse_shifts(DEFAULT_SHIFTS)
FIRST, LAST = date(2026, 3, 28), date(2026, 3, 29)  # summer time starts 29 March, 02:00


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


def seed_weekend(seed: Seed, add_station: Callable[[str, str | None], None]) -> None:
    """Two days around the spring change: 10 results, hand-placed in shifts (local times in
    the comments; CET is UTC+1 until 29 March 01:00 UTC, then CEST UTC+2)."""
    add_station("S3", "L1")  # no parts at all
    seed(utc(2026, 3, 27, 22, 30), "NG", serial="a")  # 27th 23:30: before the window
    seed(
        utc(2026, 3, 27, 23, 30), "NG", serial="a", defects=("scratch",)
    )  # 28th 00:30, C of 27th, re-inspection
    seed(utc(2026, 3, 28, 5, 59), "OK", serial="b")  # 28th 06:59 A
    seed(
        utc(2026, 3, 28, 13, 0),
        "NG",
        serial="c",
        defects=("scratch", "dent"),
        label=("NG", "scratch"),
    )  # 28th 14:00 B
    seed(utc(2026, 3, 28, 13, 0, 1), "OK", serial="c")  # B, re-inspected after rework
    seed(
        utc(2026, 3, 28, 21, 0),
        "NG",
        station="S2",
        serial="d",
        defects=("dent",),
        label=("OK", None),
    )  # 28th 22:00 C
    seed(utc(2026, 3, 29, 3, 30), "OK", station="S2")  # 29th 05:30 CEST: still C of 28th
    seed(
        utc(2026, 3, 29, 4, 0),
        "NG",
        station="S2",
        product=None,
        defects=("crack",),
        label=("NG", "crack"),
    )  # 29th 06:00 CEST: A of 29th
    seed(utc(2026, 3, 29, 21, 59), "OK", line="L2", station="S9")  # 29th 23:59 C
    seed(utc(2026, 3, 29, 22, 0), "NG")  # 30th 00:00: after the window


def scope(**filters: str) -> queries.Scope:
    start, end = window(FIRST, LAST, BERLIN)
    return queries.Scope(start, end, **filters)


def test_rates_by_line_station_product(db: Database, seed: Seed, add_station: Callable) -> None:
    seed_weekend(seed, add_station)
    assert queries.totals(db, scope()) == Counts("all", 8, 4, 6, 3)
    assert queries.by_dimension(db, scope(), "line") == [
        Counts("L1", 7, 4, 5, 2),
        Counts("L2", 1, 0, 1, 1),
    ]
    # a: its first inspection was before the window, so its only one here is not a first.
    assert queries.by_dimension(db, scope(), "station") == [
        Counts("S1", 4, 2, 2, 1),
        Counts("S2", 3, 2, 3, 1),
        Counts("S3", 0, 0, 0, 0),
        Counts("S9", 1, 0, 1, 1),
    ]
    assert queries.by_dimension(db, scope(line="L1"), "product") == [
        Counts("(none)", 1, 1, 1, 0),
        Counts("P", 6, 3, 4, 2),
    ]
    assert queries.by_dimension(db, scope(station="S2"), "station") == [Counts("S2", 3, 2, 3, 1)]


def test_shifts_and_days_in_the_plant_zone_across_the_change(
    db: Database, seed: Seed, add_station: Callable
) -> None:
    seed_weekend(seed, add_station)
    shift_periods = periods(FIRST, LAST, "shift", BERLIN, SHIFTS)
    by_shift = {c.key: c for c in queries.by_period(db, scope(), shift_periods)}
    assert {k: (c.parts, c.ng) for k, c in by_shift.items() if c.parts} == {
        "2026-03-27 C": (1, 1),
        "2026-03-28 A": (1, 0),
        "2026-03-28 B": (2, 1),
        "2026-03-28 C": (2, 1),
        "2026-03-29 A": (1, 1),
        "2026-03-29 C": (1, 0),
    }
    assert by_shift["2026-03-29 B"] == Counts("2026-03-29 B", 0, 0, 0, 0)  # an empty period
    assert [(c.key, c.parts, c.ng) for c in queries.by_shift(db, scope(), shift_periods)] == [
        ("C", 4, 2),
        ("A", 2, 1),
        ("B", 2, 1),
    ]
    days = queries.by_period(db, scope(), periods(FIRST, LAST, "day", BERLIN, SHIFTS))
    assert [(c.key, c.parts, c.ng) for c in days] == [("2026-03-28", 5, 3), ("2026-03-29", 3, 1)]
    subgroups = queries.by_station_and_period(
        db, scope(), periods(FIRST, LAST, "day", BERLIN, SHIFTS)
    )
    assert subgroups == {
        "S1": [("2026-03-28", 4, 2), ("2026-03-29", 0, 0)],
        "S2": [("2026-03-28", 1, 1), ("2026-03-29", 2, 1)],
        "S9": [("2026-03-28", 0, 0), ("2026-03-29", 1, 0)],
    }


def test_defect_classes_from_the_model_and_from_qa(
    db: Database, seed: Seed, add_station: Callable
) -> None:
    seed_weekend(seed, add_station)
    assert queries.model_defect_classes(db, scope()) == {"scratch": 2, "dent": 2, "crack": 1}
    assert queries.qa_defect_classes(db, scope()) == {"scratch": 1, "crack": 1}
    assert queries.model_defect_classes(db, scope(station="S2")) == {"dent": 1, "crack": 1}


def test_an_empty_store_gives_zeros(db: Database) -> None:
    assert queries.totals(db, scope()) == Counts("all", 0, 0, 0, 0)
    assert queries.by_dimension(db, scope(), "station") == []
    assert queries.model_defect_classes(db, scope()) == {}
    days = queries.by_period(db, scope(), periods(FIRST, LAST, "day", BERLIN, SHIFTS))
    assert [c.parts for c in days] == [0, 0]
