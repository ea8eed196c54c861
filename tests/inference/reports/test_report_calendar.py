"""Shifts and periods in the plant's time zone, with hand-computed UTC bounds."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest

from defectlens.errors import InputError
from defectlens.inference.reports.calendar import (
    DEFAULT_SHIFTS,
    OFF_SHIFT,
    parse_shifts,
    periods,
    plant_zone,
    window,
)

BERLIN = plant_zone("Europe/Berlin")
SHANGHAI = plant_zone("Asia/Shanghai")
SHIFTS = parse_shifts(DEFAULT_SHIFTS)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A=06:00-14:00,B=13:00-22:00", "overlaps"),
        ("A=06:00-06:00", "starts when it ends"),
        ("A=6-14", "NAME=HH:MM-HH:MM"),
        ("A=06:00-25:00", "invalid time"),
        ("A=06:00-14:00,A=14:00-22:00", "twice"),
        ("", "empty"),
    ],
)
def test_bad_shifts_are_refused_with_the_setting_named(text: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        parse_shifts(text)


def test_bad_time_zone_is_refused() -> None:
    with pytest.raises(InputError, match="DEFECTLENS_TIMEZONE"):
        plant_zone("Mars/Olympus")


def test_shifts_in_a_zone_without_daylight_saving() -> None:
    found = periods(date(2026, 5, 4), date(2026, 5, 4), "shift", SHANGHAI, SHIFTS)
    # UTC+8: the night shift begun on the 3rd covers 00:00-06:00 local, clipped to the window.
    assert [(p.label, p.start, p.end, p.shift) for p in found] == [
        ("2026-05-03 C", utc(2026, 5, 3, 16), utc(2026, 5, 3, 22), "C"),
        ("2026-05-04 A", utc(2026, 5, 3, 22), utc(2026, 5, 4, 6), "A"),
        ("2026-05-04 B", utc(2026, 5, 4, 6), utc(2026, 5, 4, 14), "B"),
        ("2026-05-04 C", utc(2026, 5, 4, 14), utc(2026, 5, 4, 16), "C"),
    ]


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 28), 7), (date(2026, 10, 24), 9), (date(2026, 6, 1), 8)],
)
def test_night_shift_across_a_daylight_saving_change(day: date, hours: int) -> None:
    found = periods(day, date(day.year, day.month, day.day + 1), "shift", BERLIN, SHIFTS)
    night = next(p for p in found if p.label == f"{day.isoformat()} C")
    assert (night.end - night.start).total_seconds() == hours * 3600


def test_spring_change_day_has_23_hours_and_periods_tile_the_window() -> None:
    start, end = window(date(2026, 3, 29), date(2026, 3, 29), BERLIN)
    assert (start, end) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    for grain in ("shift", "day", "week", "month"):
        found = periods(date(2026, 3, 29), date(2026, 3, 29), grain, BERLIN, SHIFTS)
        assert found[0].start == start and found[-1].end == end
        assert all(a.end == b.start for a, b in itertools.pairwise(found))


def test_uncovered_time_is_an_off_shift_period() -> None:
    two = parse_shifts("Early=06:00-14:00,Late=14:00-22:00")
    found = periods(date(2026, 5, 4), date(2026, 5, 4), "shift", SHANGHAI, two)
    assert [(p.label, p.start, p.end) for p in found] == [
        # the night after the 3rd's late shift belongs to the 3rd, as a night shift would
        (f"2026-05-03 {OFF_SHIFT}", utc(2026, 5, 3, 16), utc(2026, 5, 3, 22)),
        ("2026-05-04 Early", utc(2026, 5, 3, 22), utc(2026, 5, 4, 6)),
        ("2026-05-04 Late", utc(2026, 5, 4, 6), utc(2026, 5, 4, 14)),
        (f"2026-05-04 {OFF_SHIFT}", utc(2026, 5, 4, 14), utc(2026, 5, 4, 16)),
    ]


def test_weeks_and_months_are_clipped_to_the_window() -> None:
    weeks = periods(date(2026, 4, 29), date(2026, 5, 12), "week", SHANGHAI, SHIFTS)
    assert [(p.label, p.start.date(), p.end.date()) for p in weeks] == [
        ("2026-W18", date(2026, 4, 28), date(2026, 5, 3)),
        ("2026-W19", date(2026, 5, 3), date(2026, 5, 10)),
        ("2026-W20", date(2026, 5, 10), date(2026, 5, 12)),
    ]
    months = periods(date(2026, 12, 30), date(2027, 1, 2), "month", SHANGHAI, SHIFTS)
    assert [p.label for p in months] == ["2026-12", "2027-01"]


def test_a_report_cannot_end_before_it_starts() -> None:
    with pytest.raises(InputError, match="before it starts"):
        window(date(2026, 5, 2), date(2026, 5, 1), BERLIN)
