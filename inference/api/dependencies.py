"""FastAPI dependencies: the running service, and the caller's role checked against the roles
a route allows."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from defectlens.inference.api.auth import (
    ADMIN,
    AUTH_DISABLED_CALLER,
    DEPLOY,
    INSPECT,
    READ,
    Caller,
    Role,
    allowed,
    caller_of,
    key_from_headers,
)
from defectlens.inference.api.errors import Forbidden, Unauthenticated
from defectlens.inference.api.session import session_caller
from defectlens.inference.api.state import get_service, keys_of, service_of
from defectlens.inference.service import InspectionService
from defectlens.inference.store import Store

# auto_error=False: the 401 and its message are ours, and either header may carry the key.
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key from `defectlens keys create`."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


async def authenticate(request: Request, api_key: str | None, bearer: str | None) -> Caller:
    """The caller behind the request's key (`X-API-Key`, or `Authorization: Bearer`), else
    behind its browser session cookie; 401 without a valid one. A key verified in the last
    `key_cache_s` seconds is answered from memory, others by the database in a worker
    thread. Every refusal is logged and counted
    on /metrics."""
    service = service_of(request)
    if service.settings.auth_disabled:
        return AUTH_DISABLED_CALLER
    key = key_from_headers(api_key, f"Bearer {bearer}" if bearer else None)
    if not key and (session := await session_caller(request)) is not None:
        return session  # a signed-in browser (inference/api/session.py)
    if not key:
        service.metrics.auth_failures.labels("missing").inc()
        raise Unauthenticated(
            "no API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY' "
            "(an admin creates keys with `defectlens keys create --role ROLE`)"
        )
    keys = keys_of(request)
    known, caller = keys.cached(key)
    if not known:
        caller = await run_in_threadpool(keys.caller, key)
    if caller is None:
        service.metrics.auth_failures.labels("invalid").inc()  # the store logged why
        raise Unauthenticated("the API key is not valid (unknown, revoked or expired)")
    return caller


def verify_key(store: Store, key: str) -> Caller | None:
    """The caller a presented key belongs to, from the store (None if unknown, revoked or
    expired)."""
    found = store.verify_api_key(key)
    return None if found is None else caller_of(found)


def check_role(caller: Caller, roles: frozenset[Role], action: str) -> Caller:
    """`caller`, or 403 unless its role may call a route open to `roles`."""
    if not allowed(caller.role, roles):
        permitted = ", ".join(sorted({*roles, "admin"}))
        raise Forbidden(f"role {caller.role!r} may not {action}; roles allowed: {permitted}")
    return caller


def check_station(caller: Caller, station: str) -> None:
    """403 unless the caller's key may act on `station`."""
    if not caller.may_use_station(station):
        scope = ", ".join(caller.stations or ())
        raise Forbidden(f"this API key is limited to stations {scope}; not {station!r}")


def scoped_station(caller: Caller, station: str | None) -> str | None:
    """The station a listing is filtered to: the one asked for (403 outside the key's scope),
    else the key's only station; a key limited to several must name one (403)."""
    if station is None and caller.stations is not None and len(caller.stations) == 1:
        station = caller.stations[0]
    if station is not None:
        check_station(caller, station)
    elif caller.stations is not None:
        raise Forbidden("this API key is limited to some stations: name one (station=...)")
    return station


def require(roles: frozenset[Role], action: str) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency admitting callers whose role is in `roles` (admin always); 401 without a
    valid key, 403 for another role. One dependency, not a chain of them: FastAPI resolves
    each on every request, and this one is on the per-part path."""

    async def caller(
        request: Request,
        api_key: Annotated[str | None, Security(_api_key_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> Caller:
        found = await authenticate(request, api_key, bearer.credentials if bearer else None)
        return check_role(found, roles, action)

    return caller


Inspector = Annotated[Caller, Depends(require(INSPECT, "inspect parts"))]
Reader = Annotated[Caller, Depends(require(READ, "read results, stations and models"))]
Deployer = Annotated[Caller, Depends(require(DEPLOY, "create stations or promote models"))]
Administrator = Annotated[Caller, Depends(require(ADMIN, "manage the service"))]
Service = Annotated[InspectionService, Depends(get_service)]
