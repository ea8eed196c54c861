"""Compare a candidate with a station's production model on the same held-out parts: the
station's labelled parts or a dataset version's test split. `qa` starts a comparison; `qa`
and `manager` read its progress, its figures side by side and the ROC curves."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from defectlens.errors import Conflict
from defectlens.inference.api.auth import DEPLOY, Caller, Role
from defectlens.inference.api.dependencies import Service, check_station, require, scoped_station
from defectlens.inference.api.schemas import MAX_ROW_ID, STATION_ID_PATTERN
from defectlens.inference.service import compare

router = APIRouter(prefix="/v1/compare", tags=["compare"])

QA_READ: frozenset[Role] = frozenset({"qa", "manager"})
Comparer = Annotated[Caller, Depends(require(DEPLOY, "compare models"))]
CompareReader = Annotated[Caller, Depends(require(QA_READ, "read comparisons"))]
ComparisonId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


class CompareStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station: str = Field(pattern=STATION_ID_PATTERN)
    candidate_version_id: int = Field(ge=1, le=MAX_ROW_ID)
    source: Literal["labels", "dataset"] = Field(
        default="labels",
        description="labels: the station's parts with a QA label; dataset: the test split of "
        "`data`",
    )
    data: str | None = Field(
        default=None, max_length=1024, description="a dataset version id or folder"
    )


class ComparisonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    station: str
    candidate_version_id: int
    production_version_id: int
    source: str
    status: Literal["running", "succeeded", "failed"]
    done: int
    total: int
    figures: dict[str, Any]
    """parts, good, defective; production and candidate: threshold, auroc, escape_rate,
    false_reject_rate, precision, recall, f1, tp/fp/tn/fn, roc {fpr, tpr}; changed: each
    part whose verdict changed, with its label and both answers."""
    error: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None


@router.post("", response_model=ComparisonOut, status_code=202)
def start(service: Service, caller: Comparer, body: CompareStart) -> ComparisonOut:
    """Start comparing; 202, then GET /v1/compare/{id} gives its progress and figures. 409
    if the station has no production model."""
    check_station(caller, body.station)
    comparison = compare.start_comparison(
        service, body.station, body.candidate_version_id, body.source, body.data, caller.name
    )
    return ComparisonOut.model_validate(comparison)


@router.get("", response_model=list[ComparisonOut])
def list_comparisons(
    service: Service,
    caller: CompareReader,
    station: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ComparisonOut]:
    """Comparisons, newest first."""
    station = scoped_station(caller, station)
    found = service.store.list_comparisons(station, limit)
    return [ComparisonOut.model_validate(c) for c in found]


@router.get("/{comparison_id}", response_model=ComparisonOut)
def get_comparison(
    service: Service, caller: CompareReader, comparison_id: ComparisonId
) -> ComparisonOut:
    comparison = service.store.get_comparison(comparison_id)
    check_station(caller, comparison.station)
    return ComparisonOut.model_validate(comparison)


@router.get(
    "/{comparison_id}/roc.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, 409: {"description": "not done yet"}},
)
def roc(service: Service, caller: CompareReader, comparison_id: ComparisonId) -> Response:
    """Both ROC curves in one SVG (once the comparison has succeeded)."""
    comparison = service.store.get_comparison(comparison_id)
    check_station(caller, comparison.station)
    if comparison.status != "succeeded":
        raise Conflict(f"comparison {comparison_id} is {comparison.status}; no curves yet")
    return Response(compare.roc_svg(comparison.figures), media_type="image/svg+xml")


@router.get(
    "/{comparison_id}/image",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, 404: {"description": "not a changed part"}},
)
def changed_part_image(
    service: Service,
    caller: CompareReader,
    comparison_id: ComparisonId,
    part: Annotated[str, Query(min_length=1, max_length=1024)],
) -> FileResponse:
    """The image of a part whose verdict changed (`part` as `figures.changed` names it): a
    result's retained image, or the file in the compared dataset."""
    comparison = service.store.get_comparison(comparison_id)
    check_station(caller, comparison.station)
    path = compare.changed_part_image(service.store, service.settings, comparison, part)
    return FileResponse(path)
