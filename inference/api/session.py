"""Browser sessions: a person signs in once by pasting an API key on `/signin`, and the
browser then carries a session cookie instead of the key.

The cookie is opaque to the browser and signed by the service (HMAC-SHA256): the key's id,
when the session ends, and a per-session CSRF token. It is HttpOnly, SameSite=Strict, and
Secure when the page is served over https. Each request checks the key behind it in the store
(remembered for `key_cache_s`, like keys), so revoking the key ends its sessions. A request
that changes something (not GET, HEAD or OPTIONS) must also send the CSRF token in the
`X-CSRF-Token` header (pages read it from their `<meta name="csrf-token">`), which another
site cannot read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from defectlens.inference.api.auth import Caller, KeyCache, caller_of
from defectlens.inference.api.errors import Forbidden, Unauthenticated
from defectlens.inference.api.state import service_of
from defectlens.inference.service import ServiceSettings

COOKIE = "defectlens_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECRET_FILE = "web-session.key"
SIGNIN_PATHS = frozenset({"/signin", "/signout"})
ASSETS_PATH = "/web-assets"
"""The pages' scripts, styles and pictures (inference/web/static/), open to anyone."""
_VERSION = "v1"


@dataclass(frozen=True)
class BrowserSession:
    """What a valid session cookie says."""

    key_id: int
    expires_at: int
    """Unix seconds."""
    csrf: str


def issue(
    secret: bytes, key_id: int, hours: float, now: float | None = None
) -> tuple[str, BrowserSession]:
    """A new session for the key `key_id`: the cookie value and what it says."""
    moment = time.time() if now is None else now
    session = BrowserSession(key_id, int(moment + hours * 3600), secrets.token_urlsafe(24))
    body = f"{_VERSION}.{session.key_id}.{session.expires_at}.{session.csrf}"
    return f"{body}.{_sign(secret, body)}", session


def read(secret: bytes, value: str, now: float | None = None) -> BrowserSession | None:
    """The session a cookie value carries, or None if it is malformed, altered or expired."""
    body, _, signature = value.rpartition(".")
    if not hmac.compare_digest(_sign(secret, body), signature):
        return None
    fields = body.split(".")
    if len(fields) != 4:
        return None
    version, key_id, expires_at, csrf = fields
    if version != _VERSION or not key_id.isdigit() or not expires_at.isdigit() or not csrf:
        return None
    session = BrowserSession(int(key_id), int(expires_at), csrf)
    moment = time.time() if now is None else now
    return session if session.expires_at > moment else None


def wants_page(method: str, path: str, accept: str) -> bool:
    """A browser navigating to a page, not an API client: without a session it is sent to
    sign in (the API answers 401)."""
    return method == "GET" and not path.startswith("/v1/") and "text/html" in accept


def carries_session(cookie_header: str) -> bool:
    """Whether a request's Cookie header holds a session cookie (not whether it is valid)."""
    return any(part.strip().startswith(f"{COOKIE}=") for part in cookie_header.split(";"))


def _sign(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def secret_of(settings: ServiceSettings) -> bytes:
    """The signing secret: `session_secret` if set, else the workspace's `web-session.key`
    (32 random bytes, readable by its owner only), made on first use."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode("utf-8")
    path = settings.home / SECRET_FILE
    if not path.exists():
        _write_secret(path)
    return path.read_bytes()


def _write_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(secrets.token_bytes(32))
    try:  # two instances starting at once: the first one's secret stays
        os.link(partial, path)
    except FileExistsError:
        pass
    finally:
        partial.unlink()


def start(request: Request, response: Response, caller: Caller) -> BrowserSession:
    """Sign the browser in as `caller` (a verified key): set the session cookie on `response`."""
    assert caller.key_id is not None, "only a stored key can open a browser session"
    settings = service_of(request).settings
    value, session = issue(_secret(request), caller.key_id, settings.session_hours)
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(settings.session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return session


def end(request: Request, response: Response) -> None:
    """Sign the browser out: clear its session cookie."""
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def current(request: Request) -> BrowserSession | None:
    """The request's valid session, if it carries one."""
    value = request.cookies.get(COOKIE)
    return read(_secret(request), value) if value else None


async def session_caller(request: Request) -> Caller | None:
    """The caller behind the request's session cookie; None without a cookie. 401 for an
    expired or altered session or a key revoked since; 403 for a request that changes
    something without the session's CSRF token."""
    if COOKIE not in request.cookies:
        return None
    session = current(request)
    if session is None:
        service_of(request).metrics.auth_failures.labels("invalid").inc()
        raise Unauthenticated("the browser session has expired or is not valid: sign in again")
    keys = _session_keys(request)
    known, caller = keys.cached(str(session.key_id))
    if not known:
        caller = await run_in_threadpool(keys.caller, str(session.key_id))
    if caller is None:
        service_of(request).metrics.auth_failures.labels("invalid").inc()
        raise Unauthenticated(
            "the API key this browser signed in with is no longer valid (revoked or expired): "
            "sign in again with a valid key"
        )
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, ""), session.csrf
    ):
        raise Forbidden(
            f"the request has no valid {CSRF_HEADER} header for this browser session; "
            "reload the page and try again"
        )
    return caller


def _secret(request: Request) -> bytes:
    state = request.app.state
    secret: bytes | None = getattr(state, "session_secret", None)
    if secret is None:
        secret = state.session_secret = secret_of(service_of(request).settings)
    return secret


def _session_keys(request: Request) -> KeyCache:
    """Sessions' keys by id, remembered like presented keys (`key_cache_s`)."""
    state = request.app.state
    cache: KeyCache | None = getattr(state, "session_keys", None)
    if cache is None:
        service = service_of(request)

        def verify(key_id: str) -> Caller | None:
            found = service.store.active_key(int(key_id))
            return None if found is None else caller_of(found)

        cache = state.session_keys = KeyCache(verify, service.settings.key_cache_s)
    return cache
