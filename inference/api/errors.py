"""HTTP errors: the defectlens exception family mapped to status codes, always `{"detail": str}`.

Client mistakes are `InputError`s and become 4xx with the message as it was raised; a 5xx
means the service or its machine cannot serve now (503 with Retry-After when waiting helps,
507 when its disk is full) or a fault, never a fault of the request.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from defectlens.errors import (
    Conflict,
    DefectLensError,
    InputError,
    InspectionTimeout,
    NotFound,
    StorageFull,
    TooLarge,
    Unavailable,
    UnsupportedFormat,
)
from defectlens.inference.engine_registry import StationNotServed

log = logging.getLogger(__name__)


class Unauthenticated(InputError):
    """No API key, or an unknown or revoked one (401)."""


class Forbidden(InputError):
    """A valid key whose role, or station scope, may not call the route (403)."""


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (StationNotServed, 409),
    (Conflict, 409),
    (TooLarge, 413),
    (UnsupportedFormat, 415),
    (InputError, 422),
    (Unavailable, 503),
    (InspectionTimeout, 504),
    (StorageFull, 507),
)


def status_for(exc: Exception) -> int:
    """The HTTP status of a defectlens error (500 for anything not listed)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def describe_validation(errors: list[Any]) -> str:
    """FastAPI's validation error list as one sentence naming each field."""
    parts = []
    for error in errors:
        location = [str(item) for item in error.get("loc", ()) if item != "body"]
        where = location[0] if location else "request"
        field = ".".join(location[1:]) if len(location) > 1 else ""
        label = f"{where} field {field!r}" if field else where
        if where in ("query", "path", "header"):
            label = f"{where} parameter {field!r}"
        parts.append(f"{label}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into `{"detail": "..."}` responses."""

    async def defectlens_error(request: Request, exc: Exception) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer, ApiKey header="X-API-Key"'
        if isinstance(exc, Unavailable) and exc.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return JSONResponse({"detail": describe_validation(list(errors))}, status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is down, unreachable or locked: the service is fine, and the
        # transaction (with any image it kept) was undone.
        service = getattr(request.app.state, "service", None)
        where = f" at {service.database.url}" if service is not None else ""
        reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        first_line = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
        log.error("%s %s: the result store failed: %s", request.method, request.url.path, exc)
        if "disk is full" in first_line or "No space left" in first_line:
            return JSONResponse(
                {
                    "detail": f"the result store{where} has no disk space left ({first_line}); "
                    "nothing was written. Free disk space on the database's machine"
                },
                status_code=507,
            )
        return JSONResponse(
            {
                "detail": f"the result store{where} did not answer ({first_line}); nothing "
                "was written. Retry; GET /readyz shows when the store is back"
            },
            status_code=503,
        )

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s: unexpected error", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); the service log has the cause"},
            status_code=500,
        )

    app.add_exception_handler(DefectLensError, defectlens_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OperationalError, store_unavailable)
    app.add_exception_handler(InterfaceError, store_unavailable)
    app.add_exception_handler(PoolTimeout, store_unavailable)  # every connection busy
    app.add_exception_handler(Exception, unexpected_error)
