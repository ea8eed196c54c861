"""The report's SQL: counts grouped in the database (SQLite and PostgreSQL alike), never
result rows pulled into Python.

Periods are joined as a VALUES list of UTC intervals (`calendar.periods`), so grouping by
shift or day in the plant's time zone needs no date function of either database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    case,
    column,
    exists,
    func,
    literal,
    select,
    values,
)
from sqlalchemy.orm import aliased

from defectlens.inference.reports.calendar import Period
from defectlens.inference.reports.figures import Counts
from defectlens.inference.store import Database
from defectlens.inference.store.tables import (
    LabelRow,
    ResultDefectRow,
    ResultRow,
    StationRow,
    UTCDateTime,
)

Dimension = Literal["line", "station", "product"]
DIMENSIONS: tuple[Dimension, ...] = ("line", "station", "product")
NONE_KEY = "(none)"
"""The group of results that name no line or product."""


@dataclass(frozen=True)
class Scope:
    """Which results a report covers: received in [start, end), optionally one line and
    one station."""

    start: datetime
    end: datetime
    line: str | None = None
    station: str | None = None

    def where(self, *, times: bool = True) -> list[ColumnElement[bool]]:
        """The conditions; `times=False` leaves out the time bounds, for a query whose
        periods already lie within them."""
        r = ResultRow
        found = [r.received_at >= self.start, r.received_at < self.end] if times else []
        if self.line is not None:
            found.append(r.line == self.line)
        if self.station is not None:
            found.append(r.station == self.station)
        return found


def _first_inspection() -> ColumnElement[int]:
    """1 for a part's first inspection at its station: no earlier result (ids are
    time-ordered) with the same serial there; a result without serial is its own part.

    One seek in ix_results_station_serial_result_id per result. Without it SQLite (which
    has no statistics, the service never runs ANALYZE) walked a station's results for each
    result: a 30-day total of 200,000 results took over a minute (docs/reports.md)."""
    earlier = aliased(ResultRow)
    seen_before = exists().where(
        earlier.serial == ResultRow.serial,
        earlier.station == ResultRow.station,
        earlier.result_id < ResultRow.result_id,
    )
    return case((ResultRow.serial.is_(None), 1), (seen_before, 0), else_=1)


def _count_columns() -> list[Any]:
    first = _first_inspection()
    ng = case((ResultRow.verdict == "NG", 1), else_=0)
    first_ok = case((ResultRow.verdict == "OK", first), else_=0)
    return [
        func.count().label("parts"),
        func.coalesce(func.sum(ng), 0).label("ng"),
        func.coalesce(func.sum(first), 0).label("first"),
        func.coalesce(func.sum(first_ok), 0).label("first_ok"),
    ]


def _counts(key: str, row: Any) -> Counts:
    return Counts(key, int(row.parts), int(row.ng), int(row.first), int(row.first_ok))


def totals(db: Database, scope: Scope, key: str = "all") -> Counts:
    """All results in `scope`."""
    with db.read() as session:
        row = session.execute(select(*_count_columns()).where(*scope.where())).one()
    return _counts(key, row)


def by_dimension(db: Database, scope: Scope, dimension: Dimension) -> list[Counts]:
    """Counts per line, station or product; for stations, every known station of the scope
    is listed, with no parts if it inspected none."""
    key = func.coalesce(getattr(ResultRow, dimension), NONE_KEY)
    query = select(key.label("key"), *_count_columns()).where(*scope.where()).group_by(key)
    with db.read() as session:
        found = {str(row.key): _counts(str(row.key), row) for row in session.execute(query)}
        if dimension == "station" and scope.station is None:
            stations = select(StationRow.id)
            if scope.line is not None:
                stations = stations.where(StationRow.line == scope.line)
            for station in session.scalars(stations):
                found.setdefault(station, Counts(station, 0, 0, 0, 0))
    return [found[name] for name in sorted(found)]


def _periods_table(periods: list[Period]) -> Any:
    # A CTE, `WITH periods(idx, start, "end") AS (VALUES ...)`: SQLite does not take the
    # `(VALUES ...) AS periods (columns)` form.
    return (
        values(
            column("idx", Integer),
            column("start", UTCDateTime()),
            column("end", UTCDateTime()),
            name="periods",
        )
        .data([(i, period.start, period.end) for i, period in enumerate(periods)])
        .cte("periods")
    )


def _by_period(db: Database, scope: Scope, periods: list[Period], *keys: Any) -> Select[Any]:
    table = _periods_table(periods)
    joined = and_(ResultRow.received_at >= table.c.start, ResultRow.received_at < table.c.end)
    # The periods tile the scope's window. Given its bounds too, SQLite searched the index by
    # those and read the whole window once per period (5 times slower with 91 shifts);
    # PostgreSQL needs them, or it joins every result to every period.
    times = db.dialect != "sqlite"
    return (
        select(table.c.idx, *keys, *_count_columns())
        .select_from(ResultRow)
        .join(table, joined)
        .where(*scope.where(times=times))
        .group_by(table.c.idx, *keys)
    )


def by_period(db: Database, scope: Scope, periods: list[Period]) -> list[Counts]:
    """Counts per period, in the periods' order; a period without parts has zeros."""
    if not periods:
        return []
    with db.read() as session:
        rows = {int(row.idx): row for row in session.execute(_by_period(db, scope, periods))}
    return [
        _counts(period.label, rows[i]) if i in rows else Counts(period.label, 0, 0, 0, 0)
        for i, period in enumerate(periods)
    ]


def by_shift(db: Database, scope: Scope, periods: list[Period]) -> list[Counts]:
    """Counts per shift name over all days (from shift periods)."""
    totals_by_shift: dict[str, list[int]] = {}
    for period, counts in zip(periods, by_period(db, scope, periods), strict=True):
        total = totals_by_shift.setdefault(period.shift or "", [0, 0, 0, 0])
        for i, value in enumerate((counts.parts, counts.ng, counts.first, counts.first_ok)):
            total[i] += value
    return [Counts(name, *values) for name, values in totals_by_shift.items()]


def by_station_and_period(
    db: Database, scope: Scope, periods: list[Period]
) -> dict[str, list[tuple[str, int, int]]]:
    """(label, parts, NG) per period for each station: the p-chart's subgroups; every
    period is listed for every station that inspected parts in the scope."""
    if not periods:
        return {}
    with db.read() as session:
        rows = list(session.execute(_by_period(db, scope, periods, ResultRow.station)))
    found: dict[str, dict[int, tuple[int, int]]] = {}
    for row in rows:
        found.setdefault(str(row.station), {})[int(row.idx)] = (int(row.parts), int(row.ng))
    return {
        station: [(period.label, *counts.get(i, (0, 0))) for i, period in enumerate(periods)]
        for station, counts in sorted(found.items())
    }


def model_defect_classes(db: Database, scope: Scope) -> dict[str, int]:
    """Parts per defect class the model found (a part with two scratches counts once)."""
    query = (
        select(ResultDefectRow.class_, func.count(func.distinct(ResultDefectRow.result_id)))
        .join(ResultRow, ResultRow.result_id == ResultDefectRow.result_id)
        .where(*scope.where())
        .group_by(ResultDefectRow.class_)
    )
    with db.read() as session:
        return {str(name): int(count) for name, count in session.execute(query)}


def qa_defect_classes(db: Database, scope: Scope) -> dict[str, int]:
    """Parts per defect class QA labelled NG, by each result's standing label (one no later
    label overrides)."""
    later = aliased(LabelRow)
    standing = ~exists().where(later.overrides_label_id == LabelRow.id)
    name = func.coalesce(LabelRow.defect_class, literal("(unspecified)", String))
    query = (
        select(name.label("name"), func.count(func.distinct(LabelRow.result_id)))
        .join(ResultRow, ResultRow.result_id == LabelRow.result_id)
        .where(*scope.where(), LabelRow.label == "NG", standing)
        .group_by(name)
    )
    with db.read() as session:
        return {str(row[0]): int(row[1]) for row in session.execute(query)}
