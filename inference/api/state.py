"""What the running app holds: the `InspectionService` (`app.state.service`) and the API key
cache (`app.state.keys`), reached from routes through dependencies."""

from __future__ import annotations

from fastapi import Request

from defectlens.inference.api.auth import KeyCache
from defectlens.inference.line.runner import LineRunner
from defectlens.inference.service import InspectionService


def service_of(request: Request) -> InspectionService:
    service: InspectionService = request.app.state.service
    return service


def keys_of(request: Request) -> KeyCache:
    keys: KeyCache = request.app.state.keys
    return keys


def line_of(request: Request) -> LineRunner | None:
    """The line side's runner (`app.state.line`), None without a stations file."""
    line: LineRunner | None = getattr(request.app.state, "line", None)
    return line


async def get_service(request: Request) -> InspectionService:
    """The running service, as a FastAPI dependency (async, so it costs no thread hop)."""
    return service_of(request)
