"""FastAPI dependencies: the caller's role, checked against the roles a route allows."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Security
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
)
from defectlens.inference.api.errors import Forbidden, Unauthenticated
from defectlens.inference.api.state import ServiceState, get_state

# auto_error=False: the 401 and its message are ours, and either header may carry the key.
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key from `defectlens keys create`."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


async def authenticate(
    state: Annotated[ServiceState, Depends(get_state)],
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Caller:
    """The caller behind the request's key; 401 without a valid one.

    Async, so the per-part path pays no thread hop for it: a key verified in the last
    `key_cache_s` seconds is answered from memory, others by the database in a worker thread.
    """
    if state.settings.auth_disabled:
        return AUTH_DISABLED_CALLER
    key = (api_key or "").strip() or (bearer.credentials.strip() if bearer else "")
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


def require(roles: frozenset[Role], action: str) -> Callable[[Caller], Coroutine[Any, Any, Caller]]:
    """A dependency admitting callers whose role is in `roles` (admin always); 403 otherwise."""

    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if not allowed(caller.role, roles):
            permitted = ", ".join(sorted({*roles, "admin"}))
            raise Forbidden(f"role {caller.role!r} may not {action}; roles allowed: {permitted}")
        return caller

    return check


Inspector = Annotated[Caller, Depends(require(INSPECT, "inspect parts"))]
Reader = Annotated[Caller, Depends(require(READ, "read results, stations and models"))]
Deployer = Annotated[Caller, Depends(require(DEPLOY, "create stations or promote models"))]
Administrator = Annotated[Caller, Depends(require(ADMIN, "manage the service"))]
State = Annotated[ServiceState, Depends(get_state)]
