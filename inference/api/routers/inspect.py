"""`POST /v1/inspect`: one part's image in, its stored `InspectionResult` out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from defectlens.inference.api.dependencies import Inspector, check_station
from defectlens.inference.api.state import service_of
from defectlens.inference.api.upload import part_metadata, read_upload
from defectlens.inference.service import PartMetadata
from defectlens.result import InspectionResult

router = APIRouter(prefix="/v1", tags=["inspect"])


def _openapi() -> dict[str, Any]:
    """The request body and query parameters, generated from `PartMetadata` (the body is
    read by the route itself, after the key is checked, so FastAPI does not describe it)."""
    schema = PartMetadata.model_json_schema()
    fields: dict[str, Any] = schema["properties"]
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "description": "The image (JPEG, PNG, BMP or TIFF; 8 or 16 bit; gray, RGB or "
            "RGBA), as a multipart file field `file` with metadata fields, or as the raw body "
            "with the metadata as query parameters.",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}, **fields},
                    }
                },
                "image/*": binary,
                "application/octet-stream": binary,
            },
        },
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": field}
            for name, field in fields.items()
        ],
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no API key, or an unknown, revoked or expired one"},
    403: {"description": "the key's role may not inspect, or not at this station"},
    404: {"description": "unknown station"},
    409: {"description": "the station has no model loaded (the detail says why)"},
    413: {"description": "upload over the byte limit or image over the pixel limit"},
    415: {"description": "the body or image is in a format that is not accepted"},
    422: {"description": "unreadable image or invalid metadata (the detail says which)"},
    503: {"description": "too many parts waiting, or the store did not answer; Retry-After"},
    504: {"description": "the inspection ran past the request timeout; nothing stored"},
    507: {"description": "the disk for images or the database is full; nothing stored"},
}


@router.post(
    "/inspect",
    response_model=InspectionResult,
    openapi_extra=_openapi(),
    responses=_ERRORS,
    summary="Inspect one part",
)
async def inspect(
    request: Request,
    caller: Inspector,
    overlay: Annotated[
        bool, Query(description="also render the heat-map overlay now (heatmap_url)")
    ] = False,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=128,
            description="a retry with the same key and station gets the stored result back",
        ),
    ] = None,
) -> Response:
    """Run the station's active model on the image, keep the image if it is NG (or sampled
    OK), store the result and return it. Metadata may come as form fields or query
    parameters (`station` is required). A replayed answer (same idempotency key) carries
    `Idempotent-Replayed: true`."""
    service = service_of(request)  # the request is at hand: one dependency fewer per part
    data, form = await read_upload(request, service.settings.max_upload_bytes)
    metadata = part_metadata(form, request.query_params, idempotency_key)
    check_station(caller, metadata.station)
    inspected = await service.inspect(data, metadata, overlay)
    result = inspected.result
    request.state.log_fields = {  # on the request's log line
        "station": result.station,
        "serial": result.serial,
        "result_id": result.result_id,
        "verdict": result.verdict,
    }
    headers = {"Idempotent-Replayed": "true"} if inspected.replayed else None
    return Response(
        result.model_dump_json(by_alias=True),
        media_type="application/json",
        headers=headers,
    )
