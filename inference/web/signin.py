"""Signing a browser in and out: `/signin` takes a pasted API key, checks it against the same
key store as the API, and starts a session (inference/api/session.py); `/signout` ends it."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from defectlens.inference.api import session
from defectlens.inference.api.errors import Forbidden
from defectlens.inference.api.state import keys_of
from defectlens.inference.web.render import page

router = APIRouter(include_in_schema=False)

HOME = "/review"


def local_target(target: str | None) -> str:
    """Where to go after signing in: a path on this service only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return HOME
    return target


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, next: str | None = None) -> HTMLResponse:
    """The sign-in page: paste an API key."""
    return page(request, "signin.html", "signin.title", target=local_target(next), error=None)


@router.post("/signin", response_class=HTMLResponse)
async def signin(
    request: Request,
    key: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = HOME,
) -> Response:
    """Check the key; on success set the session cookie and go on to `next`."""
    caller = await run_in_threadpool(keys_of(request).caller, key.strip()) if key.strip() else None
    if caller is None or caller.key_id is None:
        return page(
            request,
            "signin.html",
            "signin.title",
            status_code=401,
            target=local_target(next),
            error="signin.refused" if key.strip() else "signin.empty",
        )
    response = RedirectResponse(local_target(next), status_code=303)
    session.start(request, response, caller)
    return response


@router.post("/signout")
async def signout(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    """End the browser's session (the form carries the session's CSRF token)."""
    current = session.current(request)
    if current is not None and not hmac.compare_digest(csrf, current.csrf):
        raise Forbidden("sign-out without this session's CSRF token; reload the page")
    response = RedirectResponse("/signin", status_code=303)
    session.end(request, response)
    return response
