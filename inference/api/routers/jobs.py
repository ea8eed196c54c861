"""Training jobs: start a retrain from a recipe and a dataset version, follow its progress
and log, cancel it. `qa` starts and cancels; `qa` and `manager` read. The training runs in
a worker process (`defectlens worker`), never in the request."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict

from defectlens.inference.api.auth import DEPLOY, Caller, Role
from defectlens.inference.api.dependencies import Service, check_station, require
from defectlens.inference.api.schemas import MAX_ROW_ID
from defectlens.inference.service import jobs
from defectlens.inference.service.jobs import JobRequest

router = APIRouter(prefix="/v1/jobs", tags=["training jobs"])

QA_READ: frozenset[Role] = frozenset({"qa", "manager"})
Trainer = Annotated[Caller, Depends(require(DEPLOY, "start or cancel training jobs"))]
JobReader = Annotated[Caller, Depends(require(QA_READ, "read training jobs"))]
JobId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


class JobOut(BaseModel):
    """A training job: what it trains on, where it is, how it ended."""

    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    recipe_source: str
    """The shipped recipe's name or the recipe file it started from."""
    recipe: dict[str, Any]
    """The recipe as it was at the start."""
    data: str
    data_path: str
    station: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime | None
    """The worker's last report."""
    finished_at: datetime | None
    stage: str | None
    """check, split, fit, calibrate, export, evaluate, report, done."""
    percent: float | None
    epoch: int | None
    metrics: dict[str, Any]
    """The held-out figures of the version it produced."""
    error: str | None
    """Why it failed or was cancelled."""
    cancel_requested: bool
    worker: str | None
    model_version_id: int | None
    """The registered (not promoted) version it produced."""


class JobLog(BaseModel):
    id: int
    status: str
    lines: list[str]


@router.post("", response_model=JobOut, status_code=202)
def start_job(service: Service, caller: Trainer, body: JobRequest) -> JobOut:
    """Queue a retrain: `recipe` (a shipped recipe's name or a YAML file inside the
    workspace) on `data` (a dataset version id or a folder inside the workspace). 202: a
    worker takes it; follow it with GET /v1/jobs/{id}."""
    if body.station is not None:
        check_station(caller, body.station)
    job = jobs.start_job(service.store, service.settings, body, caller.name, service.local_worker)
    return JobOut.model_validate(job)


@router.get("", response_model=list[JobOut])
def list_jobs(
    service: Service,
    caller: JobReader,
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobOut]:
    """Training jobs, newest first."""
    return [JobOut.model_validate(job) for job in service.store.list_jobs(status, limit)]


@router.get("/{job_id}", response_model=JobOut)
def get_job(service: Service, caller: JobReader, job_id: JobId) -> JobOut:
    """One job with its stage, percent and, once done, its outcome."""
    return JobOut.model_validate(service.store.get_job(job_id))


@router.get("/{job_id}/log", response_model=JobLog)
def get_job_log(
    service: Service,
    caller: JobReader,
    job_id: JobId,
    lines: Annotated[int, Query(ge=1, le=jobs.MAX_LOG_LINES)] = 200,
) -> JobLog:
    """The last lines of the job's log (the whole log is in the worker's
    `<home>/jobs/<id>/train.log`)."""
    job = service.store.get_job(job_id)
    return JobLog(id=job.id, status=job.status, lines=jobs.job_log(service.store, job_id, lines))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(service: Service, caller: Trainer, job_id: JobId) -> JobOut:
    """Cancel a queued or running job; 409 once it has finished. A running job stops within
    a couple of seconds and leaves no model version behind."""
    return JobOut.model_validate(jobs.cancel_job(service.store, job_id, caller.name))
