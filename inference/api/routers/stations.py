"""`POST /v1/stations/{id}/trigger`: a camera station of the stations file takes one frame
now, inspected as a PLC's part is (the station list and its models: `models.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from defectlens.inference.api import schemas
from defectlens.inference.api.auth import Caller, Role
from defectlens.inference.api.dependencies import check_station, require
from defectlens.inference.api.state import line_of
from defectlens.inference.line.runner import trigger_station
from defectlens.result import InspectionResult

router = APIRouter(prefix="/v1", tags=["stations"])

TRIGGER: frozenset[Role] = frozenset({"line"})
"""Who may trigger a station: the line (and admin). A QA engineer inspects uploaded images
with `POST /v1/inspect`; the line's cameras are the line's."""
Triggerer = Annotated[Caller, Depends(require(TRIGGER, "trigger a station"))]
StationId = Annotated[str, Path(pattern=schemas.STATION_ID_PATTERN)]


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: str | None = Field(default=None, max_length=128, description="the part's serial")


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no API key, or an unknown, revoked or expired one"},
    403: {"description": "the key's role is not line or admin, or not at this station"},
    404: {"description": "the station is not in this service's stations file"},
    409: {"description": "the station reads a hot folder: it cannot be triggered"},
    503: {"description": "the station's source is down: nothing inspected or stored"},
}


@router.post(
    "/stations/{station_id}/trigger",
    response_model=InspectionResult,
    responses=_ERRORS,
    summary="Take and inspect one part at a station",
)
async def trigger(
    request: Request,
    response: Response,
    caller: Triggerer,
    station_id: StationId,
    body: TriggerRequest | None = None,
) -> InspectionResult:
    """The station's camera takes one frame, which is inspected through the station's runner
    within its deadline (past it, the station's fail-safe verdict is stored and answered, with
    `Fail-Safe: deadline`); the answer is the stored result."""
    check_station(caller, station_id)
    answer = await trigger_station(line_of(request), station_id, body.serial if body else None)
    if answer.fail_safe is not None:
        response.headers["Fail-Safe"] = answer.fail_safe
    return answer.result
