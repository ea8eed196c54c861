"""`POST /v1/inspect`: one part's image in, its stored `InspectionResult` out.

The route is served by `InspectLane`, ahead of FastAPI's middleware and routing; the route
below documents it (OpenAPI) and serves it where the lane steps aside.
"""

from __future__ import annotations

import inspect as pyinspect
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from defectlens.inference.api.auth import INSPECT
from defectlens.inference.api.dependencies import SECURITY, authorize
from defectlens.inference.api.inspection import run_inspection
from defectlens.inference.api.metrics import MetricsMiddleware, ServiceMetrics
from defectlens.inference.api.state import service_state
from defectlens.inference.api.upload import overlay_flag, part_metadata, read_upload
from defectlens.result import InspectionResult

router = APIRouter(prefix="/v1", tags=["inspect"])
PATH = "/v1/inspect"

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
    PATH.removeprefix(router.prefix),
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


class InspectLane:
    """ASGI middleware that takes `POST /v1/inspect` straight to `inspect`.

    The per-part path pays for every layer it passes, and in the running service each
    costs several times what it does in a warm loop (the work around a part runs cold:
    after the model, on cores woken from idle). The lane skips FastAPI's exception,
    routing and endpoint layers (none of which this route uses) and keeps what it relies
    on: the same handler, the app's own exception handlers for its errors, and the
    request metrics, labelled with the route as the router would. Anything else,
    including this path under a `root_path`, goes on to the app. Installed as the
    outermost of the app's middleware, inside Starlette's last-resort error layer.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == PATH)
        self.counted = MetricsMiddleware(self._inspect, metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == PATH
            and not scope.get("root_path")
        ):
            scope["route"] = self.route
            await self.counted(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _inspect(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await inspect(request)
        except Exception as exc:
            response = await _handled(request, exc)
        await response(scope, receive, send)


async def _handled(request: Request, exc: Exception) -> Response:
    """The response the app's exception handler for `exc` gives (the nearest class)."""
    handlers = request.app.exception_handlers
    for kind in type(exc).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            response = handler(request, exc)
            if pyinspect.isawaitable(response):
                response = await response
            assert isinstance(response, Response)
            return response
    raise exc
