"""The report's SQL: sums over the rollup tables (migration 0006: counts per 15-minute UTC
bucket, station, line, product and model version, kept up to date by database triggers as
results and labels are stored), on SQLite and PostgreSQL alike, never result rows pulled
into Python.

Periods are joined as a VALUES list of UTC intervals (`calendar.periods`), so grouping by
shift or day in the plant's time zone needs no date function of either database; every
period starts and ends on a bucket boundary (`calendar` checks the shifts and the zone).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    column,
    exists,
    func,
    literal,
    literal_column,
    select,
    values,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, aliased

from defectlens.inference.reports.calendar import Period, check_on_bucket
from defectlens.inference.reports.figures import Counts
from defectlens.inference.reports.model_health import BINS, ModelCounts
from defectlens.inference.store import Database
from defectlens.inference.store.tables import (
    LabelRow,
    ModelVersionRow,
    ReportCountRow,
    ReportDefectCountRow,
    ReportScoreCountRow,
    StationRow,
    UTCDateTime,
)

Dimension = Literal["line", "station", "product"]
DIMENSIONS: tuple[Dimension, ...] = ("line", "station", "product")
NONE_KEY = "(none)"
"""The group of results that name no line or product."""

Rollup = type[ReportCountRow] | type[ReportDefectCountRow] | type[ReportScoreCountRow]


@dataclass(frozen=True)
class Scope:
    """Which results a report covers: received in [start, end), optionally one line and
    one station. Both bounds lie on bucket boundaries."""

    start: datetime
    end: datetime
    line: str | None = None
    station: str | None = None

    def __post_init__(self) -> None:
        check_on_bucket(self.start, "the report's start")
        check_on_bucket(self.end, "the report's end")

    def where(self, table: Rollup = ReportCountRow, *, times: bool = True) -> list[Any]:
        """The conditions on a rollup table; `times=False` leaves out the time bounds, for a
        query whose periods already lie within them."""
        found = [table.bucket >= self.start, table.bucket < self.end] if times else []
        if self.line is not None and not issubclass(table, ReportScoreCountRow):
            found.append(table.line == self.line)  # score bins are kept per station only
        if self.station is not None:
            found.append(table.station == self.station)
        return found


def _count_columns() -> list[Any]:
    c = ReportCountRow
    return [
        func.coalesce(func.sum(c.parts), 0).label("parts"),
        func.coalesce(func.sum(c.ng), 0).label("ng"),
        func.coalesce(func.sum(c.first), 0).label("first"),
        func.coalesce(func.sum(c.first_ok), 0).label("first_ok"),
    ]


def _counts(key: str, row: Any) -> Counts:
    return Counts(key, int(row.parts), int(row.ng), int(row.first), int(row.first_ok))


@dataclass(frozen=True)
class Breakdown:
    """A scope's counts in all and by line, station and product, from one query."""

    total: Counts
    by_line: list[Counts]
    by_station: list[Counts]
    by_product: list[Counts]


def _add(counts: dict[str, Counts], key: str, part: Counts) -> None:
    before = counts.get(key, Counts(key, 0, 0, 0, 0))
    counts[key] = Counts(
        key,
        before.parts + part.parts,
        before.ng + part.ng,
        before.first + part.first,
        before.first_ok + part.first_ok,
    )


def breakdown(db: Database, scope: Scope) -> Breakdown:
    """Counts in all and per line, station and product: one query grouped by all three
    (a few hundred rows at most), summed here. Every known station of the scope is listed,
    with no parts if it inspected none."""
    c = ReportCountRow
    keys = (c.station, _named(c.line).label("line"), _named(c.product).label("product"))
    query = (
        select(*keys, *_count_columns())
        .where(*scope.where())
        .group_by(c.station, c.line, c.product)
    )
    total: dict[str, Counts] = {}
    found: dict[Dimension, dict[str, Counts]] = {d: {} for d in DIMENSIONS}
    with db.read() as session:
        for row in session.execute(query):
            part = _counts("all", row)
            _add(total, "all", part)
            for dimension in DIMENSIONS:
                name = str(getattr(row, dimension))
                _add(found[dimension], name, part)
        if scope.station is None:
            stations = select(StationRow.id)
            if scope.line is not None:
                stations = stations.where(StationRow.line == scope.line)
            for station in session.scalars(stations):
                found["station"].setdefault(station, Counts(station, 0, 0, 0, 0))

    def listed(dimension: Dimension) -> list[Counts]:
        return [found[dimension][name] for name in sorted(found[dimension])]

    return Breakdown(
        total.get("all", Counts("all", 0, 0, 0, 0)),
        listed("line"),
        listed("station"),
        listed("product"),
    )


def totals(db: Database, scope: Scope) -> Counts:
    """All results in `scope`."""
    return breakdown(db, scope).total


def _named(value: InstrumentedAttribute[str]) -> ColumnElement[str]:
    """A rollup's line or product, '' (the result named none) as NONE_KEY."""
    return case((value == "", literal(NONE_KEY)), else_=value)


def by_dimension(db: Database, scope: Scope, dimension: Dimension) -> list[Counts]:
    """Counts per line, station or product (`breakdown`)."""
    found = breakdown(db, scope)
    return {"line": found.by_line, "station": found.by_station, "product": found.by_product}[
        dimension
    ]


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
    """Sums per period index (`idx`, in `periods`' order) and `keys`. The periods must tile
    an interval (`calendar.periods` does), each on bucket boundaries."""
    for period, following in itertools.pairwise(periods):
        if period.end != following.start:
            raise ValueError(f"periods {period.label} and {following.label} do not meet")
    for period in periods:
        check_on_bucket(period.start, f"period {period.label}")
        check_on_bucket(period.end, f"period {period.label}")
    c = ReportCountRow
    if db.dialect == "postgresql":
        # width_bucket finds each bucket's period by bisection in the periods' bounds; a join
        # to the periods compared every bucket with every period (0.85 s for a month's 91
        # shifts, against 0.07 s).
        bounds = bindparam(
            "period_bounds",
            [period.start for period in periods] + [periods[-1].end],
            type_=ARRAY(DateTime(timezone=True)),
        )
        index = (func.width_bucket(c.bucket, bounds) - 1).label("idx")
        return (
            select(index, *keys, *_count_columns())
            .where(*scope.where())
            .group_by(literal_column("idx"), *keys)
        )
    # SQLite searches the key once per period. Given the scope's time bounds too, it
    # searched by those and read the whole window once per period.
    table = _periods_table(periods)
    return (
        select(table.c.idx, *keys, *_count_columns())
        .select_from(c)
        .join(table, and_(c.bucket >= table.c.start, c.bucket < table.c.end))
        .where(*scope.where(times=False))
        .group_by(table.c.idx, *keys)
    )


@dataclass(frozen=True)
class PeriodCounts:
    """Counts per period, in all and per station, from one query."""

    periods: list[Period]
    total: list[Counts]
    """One a period, in order; a period without parts has zeros."""
    by_station: dict[str, list[Counts]]
    """One a period for each station that inspected parts in the scope."""

    def subgroups(self) -> dict[str, list[tuple[str, int, int]]]:
        """(label, parts, NG) per period for each station: the p-chart's subgroups."""
        return {
            station: [(c.key, c.parts, c.ng) for c in counts]
            for station, counts in self.by_station.items()
        }

    def by_shift(self) -> list[Counts]:
        """Counts per shift name over all days (of shift periods)."""
        found: dict[str, Counts] = {}
        for period, counts in zip(self.periods, self.total, strict=True):
            _add(found, period.shift or "", counts)
        return list(found.values())


def period_counts(db: Database, scope: Scope, periods: list[Period]) -> PeriodCounts:
    """Counts per period and station (`periods` tile the scope's window)."""
    if not periods:
        return PeriodCounts([], [], {})
    with db.read() as session:
        rows = list(session.execute(_by_period(db, scope, periods, ReportCountRow.station)))
    total: list[dict[str, Counts]] = [{} for _ in periods]
    stations: dict[str, list[dict[str, Counts]]] = {}
    for row in rows:
        i = int(row.idx)
        if not 0 <= i < len(periods):
            continue
        label = periods[i].label
        part = _counts(label, row)
        _add(total[i], label, part)
        _add(stations.setdefault(str(row.station), [{} for _ in periods])[i], label, part)

    def listed(found: list[dict[str, Counts]]) -> list[Counts]:
        return [
            found[i].get(period.label, Counts(period.label, 0, 0, 0, 0))
            for i, period in enumerate(periods)
        ]

    return PeriodCounts(
        periods,
        listed(total),
        {station: listed(found) for station, found in sorted(stations.items())},
    )


def by_period(db: Database, scope: Scope, periods: list[Period]) -> list[Counts]:
    """Counts per period, in the periods' order; a period without parts has zeros."""
    return period_counts(db, scope, periods).total


def by_shift(db: Database, scope: Scope, periods: list[Period]) -> list[Counts]:
    """Counts per shift name over all days (from shift periods)."""
    return period_counts(db, scope, periods).by_shift()


def by_station_and_period(
    db: Database, scope: Scope, periods: list[Period]
) -> dict[str, list[tuple[str, int, int]]]:
    """(label, parts, NG) per period for each station: the p-chart's subgroups; every
    period is listed for every station that inspected parts in the scope."""
    return period_counts(db, scope, periods).subgroups()


def _defect_classes(db: Database, scope: Scope, source: str) -> dict[str, int]:
    d = ReportDefectCountRow
    parts = func.sum(d.parts)
    query = (
        select(d.defect_class, parts)
        .where(*scope.where(d), d.source == source)
        .group_by(d.defect_class)
        .having(parts > 0)
    )
    with db.read() as session:
        return {str(name): int(count) for name, count in session.execute(query)}


def model_defect_classes(db: Database, scope: Scope) -> dict[str, int]:
    """Parts per defect class the model found (a part with two scratches counts once)."""
    return _defect_classes(db, scope, "model")


def qa_defect_classes(db: Database, scope: Scope) -> dict[str, int]:
    """Parts per defect class QA labelled NG, by each result's standing label (one no later
    label corrects); '(unspecified)' for an NG label without class."""
    return _defect_classes(db, scope, "qa")


def by_model(db: Database, scope: Scope) -> list[ModelCounts]:
    """Parts, NG, parts near the threshold and standing QA labels per model version."""
    c = ReportCountRow
    sums = [
        func.sum(column) for column in (c.parts, c.ng, c.near_threshold, c.labelled, c.overridden)
    ]
    query = (
        select(c.model_name, c.model_version, *sums)
        .where(*scope.where())
        .group_by(c.model_name, c.model_version)
        .order_by(c.model_name, c.model_version)
    )
    with db.read() as session:
        return [
            ModelCounts(str(name), str(version), *(int(v) for v in values))
            for name, version, *values in session.execute(query)
        ]


def score_bins(db: Database, scope: Scope) -> dict[tuple[str, str], list[int]]:
    """Parts per score bin (`model_health.BINS`) per model name and version."""
    s = ReportScoreCountRow
    query = (
        select(s.model_name, s.model_version, s.bin, func.sum(s.parts))
        .where(*scope.where(s))
        .group_by(s.model_name, s.model_version, s.bin)
    )
    found: dict[tuple[str, str], list[int]] = {}
    with db.read() as session:
        for name, version, index, parts in session.execute(query):
            found.setdefault((str(name), str(version)), [0] * BINS)[int(index)] = int(parts)
    return found


def validation_quantiles(db: Database) -> dict[tuple[str, str], list[float]]:
    """The good validation scores' quantiles of each registered model version whose card
    has them (`metrics.good_score_quantiles`, written by training since the reports' model
    health); a version without is left out."""
    found: dict[tuple[str, str], list[float]] = {}
    query = select(ModelVersionRow.name, ModelVersionRow.version, ModelVersionRow.metrics)
    with db.read() as session:
        for name, version, metrics in session.execute(query):
            quantiles = (metrics or {}).get("good_score_quantiles")
            if isinstance(quantiles, list) and len(quantiles) >= 2:
                found[(str(name), str(version))] = [float(q) for q in quantiles]
    return found


def standing_labels(db: Database, result_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """The standing QA label (label, defect class) of each of `result_ids` that has one: the
    latest label no later label corrects."""
    if not result_ids:
        return {}
    later = aliased(LabelRow)
    query = (
        select(LabelRow.result_id, LabelRow.label, LabelRow.defect_class)
        .where(
            LabelRow.result_id.in_(result_ids),
            ~exists().where(later.overrides_label_id == LabelRow.id),
        )
        .order_by(LabelRow.id)
    )
    with db.read() as session:
        return {str(r): (str(label), c) for r, label, c in session.execute(query)}
