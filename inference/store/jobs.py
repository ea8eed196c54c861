"""Training jobs in the store: what was asked, where the worker is, how it ended.

The queue (`service/job_queue.py`) only carries a job's id to a worker; everything a page
or the CLI shows about a job is here, written by the service (start, cancel) and by the
worker (progress, log tail, outcome), so any machine sharing the database sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from defectlens.errors import Conflict, NotFound
from defectlens.inference.store.audit import record_audit
from defectlens.inference.store.checks import check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.tables import (
    JOB_STATUSES,
    DatasetVersionRow,
    TrainingJobRow,
    utc_now,
)

FINISHED = ("succeeded", "failed", "cancelled")
LOG_TAIL_CHARS = 16_000
"""The most of a job's log the store keeps (its end); the whole log is in the job's folder."""


@dataclass(frozen=True)
class TrainingJob:
    id: int
    status: str
    recipe_source: str
    recipe: dict[str, Any]
    data: str
    data_path: str
    station: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    stage: str | None
    percent: float | None
    epoch: int | None
    metrics: dict[str, Any]
    error: str | None
    log_tail: str
    cancel_requested: bool
    worker: str | None
    model_version_id: int | None

    @classmethod
    def of(cls, row: TrainingJobRow) -> TrainingJob:
        return cls(
            id=row.id,
            status=row.status,
            recipe_source=row.recipe_source,
            recipe=dict(row.recipe),
            data=row.data,
            data_path=row.data_path,
            station=row.station,
            created_by=row.created_by,
            created_at=row.created_at,
            started_at=row.started_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            stage=row.stage,
            percent=row.percent,
            epoch=row.epoch,
            metrics=dict(row.metrics or {}),
            error=row.error,
            log_tail=row.log_tail,
            cancel_requested=row.cancel_requested_at is not None,
            worker=row.worker,
            model_version_id=row.model_version_id,
        )


@dataclass(frozen=True)
class JobProgress:
    """One progress report of a running job (None: unchanged)."""

    stage: str | None = None
    percent: float | None = None
    epoch: int | None = None
    log_tail: str | None = None


class JobStore:
    """Training jobs: created queued, claimed by a worker, finished once."""

    db: Database

    def create_job(
        self,
        recipe_source: str,
        recipe: dict[str, Any],
        data: str,
        data_path: str,
        station: str | None,
        actor: str,
    ) -> TrainingJob:
        """A new queued job, with its audit entry in the same transaction."""
        with self.db.write() as session:
            row = TrainingJobRow(
                status="queued",
                recipe_source=recipe_source,
                recipe=recipe,
                data=data,
                data_path=data_path,
                station=station,
                created_by=actor,
                created_at=utc_now(),
                metrics={},
                log_tail="",
            )
            check_row(row)
            session.add(row)
            session.flush()
            record_audit(
                session,
                actor,
                "job.start",
                f"job:{row.id}",
                {"recipe": recipe_source, "data": data, "station": station},
            )
            return TrainingJob.of(row)

    def dataset_version_path(self, version_id: str) -> str | None:
        """The folder of a frozen dataset version, or None if no version has that id."""
        if len(version_id) > 64:
            return None
        with self.db.read() as session:
            row = session.get(DatasetVersionRow, version_id)
            return None if row is None else row.path

    def get_job(self, job_id: int) -> TrainingJob:
        """`NotFound` for an unknown id."""
        with self.db.read() as session:
            row = session.get(TrainingJobRow, job_id)
            if row is None:
                raise NotFound(f"training job {job_id} does not exist; GET /v1/jobs lists them")
            return TrainingJob.of(row)

    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[TrainingJob]:
        """Newest first."""
        query = select(TrainingJobRow).order_by(TrainingJobRow.id.desc()).limit(limit)
        if status is not None:
            query = query.where(TrainingJobRow.status == status)
        with self.db.read() as session:
            return [TrainingJob.of(row) for row in session.scalars(query)]

    def request_cancel(self, job_id: int, actor: str) -> TrainingJob:
        """Cancel a job: a queued one at once (the worker that takes it skips it), a running
        one by asking its worker, which stops the training within a second or two. A
        finished job is a `Conflict`."""
        with self.db.write() as session:
            row = session.get(TrainingJobRow, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"training job {job_id} does not exist; GET /v1/jobs lists them")
            if row.status in FINISHED:
                raise Conflict(f"training job {job_id} has already {row.status}; nothing to cancel")
            now, was = utc_now(), row.status
            row.cancel_requested_at = now
            if was == "queued":
                row.status = "cancelled"
                row.finished_at = now
                row.error = f"cancelled by {actor} before a worker started it"
            record_audit(session, actor, "job.cancel", f"job:{job_id}", {"was": was})
            session.flush()
            return TrainingJob.of(row)

    def claim_job(self, job_id: int, worker: str) -> TrainingJob | None:
        """Mark a queued job running on `worker`; None if it is not queued any more (it was
        cancelled, or another worker has it: a message delivered twice runs once)."""
        with self.db.write() as session:
            claimed = session.execute(
                update(TrainingJobRow)
                .where(TrainingJobRow.id == job_id, TrainingJobRow.status == "queued")
                .values(status="running", worker=worker, started_at=utc_now(), updated_at=utc_now())
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = session.get(TrainingJobRow, job_id)
            assert row is not None
            return TrainingJob.of(row)

    def report_progress(self, job_id: int, progress: JobProgress) -> bool:
        """Store a running job's progress; returns whether a cancel was asked for."""
        values: dict[str, Any] = {"updated_at": utc_now()}
        if progress.stage is not None:
            values["stage"] = progress.stage[:32]
        if progress.percent is not None:
            values["percent"] = max(0.0, min(100.0, progress.percent))
        if progress.epoch is not None:
            values["epoch"] = progress.epoch
        if progress.log_tail is not None:
            values["log_tail"] = progress.log_tail[-LOG_TAIL_CHARS:].replace("\x00", "")
        with self.db.write() as session:
            session.execute(
                update(TrainingJobRow).where(TrainingJobRow.id == job_id).values(values)
            )
            row = session.get(TrainingJobRow, job_id)
            return row is not None and row.cancel_requested_at is not None

    def finish_job(
        self,
        job_id: int,
        status: str,
        *,
        error: str | None = None,
        model_version_id: int | None = None,
        metrics: dict[str, Any] | None = None,
        log_tail: str | None = None,
    ) -> TrainingJob:
        """A running job's outcome, written once."""
        if status not in FINISHED or status not in JOB_STATUSES:
            raise ValueError(f"not a finished job status: {status}")
        with self.db.write() as session:
            row = session.get(TrainingJobRow, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"training job {job_id} does not exist")
            row.status = status
            row.finished_at = row.updated_at = utc_now()
            row.error = error
            row.model_version_id = model_version_id
            if status == "succeeded":
                row.stage, row.percent = "done", 100.0
            if metrics is not None:
                row.metrics = metrics
            if log_tail is not None:
                row.log_tail = log_tail[-LOG_TAIL_CHARS:].replace("\x00", "")
            check_row(row)
            session.flush()
            return TrainingJob.of(row)
