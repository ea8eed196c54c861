"""The plant's calendar: shifts and report periods as UTC intervals, in the plant's time zone.

Pure functions. A report groups results by comparing `received_at` (UTC) with the intervals
made here, so the database needs no time zone support and a daylight-saving change is
handled once, by `zoneinfo`: a night shift across the spring change lasts 7 hours, across
the autumn change 9. A shift that crosses midnight belongs to the day it starts on.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from defectlens.errors import InputError

Grain = Literal["shift", "day", "week", "month"]
GRAINS: tuple[Grain, ...] = ("shift", "day", "week", "month")
OFF_SHIFT = "-"
"""The shift name of time no configured shift covers (e.g. the night of a two-shift plant)."""
DEFAULT_SHIFTS = "A=06:00-14:00,B=14:00-22:00,C=22:00-06:00"
BUCKET = timedelta(minutes=15)
"""The reports count parts in 15-minute UTC buckets (the rollup tables of migration 0006), so
every period must start and end on a bucket boundary: shifts on a quarter hour in a zone
whose offset from UTC is whole quarter hours (every zone's today)."""

_SHIFT = re.compile(r"^\s*([\w-]{1,16})\s*=\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class Shift:
    name: str
    start: time
    end: time
    """Local wall-clock times; `end <= start` means the shift ends on the next day."""


@dataclass(frozen=True)
class Period:
    """One report period: [start, end) in UTC, named in the plant's words."""

    label: str
    """e.g. `2026-03-28 C`, `2026-03-28`, `2026-W13`, `2026-03`."""
    start: datetime
    end: datetime
    shift: str | None = None
    """The shift's name for shift periods (OFF_SHIFT for uncovered time), else None."""


def plant_zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (DEFECTLENS_TIMEZONE), or InputError saying what to set."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"DEFECTLENS_TIMEZONE = {name!r} is not a time zone; use an IANA name such as "
            "Europe/Berlin or Asia/Shanghai"
        ) from None


def parse_shifts(text: str) -> tuple[Shift, ...]:
    """Shifts from `A=06:00-14:00,B=14:00-22:00,C=22:00-06:00` (DEFECTLENS_SHIFTS).

    Shifts may leave time uncovered but must not overlap; at most one may cross midnight.
    """
    shifts: list[Shift] = []
    for item in text.split(","):
        if not item.strip():
            continue
        match = _SHIFT.match(item)
        if match is None:
            raise InputError(
                f"DEFECTLENS_SHIFTS: {item.strip()!r} is not NAME=HH:MM-HH:MM "
                f"(e.g. {DEFAULT_SHIFTS})"
            )
        name, h0, m0, h1, m1 = match.groups()
        try:
            shift = Shift(name, time(int(h0), int(m0)), time(int(h1), int(m1)))
        except ValueError:
            raise InputError(f"DEFECTLENS_SHIFTS: {item.strip()!r} has an invalid time") from None
        if shift.start == shift.end:
            raise InputError(f"DEFECTLENS_SHIFTS: shift {name} starts when it ends")
        if shift.start.minute % 15 or shift.end.minute % 15:
            raise InputError(
                f"DEFECTLENS_SHIFTS: shift {item.strip()!r} must start and end on a quarter "
                "hour (:00, :15, :30 or :45): reports count parts in quarter hours"
            )
        shifts.append(shift)
    if not shifts:
        raise InputError(f"DEFECTLENS_SHIFTS is empty; e.g. {DEFAULT_SHIFTS}")
    names = [shift.name for shift in shifts]
    if len(set(names)) != len(names):
        raise InputError(f"DEFECTLENS_SHIFTS names a shift twice: {', '.join(names)}")
    minutes = [0] * (24 * 60)
    for shift in shifts:
        for minute in _minutes(shift):
            if minutes[minute]:
                raise InputError(f"DEFECTLENS_SHIFTS: shift {shift.name} overlaps another")
            minutes[minute] = 1
    return tuple(sorted(shifts, key=lambda s: s.start))


def _minutes(shift: Shift) -> range | list[int]:
    start = shift.start.hour * 60 + shift.start.minute
    end = shift.end.hour * 60 + shift.end.minute
    if end > start:
        return range(start, end)
    return [*range(start, 24 * 60), *range(0, end)]


def check_on_bucket(at: datetime, what: str) -> None:
    """InputError unless `at` lies on a BUCKET boundary in UTC (e.g. a period's start in a
    time zone that is not whole quarter hours from UTC, such as a historical local mean
    time)."""
    seconds = at.astimezone(UTC).timestamp()
    if seconds % BUCKET.total_seconds():
        raise InputError(
            f"{what} ({at.isoformat()}) is not on a quarter hour in UTC; reports count parts "
            "in UTC quarter hours: use a DEFECTLENS_TIMEZONE whose offset is whole quarter "
            "hours and shifts on quarter hours"
        )


def window(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC interval from local midnight of `first` to local midnight after `last`."""
    if last < first:
        raise InputError(f"the report ends ({last}) before it starts ({first})")
    return _utc(first, time(0), zone), _utc(last + timedelta(days=1), time(0), zone)


def periods(
    first: date, last: date, grain: Grain, zone: ZoneInfo, shifts: tuple[Shift, ...]
) -> list[Period]:
    """The periods of `grain` that tile `window(first, last)`, in order, clipped to it, so
    every grain counts the same parts. Shift periods include the part of the night shift
    that began the day before `first`, and the uncovered time as OFF_SHIFT periods."""
    start, end = window(first, last, zone)
    if grain == "shift":
        found = _shift_periods(first, last, zone, shifts)
    else:
        found = []
        day = first
        while day <= last:
            following = _next(day, grain)
            found.append(
                Period(_label(day, grain), _utc(day, time(0), zone), _utc(following, time(0), zone))
            )
            day = following
    clipped = []
    for period in found:
        lo, hi = max(period.start, start), min(period.end, end)
        if lo < hi:
            clipped.append(Period(period.label, lo, hi, period.shift))
    return clipped


def _shift_periods(
    first: date, last: date, zone: ZoneInfo, shifts: tuple[Shift, ...]
) -> list[Period]:
    found: list[Period] = []
    day = first - timedelta(days=1)
    while day <= last:
        for shift in shifts:
            ends_on = day + timedelta(days=1) if shift.end <= shift.start else day
            found.append(
                Period(
                    f"{day.isoformat()} {shift.name}",
                    _utc(day, shift.start, zone),
                    _utc(ends_on, shift.end, zone),
                    shift.name,
                )
            )
        day += timedelta(days=1)
    found.sort(key=lambda period: period.start)
    # The time no shift covers, named OFF_SHIFT after the day of the shift it follows.
    gaps = []
    for before, after in itertools.pairwise(found):
        if before.end < after.start:
            day_label = before.label.rsplit(" ", 1)[0]
            gaps.append(Period(f"{day_label} {OFF_SHIFT}", before.end, after.start, OFF_SHIFT))
    window_start, window_end = window(first, last, zone)
    if found and found[0].start > window_start:
        gaps.append(
            Period(f"{first.isoformat()} {OFF_SHIFT}", window_start, found[0].start, OFF_SHIFT)
        )
    if found and found[-1].end < window_end:
        gaps.append(Period(f"{last.isoformat()} {OFF_SHIFT}", found[-1].end, window_end, OFF_SHIFT))
    return sorted([*found, *gaps], key=lambda period: period.start)


def _next(day: date, grain: Grain) -> date:
    if grain == "day":
        return day + timedelta(days=1)
    if grain == "week":
        return day + timedelta(days=7 - day.weekday())
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _label(day: date, grain: Grain) -> str:
    if grain == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if grain == "month":
        return f"{day.year}-{day.month:02d}"
    return day.isoformat()


def _utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Local wall-clock `day at` in UTC. A time the spring change skips is read with the
    offset before it (02:30 becomes 03:30 summer time); a repeated one is the first."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
