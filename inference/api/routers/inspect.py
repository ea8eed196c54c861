"""`POST /v1/inspect`: one part's image in, its stored `InspectionResult` out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from defectlens.inference.api.auth import INSPECT
from defectlens.inference.api.dependencies import SECURITY, authorize
from defectlens.inference.api.inspection import run_inspection
from defectlens.inference.api.state import service_state
from defectlens.inference.api.upload import overlay_flag, part_metadata, read_upload
from defectlens.result import InspectionResult

router = APIRouter(prefix="/v1", tags=["inspect"])

_METADATA_PROPERTIES: dict[str, Any] = {
    "station": {"type": "string", "description": "station id (required here or in the query)"},
    "line": {"type": "string"},
    "product": {"type": "string"},
    "serial": {"type": "string", "description": "the part's serial number"},
    "camera": {"type": "string"},
    "captured_at": {"type": "string", "format": "date-time"},
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image (JPG, PNG, BMP or TIFF; 8 or 16 bit; gray, RGB or RGBA), "
        "as a multipart file field `file` with metadata fields, or as the raw body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **_METADATA_PROPERTIES,
                    },
                }
            },
            "image/*": _BINARY,
            "application/octet-stream": _BINARY,
        },
    }
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no API key, or an unknown or revoked one"},
    403: {"description": "the key's role may not inspect"},
    404: {"description": "unknown station"},
    409: {"description": "the station has no model loaded"},
    413: {"description": "upload over the byte limit or image over the pixel limit"},
    415: {"description": "the body is not multipart, image/* or application/octet-stream"},
    422: {"description": "unreadable image or invalid metadata (the detail says which)"},
    503: {"description": "the result store did not answer; nothing stored, retry"},
    504: {"description": "the inspection ran past the request timeout; nothing stored"},
}

_QUERY_PARAMETERS: list[dict[str, Any]] = [
    {"name": name, "in": "query", "required": False, "schema": {**schema, "maxLength": 256}}
    for name, schema in _METADATA_PROPERTIES.items()
] + [
    {
        "name": "overlay",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean", "default": False},
        "description": "also render the heat-map overlay now (heatmap_url)",
    }
]
_OPENAPI = {**_IMAGE_BODY, "parameters": _QUERY_PARAMETERS, "security": SECURITY}


@router.post(
    "/inspect",
    response_model=InspectionResult,
    openapi_extra=_OPENAPI,
    responses=_ERRORS,
    summary="Inspect one part",
)
async def inspect(request: Request) -> Response:
    """Run the station's active model on the image, keep the image if it is NG (or sampled
    OK), store the result and return it. Metadata may come as form fields or query
    parameters (`station` is required); `overlay=true` also renders the heat map now."""
    # This is the per-part path, and each parameter or dependency FastAPI resolves costs
    # time: the key is checked by `authorize` and the query read here (the schema above
    # documents both).
    await authorize(request, INSPECT, "inspect parts")
    state = service_state(request)
    data, form = await read_upload(request, state.settings.max_upload_bytes)
    metadata = part_metadata(form, request.query_params)
    result = await run_inspection(state, data, metadata, overlay_flag(request.query_params))
    return Response(result.model_dump_json(by_alias=True), media_type="application/json")
