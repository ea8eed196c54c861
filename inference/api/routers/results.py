"""Traceability: stored results by id or filtered by station, line, serial, verdict and time;
a result's retained image and its heat map."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from defectlens.errors import NotFound
from defectlens.inference.api.auth import Caller
from defectlens.inference.api.dependencies import Reader, Service, scoped_station
from defectlens.inference.api.schemas import ResultPage
from defectlens.inference.service import InspectionService
from defectlens.inference.service.images import MEDIA_TYPES
from defectlens.inference.service.inspection import heatmap_png, retained_image
from defectlens.inference.store import MAX_PAGE
from defectlens.prediction import Verdict
from defectlens.result import InspectionResult

router = APIRouter(prefix="/v1/results", tags=["results"])

ResultId = Annotated[str, Path(min_length=1, max_length=64)]


def _result(service: InspectionService, caller: Caller, result_id: str) -> InspectionResult:
    result = service.store.get_result(result_id)
    if result is None:
        raise NotFound(f"result {result_id!r} not found")
    if not caller.may_use_station(result.station):  # not even whether it exists
        raise NotFound(f"result {result_id!r} not found")
    return result


@router.get("", response_model=ResultPage, response_model_by_alias=True)
def list_results(
    service: Service,
    caller: Reader,
    station: Annotated[str | None, Query(max_length=64)] = None,
    line: Annotated[str | None, Query(max_length=64)] = None,
    serial: Annotated[str | None, Query(max_length=128)] = None,
    verdict: Verdict | None = None,
    since: Annotated[datetime | None, Query(description="received at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="received before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=64, description="next_cursor of the previous page")
    ] = None,
) -> ResultPage:
    """Results newest first. Pass the page's `next_cursor` as `cursor`, with the same filters,
    for the next page; it is null on the last page."""
    station = scoped_station(caller, station)
    items, next_cursor = service.store.list_results(
        station=station,
        line=line,
        serial=serial,
        verdict=verdict,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return ResultPage(items=items, next_cursor=next_cursor)


@router.get("/{result_id}", response_model=InspectionResult, response_model_by_alias=True)
def get_result(service: Service, caller: Reader, result_id: ResultId) -> InspectionResult:
    """One stored result."""
    return _result(service, caller, result_id)


@router.get(
    "/{result_id}/image",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, 404: {"description": "not retained"}},
)
def get_image(service: Service, caller: Reader, result_id: ResultId) -> FileResponse:
    """The image as the line sent it, if it was retained."""
    path = retained_image(service, _result(service, caller, result_id))
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"))


@router.get(
    "/{result_id}/heatmap",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "image not retained"}},
)
async def get_heatmap(service: Service, caller: Reader, result_id: ResultId) -> Response:
    """The heat-map overlay (PNG): the stored one, or rendered now from the retained image."""
    result = await run_in_threadpool(_result, service, caller, result_id)
    png = await run_in_threadpool(heatmap_png, service, result)
    return Response(png, media_type="image/png")
