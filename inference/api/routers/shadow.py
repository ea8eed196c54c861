"""Shadow mode: run a candidate model beside a station's production model on its live parts,
without touching verdicts, then read the agreement and every disagreement. `qa` starts and
stops; `qa` and `manager` read. Promote a candidate with POST /v1/stations/{id}/promote."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from defectlens.inference.api.auth import DEPLOY, Caller, Role
from defectlens.inference.api.dependencies import Service, check_station, require, scoped_station
from defectlens.inference.api.schemas import MAX_ROW_ID, STATION_ID_PATTERN
from defectlens.inference.service import shadow

router = APIRouter(prefix="/v1/shadow", tags=["shadow mode"])

QA_READ: frozenset[Role] = frozenset({"qa", "manager"})
ShadowOperator = Annotated[Caller, Depends(require(DEPLOY, "start or stop shadow runs"))]
ShadowReader = Annotated[Caller, Depends(require(QA_READ, "read shadow runs"))]
RunId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


class ShadowStart(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    station: str = Field(pattern=STATION_ID_PATTERN)
    model_version_id: int = Field(ge=1, le=MAX_ROW_ID, description="the candidate")
    sample_fraction: float = Field(
        default=1.0, gt=0, le=1, description="share of the station's parts it runs on"
    )
    duration_h: float = Field(
        default=8.0, gt=0, le=shadow.MAX_SHADOW_DAYS * 24, description="how long it runs"
    )


class ShadowRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    station: str
    model_version_id: int
    sample_fraction: float
    started_at: datetime
    started_by: str
    until: datetime
    stopped_at: datetime | None
    stopped_by: str | None
    active: bool
    seen: int
    """The station's parts answered while it ran (every instance, as last stored)."""
    skipped: int
    """Parts sampled but dropped because the shadow queue was full."""


class DisagreementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    result_id: str
    received_at: datetime
    serial: str | None
    production_verdict: str
    production_score: float
    candidate_verdict: str
    candidate_score: float


class ShadowFiguresOut(BaseModel):
    run: ShadowRunOut
    shadowed: int
    agreed: int
    agreement_rate: float | None
    candidate_ng_production_ok: int
    """Parts the candidate would have rejected that the line passed."""
    candidate_ok_production_ng: int
    """Parts the candidate would have passed that the line rejected."""
    disagreements: list[DisagreementOut]
    """Newest first; each result's image is kept for labelling (/v1/results/{id}/image)."""


@router.post("", response_model=ShadowRunOut, status_code=201)
def start(service: Service, caller: ShadowOperator, body: ShadowStart) -> ShadowRunOut:
    """Run a registered candidate beside the station's model on `sample_fraction` of its
    parts for `duration_h` hours. The line's verdicts and latency are untouched: the
    candidate runs after each answer, on a low-priority thread, and a part is skipped when
    that thread is behind. 409 while another run is on or if it is the production model."""
    check_station(caller, body.station)
    run = shadow.start_shadow(
        service,
        body.station,
        body.model_version_id,
        body.sample_fraction,
        body.duration_h,
        caller.name,
    )
    return ShadowRunOut.model_validate(run)


@router.get("", response_model=list[ShadowRunOut])
def list_runs(
    service: Service,
    caller: ShadowReader,
    station: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ShadowRunOut]:
    """Shadow runs, newest first."""
    station = scoped_station(caller, station)
    runs = service.store.list_shadow_runs(station, limit)
    return [ShadowRunOut.model_validate(run) for run in runs]


@router.get("/{run_id}", response_model=ShadowFiguresOut)
def figures(service: Service, caller: ShadowReader, run_id: RunId) -> ShadowFiguresOut:
    """A run's agreement with the line and every disagreement, in both directions."""
    found = shadow.shadow_figures(service, run_id)
    check_station(caller, found.run.station)
    return ShadowFiguresOut(
        run=ShadowRunOut.model_validate(found.run),
        shadowed=found.shadowed,
        agreed=found.agreed,
        agreement_rate=found.agreement_rate,
        candidate_ng_production_ok=found.candidate_ng_production_ok,
        candidate_ok_production_ng=found.candidate_ok_production_ng,
        disagreements=[DisagreementOut.model_validate(d) for d in found.disagreements],
    )


@router.post("/{run_id}/stop", response_model=ShadowRunOut)
def stop(service: Service, caller: ShadowOperator, run_id: RunId) -> ShadowRunOut:
    """Stop a run now (a run already ended is returned as it is)."""
    check_station(caller, service.store.get_shadow_run(run_id).station)
    return ShadowRunOut.model_validate(shadow.stop_shadow(service, run_id, caller.name))
