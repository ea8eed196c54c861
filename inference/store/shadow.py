"""Shadow runs in the store: a candidate model beside a station's production model on live
parts, its answer on each part it ran on, and the figures of the two side by side.

A part the two models disagree on keeps its image whatever retention says (its image rows
are marked as a label's are), so QA can look at it and label it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from defectlens.errors import Conflict, NotFound
from defectlens.inference.store.audit import record_audit
from defectlens.inference.store.checks import check_image_path, check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.records import StoredImage
from defectlens.inference.store.tables import (
    ImageRow,
    ModelVersionRow,
    ResultRow,
    ShadowResultRow,
    ShadowRunRow,
    StationRow,
    utc_now,
)

MAX_DISAGREEMENTS = 500
"""The most disagreements a figures call lists (newest first); the counts cover them all."""


@dataclass(frozen=True)
class ShadowRun:
    id: int
    station: str
    model_version_id: int
    sample_fraction: float
    started_at: datetime
    started_by: str
    until: datetime
    stopped_at: datetime | None
    stopped_by: str | None
    seen: int
    skipped: int

    @property
    def ended_at(self) -> datetime | None:
        """When it stopped or ran out (None while it runs)."""
        if self.stopped_at is not None:
            return self.stopped_at
        return self.until if self.until <= utc_now() else None

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @classmethod
    def of(cls, row: ShadowRunRow) -> ShadowRun:
        return cls(
            row.id,
            row.station_id,
            row.model_version_id,
            row.sample_fraction,
            row.started_at,
            row.started_by,
            row.until,
            row.stopped_at,
            row.stopped_by,
            row.seen,
            row.skipped,
        )


@dataclass(frozen=True)
class ShadowAnswer:
    """The candidate's answer on one part, beside the production verdict the line got."""

    result_id: str
    verdict: str
    score: float
    threshold: float
    defects: list[dict[str, Any]]
    production_verdict: str
    production_score: float
    model_ms: float

    @property
    def agrees(self) -> bool:
        return self.verdict == self.production_verdict


@dataclass(frozen=True)
class Disagreement:
    result_id: str
    received_at: datetime
    serial: str | None
    production_verdict: str
    production_score: float
    candidate_verdict: str
    candidate_score: float


@dataclass(frozen=True)
class ShadowFigures:
    run: ShadowRun
    shadowed: int
    agreed: int
    candidate_ng_production_ok: int
    """Parts the candidate would have rejected that the line passed."""
    candidate_ok_production_ng: int
    """Parts the candidate would have passed that the line rejected."""
    disagreements: list[Disagreement]
    """Newest first, at most `MAX_DISAGREEMENTS`."""

    @property
    def agreement_rate(self) -> float | None:
        return self.agreed / self.shadowed if self.shadowed else None


class ShadowStore:
    """Shadow runs and their answers."""

    db: Database
    instance: str

    def start_shadow_run(
        self,
        station: str,
        model_version_id: int,
        sample_fraction: float,
        until: datetime,
        actor: str,
    ) -> ShadowRun:
        """A new run; `Conflict` while another runs on the station, `NotFound` for an unknown
        station or model version."""
        with self.db.write() as session:
            if session.get(StationRow, station, with_for_update=True) is None:
                raise NotFound(f"station {station!r} is not known; create it first")
            if session.get(ModelVersionRow, model_version_id) is None:
                raise NotFound(
                    f"model version {model_version_id} is not registered; GET /v1/models lists them"
                )
            now = utc_now()
            running = session.scalars(
                select(ShadowRunRow).where(
                    ShadowRunRow.station_id == station,
                    ShadowRunRow.stopped_at.is_(None),
                    ShadowRunRow.until > now,
                )
            ).first()
            if running is not None:
                raise Conflict(
                    f"station {station} already runs shadow run {running.id} (model version "
                    f"{running.model_version_id}) until {running.until:%Y-%m-%d %H:%M} UTC; "
                    "stop it first"
                )
            row = ShadowRunRow(
                station_id=station,
                model_version_id=model_version_id,
                sample_fraction=sample_fraction,
                started_at=now,
                started_by=actor,
                until=until,
                seen=0,
                skipped=0,
            )
            check_row(row)
            session.add(row)
            session.flush()
            record_audit(
                session,
                actor,
                "shadow.start",
                f"station:{station}",
                {
                    "shadow_run": row.id,
                    "model_version_id": model_version_id,
                    "sample_fraction": sample_fraction,
                    "until": until.isoformat(),
                },
            )
            return ShadowRun.of(row)

    def stop_shadow_run(self, run_id: int, actor: str) -> ShadowRun:
        """Stop a run (one already ended is returned as it is, with no audit entry)."""
        with self.db.write() as session:
            row = session.get(ShadowRunRow, run_id, with_for_update=True)
            if row is None:
                raise NotFound(f"shadow run {run_id} does not exist")
            if ShadowRun.of(row).active:
                row.stopped_at = utc_now()
                row.stopped_by = actor
                record_audit(
                    session,
                    actor,
                    "shadow.stop",
                    f"station:{row.station_id}",
                    {"shadow_run": run_id},
                )
                session.flush()
            return ShadowRun.of(row)

    def get_shadow_run(self, run_id: int) -> ShadowRun:
        with self.db.read() as session:
            row = session.get(ShadowRunRow, run_id)
            if row is None:
                raise NotFound(f"shadow run {run_id} does not exist")
            return ShadowRun.of(row)

    def list_shadow_runs(self, station: str | None = None, limit: int = 50) -> list[ShadowRun]:
        """Newest first."""
        query = select(ShadowRunRow).order_by(ShadowRunRow.id.desc()).limit(limit)
        if station is not None:
            query = query.where(ShadowRunRow.station_id == station)
        with self.db.read() as session:
            return [ShadowRun.of(row) for row in session.scalars(query)]

    def active_shadow_runs(self) -> list[ShadowRun]:
        """Runs neither stopped nor past their end."""
        now = utc_now()
        query = select(ShadowRunRow).where(
            ShadowRunRow.stopped_at.is_(None), ShadowRunRow.until > now
        )
        with self.db.read() as session:
            return [ShadowRun.of(row) for row in session.scalars(query)]

    def count_shadow_parts(self, run_id: int, seen: int, skipped: int) -> None:
        """Add this instance's parts seen and skipped since its last report."""
        if not seen and not skipped:
            return
        with self.db.write() as session:
            session.execute(
                update(ShadowRunRow)
                .where(ShadowRunRow.id == run_id)
                .values(seen=ShadowRunRow.seen + seen, skipped=ShadowRunRow.skipped + skipped)
            )

    def save_shadow_answer(
        self, run_id: int, answer: ShadowAnswer, image: StoredImage | None = None
    ) -> None:
        """Store the candidate's answer. On a disagreement, the result's images are kept
        from retention; `image` is the part's image written for it when the line's result
        kept none (its row is added and the result points at it)."""
        with self.db.write() as session:
            row = ShadowResultRow(
                run_id=run_id,
                result_id=answer.result_id,
                verdict=answer.verdict,
                score=answer.score,
                threshold=answer.threshold,
                defects=answer.defects,
                production_verdict=answer.production_verdict,
                production_score=answer.production_score,
                model_ms=answer.model_ms,
                created_at=utc_now(),
            )
            check_row(row)
            session.add(row)
            if answer.agrees:
                return
            if image is not None:
                check_image_path(image.path)
                session.add(
                    ImageRow(
                        result_id=answer.result_id,
                        kind=image.kind,
                        path=image.path,
                        bytes=image.bytes,
                        labeled=True,
                        instance=self.instance,
                        created_at=utc_now(),
                    )
                )
                session.execute(
                    update(ResultRow)
                    .where(ResultRow.result_id == answer.result_id, ResultRow.image_url.is_(None))
                    .values(image_url=f"/v1/results/{answer.result_id}/image")
                )
            session.execute(
                update(ImageRow).where(ImageRow.result_id == answer.result_id).values(labeled=True)
            )

    def shadow_figures(self, run_id: int) -> ShadowFigures:
        """Agreement and every disagreement (both directions) of a run, counted in SQL."""
        answers = ShadowResultRow
        with self.db.read() as session:
            row = session.get(ShadowRunRow, run_id)
            if row is None:
                raise NotFound(f"shadow run {run_id} does not exist")
            counts = dict(
                session.execute(
                    select(
                        answers.verdict + answers.production_verdict,
                        func.count(),
                    )
                    .where(answers.run_id == run_id)
                    .group_by(answers.verdict, answers.production_verdict)
                ).all()
            )
            listed = session.execute(
                select(answers, ResultRow.received_at, ResultRow.serial)
                .join(ResultRow, ResultRow.result_id == answers.result_id)
                .where(answers.run_id == run_id, answers.verdict != answers.production_verdict)
                .order_by(answers.id.desc())
                .limit(MAX_DISAGREEMENTS)
            ).all()
            return ShadowFigures(
                run=ShadowRun.of(row),
                shadowed=sum(counts.values()),
                agreed=counts.get("OKOK", 0) + counts.get("NGNG", 0),
                candidate_ng_production_ok=counts.get("NGOK", 0),
                candidate_ok_production_ng=counts.get("OKNG", 0),
                disagreements=[
                    Disagreement(
                        answer.result_id,
                        received_at,
                        serial,
                        answer.production_verdict,
                        answer.production_score,
                        answer.verdict,
                        answer.score,
                    )
                    for answer, received_at, serial in listed
                ],
            )
