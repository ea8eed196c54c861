"""Comparisons in the store: a candidate against a station's production model, its progress
while it runs and its figures once done, readable from any instance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import aliased

from defectlens.errors import NotFound
from defectlens.inference.store.audit import record_audit
from defectlens.inference.store.checks import check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.tables import (
    VERDICTS,
    ComparisonRow,
    LabelRow,
    ResultRow,
    utc_now,
)


@dataclass(frozen=True)
class Comparison:
    id: int
    station: str
    candidate_version_id: int
    production_version_id: int
    source: str
    status: str
    """`running`, `succeeded` or `failed`."""
    done: int
    total: int
    figures: dict[str, Any]
    error: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: ComparisonRow) -> Comparison:
        return cls(
            row.id,
            row.station_id,
            row.candidate_version_id,
            row.production_version_id,
            row.source,
            row.status,
            row.done,
            row.total,
            dict(row.figures or {}),
            row.error,
            row.created_by,
            row.created_at,
            row.finished_at,
        )


class ComparisonStore:
    """Comparisons: created running, given progress, finished once."""

    db: Database

    def create_comparison(
        self, station: str, candidate_id: int, production_id: int, source: str, actor: str
    ) -> Comparison:
        with self.db.write() as session:
            row = ComparisonRow(
                station_id=station,
                candidate_version_id=candidate_id,
                production_version_id=production_id,
                source=source,
                status="running",
                done=0,
                total=0,
                figures={},
                created_by=actor,
                created_at=utc_now(),
            )
            check_row(row)
            session.add(row)
            session.flush()
            record_audit(
                session,
                actor,
                "compare.start",
                f"station:{station}",
                {"comparison": row.id, "candidate": candidate_id, "production": production_id},
            )
            return Comparison.of(row)

    def comparison_progress(self, comparison_id: int, done: int, total: int) -> None:
        with self.db.write() as session:
            session.execute(
                update(ComparisonRow)
                .where(ComparisonRow.id == comparison_id)
                .values(done=done, total=total)
            )

    def finish_comparison(
        self, comparison_id: int, figures: dict[str, Any] | None, error: str | None
    ) -> Comparison:
        """Done with `figures`, or failed with `error`."""
        with self.db.write() as session:
            row = session.get(ComparisonRow, comparison_id, with_for_update=True)
            if row is None:
                raise NotFound(f"comparison {comparison_id} does not exist")
            row.status = "failed" if error is not None else "succeeded"
            row.figures = figures or {}
            row.error = error
            row.finished_at = utc_now()
            check_row(row)
            session.flush()
            return Comparison.of(row)

    def labelled_results(self, station: str, limit: int) -> list[tuple[str, datetime, str]]:
        """(result id, received at, label) of the station's results with a standing QA
        label (one no later label overrides), newest first."""
        later = aliased(LabelRow)
        query = (
            select(ResultRow.result_id, ResultRow.received_at, LabelRow.label)
            .join(LabelRow, LabelRow.result_id == ResultRow.result_id)
            .where(
                ResultRow.station == station,
                LabelRow.label.in_(VERDICTS),
                ~exists().where(later.overrides_label_id == LabelRow.id),
            )
            .order_by(ResultRow.result_id.desc())
            .limit(limit)
        )
        with self.db.read() as session:
            return [(r, at, label) for r, at, label in session.execute(query)]

    def fail_stale_comparisons(self, started_before: datetime) -> int:
        """Fail the comparisons still running that started before `started_before`: the
        service computing them stopped. Returns how many (a read first, so a pass that finds
        none writes nothing)."""
        stale = select(ComparisonRow.id).where(
            ComparisonRow.status == "running", ComparisonRow.created_at < started_before
        )
        with self.db.read() as session:
            if session.scalars(stale.limit(1)).first() is None:
                return 0
        with self.db.write() as session:
            done = session.execute(
                update(ComparisonRow)
                .where(ComparisonRow.id.in_(stale))
                .values(
                    status="failed",
                    finished_at=utc_now(),
                    error="the service computing it stopped before it finished; start it again",
                )
            )
            return int(done.rowcount)  # type: ignore[attr-defined]

    def get_comparison(self, comparison_id: int) -> Comparison:
        with self.db.read() as session:
            row = session.get(ComparisonRow, comparison_id)
            if row is None:
                raise NotFound(
                    f"comparison {comparison_id} does not exist; GET /v1/compare lists them"
                )
            return Comparison.of(row)

    def list_comparisons(self, station: str | None = None, limit: int = 50) -> list[Comparison]:
        """Newest first."""
        query = select(ComparisonRow).order_by(ComparisonRow.id.desc()).limit(limit)
        if station is not None:
            query = query.where(ComparisonRow.station_id == station)
        with self.db.read() as session:
            return [Comparison.of(row) for row in session.scalars(query)]
