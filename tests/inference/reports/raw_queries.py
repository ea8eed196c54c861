"""The report's figures counted straight from `results`, `result_defects` and `labels`: the
oracle the rollup tables (migration 0006) are checked against, in the tests only. The page
reads the rollups (`inference/reports/queries.py`); these read every result of the period.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, exists, func, literal, select
from sqlalchemy.orm import aliased

from defectlens.inference.reports.calendar import Period
from defectlens.inference.reports.figures import Counts
from defectlens.inference.reports.queries import NONE_KEY, Dimension, Scope
from defectlens.inference.store import Database
from defectlens.inference.store.tables import LabelRow, ResultDefectRow, ResultRow


def _where(scope: Scope) -> list[ColumnElement[bool]]:
    r = ResultRow
    found = [r.received_at >= scope.start, r.received_at < scope.end]
    if scope.line is not None:
        found.append(r.line == scope.line)
    if scope.station is not None:
        found.append(r.station == scope.station)
    return found


def _first() -> ColumnElement[int]:
    earlier = aliased(ResultRow)
    seen_before = exists().where(
        earlier.serial == ResultRow.serial,
        earlier.station == ResultRow.station,
        earlier.result_id < ResultRow.result_id,
    )
    return case((ResultRow.serial.is_(None), 1), (seen_before, 0), else_=1)


def _columns() -> list[Any]:
    first = _first()
    return [
        func.count().label("parts"),
        func.coalesce(func.sum(case((ResultRow.verdict == "NG", 1), else_=0)), 0).label("ng"),
        func.coalesce(func.sum(first), 0).label("first"),
        func.coalesce(func.sum(case((ResultRow.verdict == "OK", first), else_=0)), 0).label(
            "first_ok"
        ),
    ]


def _counts(key: str, row: Any) -> Counts:
    return Counts(key, int(row.parts), int(row.ng), int(row.first), int(row.first_ok))


def totals(db: Database, scope: Scope) -> Counts:
    with db.read() as session:
        return _counts("all", session.execute(select(*_columns()).where(*_where(scope))).one())


def by_dimension(db: Database, scope: Scope, dimension: Dimension) -> list[Counts]:
    """Only the groups with parts (the rollup query adds the known stations without)."""
    key = func.coalesce(getattr(ResultRow, dimension), NONE_KEY)
    query = select(key.label("key"), *_columns()).where(*_where(scope)).group_by(key)
    with db.read() as session:
        return sorted(
            (_counts(str(row.key), row) for row in session.execute(query)), key=lambda c: c.key
        )


def by_period(db: Database, scope: Scope, periods: list[Period]) -> list[Counts]:
    found = []
    for period in periods:
        within = Scope(period.start, period.end, scope.line, scope.station)
        found.append(Counts(period.label, *_values(totals(db, within))))
    return found


def _values(c: Counts) -> tuple[int, int, int, int]:
    return c.parts, c.ng, c.first, c.first_ok


def model_defect_classes(db: Database, scope: Scope) -> dict[str, int]:
    query = (
        select(ResultDefectRow.class_, func.count(func.distinct(ResultDefectRow.result_id)))
        .join(ResultRow, ResultRow.result_id == ResultDefectRow.result_id)
        .where(*_where(scope))
        .group_by(ResultDefectRow.class_)
    )
    with db.read() as session:
        return {str(name): int(count) for name, count in session.execute(query)}


def _standing() -> ColumnElement[bool]:
    later = aliased(LabelRow)
    return ~exists().where(later.overrides_label_id == LabelRow.id)


def qa_defect_classes(db: Database, scope: Scope) -> dict[str, int]:
    name = func.coalesce(LabelRow.defect_class, literal("(unspecified)", String))
    query = (
        select(name.label("name"), func.count(func.distinct(LabelRow.result_id)))
        .join(ResultRow, ResultRow.result_id == LabelRow.result_id)
        .where(*_where(scope), LabelRow.label == "NG", _standing())
        .group_by(name)
    )
    with db.read() as session:
        return {str(row[0]): int(row[1]) for row in session.execute(query)}


def labels_by_model(db: Database, scope: Scope) -> dict[tuple[str, str], tuple[int, int]]:
    """(standing labels, those disagreeing with the verdict) per model name and version."""
    disagrees = case((LabelRow.label != ResultRow.verdict, 1), else_=0)
    query = (
        select(ResultRow.model_name, ResultRow.model_version, func.count(), func.sum(disagrees))
        .join(LabelRow, and_(LabelRow.result_id == ResultRow.result_id, _standing()))
        .where(*_where(scope))
        .group_by(ResultRow.model_name, ResultRow.model_version)
    )
    with db.read() as session:
        return {(str(n), str(v)): (int(a), int(b)) for n, v, a, b in session.execute(query)}
