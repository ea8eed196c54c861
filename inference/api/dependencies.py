"""FastAPI dependencies: the caller's role, checked against the roles a route allows."""

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
    READ,
    Caller,
    Role,
    allowed,
    key_from_headers,
)
from defectlens.inference.api.errors import Forbidden, Unauthenticated
from defectlens.inference.api.state import ServiceState, get_state, service_state

# auto_error=False: the 401 and its message are ours, and either header may carry the key.
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key from `defectlens keys create`."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")
SECURITY: list[dict[str, list[str]]] = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
"""The OpenAPI security of a route that checks the key itself (`authorize`), as FastAPI
writes it for the routes that use `authenticate`: these two schemes, either one."""


async def authenticate(
    state: Annotated[ServiceState, Depends(get_state)],
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Caller:
    """The caller behind the request's key; 401 without a valid one."""
    authorization = f"Bearer {bearer.credentials}" if bearer else None
    return await caller_for_key(state, key_from_headers(api_key, authorization) or "")


async def caller_for_key(state: ServiceState, key: str) -> Caller:
    """The caller behind a presented key (stripped; empty if none); 401 without a valid one.

    Async, so the per-part path pays no thread hop for it: a key verified in the last
    `key_cache_s` seconds is answered from memory, others by the database in a worker thread.
    """
    if state.settings.auth_disabled:
        return AUTH_DISABLED_CALLER
    if not key:
        raise Unauthenticated(
            "no API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY' "
            "(an admin creates keys with `defectlens keys create --role ROLE`)"
        )
    known, caller = state.keys.cached(key)
    if not known:
        caller = await run_in_threadpool(state.keys.caller, key)
    if caller is None:
        raise Unauthenticated("the API key is not valid (unknown or revoked)")
    return caller


async def authorize(request: Request, roles: frozenset[Role], action: str) -> Caller:
    """`require` without FastAPI's dependency resolution, for the per-part route: the key
    from the request's headers, its caller, and 403 unless the role is in `roles`."""
    headers = request.headers
    key = key_from_headers(headers.get("x-api-key"), headers.get("authorization")) or ""
    return check_role(await caller_for_key(service_state(request), key), roles, action)


def check_role(caller: Caller, roles: frozenset[Role], action: str) -> Caller:
    """`caller`, or 403 unless its role may call a route open to `roles`."""
    if not allowed(caller.role, roles):
        permitted = ", ".join(sorted({*roles, "admin"}))
        raise Forbidden(f"role {caller.role!r} may not {action}; roles allowed: {permitted}")
    return caller


def require(roles: frozenset[Role], action: str) -> Callable[[Caller], Coroutine[Any, Any, Caller]]:
    """A dependency admitting callers whose role is in `roles` (admin always); 403 otherwise."""

    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        return check_role(caller, roles, action)

    return check


Reader = Annotated[Caller, Depends(require(READ, "read results, stations and models"))]
Deployer = Annotated[Caller, Depends(require(DEPLOY, "create stations or promote models"))]
Administrator = Annotated[Caller, Depends(require(ADMIN, "manage the service"))]
State = Annotated[ServiceState, Depends(get_state)]
