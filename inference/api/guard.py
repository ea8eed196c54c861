"""The checks every request passes before any of its body is read: a request without an API
key to a route that needs one is answered 401 at once, and a body over the route's limit
413 (from its Content-Length, or as soon as a streamed body passes the limit).

FastAPI reads a JSON body before it resolves a route's dependencies, so without this a
caller with no key could make the service read (and hold) any body it sends.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from defectlens.inference.api.auth import key_from_headers
from defectlens.inference.api.docs import ASSETS_PATH
from defectlens.inference.api.session import (
    ASSETS_PATH as WEB_ASSETS_PATH,
)
from defectlens.inference.api.session import (
    SIGNIN_PATHS,
    carries_session,
    wants_page,
)
from defectlens.inference.service import ServiceSettings
from defectlens.inference.service.metrics import ServiceMetrics

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"})
"""Routes anyone may call: probes, figures and the API's own documentation (with its files
under `ASSETS_PATH`)."""
INSPECT_PATH = "/v1/inspect"
ARCHIVE_PATH = "/v1/labels/import/upload"
"""The labelled-folder zip upload: streamed to a temporary file, under its own limit."""
MULTIPART_SLACK = 64 * 1024
"""Room for multipart boundaries and metadata fields on top of the image's byte limit."""


class RequestGuard:
    """ASGI middleware: the key's presence and the body limit, before the app reads anything.
    Whether the key is valid, and the role's rights, are checked by the routes."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings, metrics: ServiceMetrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    def body_limit(self, path: str) -> int:
        if path == INSPECT_PATH:
            return self.settings.max_upload_bytes + MULTIPART_SLACK
        if path == ARCHIVE_PATH:
            return self.settings.max_archive_bytes + MULTIPART_SLACK
        return self.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        if (
            not self.settings.auth_disabled
            and path not in OPEN_PATHS
            and not path.startswith(f"{ASSETS_PATH}/")
            and not key_from_headers(headers.get("x-api-key"), headers.get("authorization"))
            and not _browser(scope, headers)
        ):
            self.metrics.auth_failures.labels("missing").inc()
            await _answer(
                send,
                401,
                "no API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY' "
                "(an admin creates keys with `defectlens keys create --role ROLE`)",
                {"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'},
            )
            return
        limit = self.body_limit(path)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, too_large(int(declared), limit))
            return
        if path == INSPECT_PATH:  # the route streams its image and stops at its own limit
            await self.app(scope, receive, send)
            return
        if path == ARCHIVE_PATH:  # streamed to a temporary file as it arrives
            await self.app(scope, _limited(receive, limit), send)
            return
        # FastAPI turns any error while it reads a body into a 400, so a body sent without
        # Content-Length (or longer than it said) is read here, within the small limit of
        # these routes, and handed on whole.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await _answer(send, 413, too_large(size, limit))
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)


def _browser(scope: Scope, headers: Headers) -> bool:
    """A browser's request the routes decide on: it carries a session cookie (checked by
    `authenticate`), signs in or out, fetches a page's asset, or opens a page (sent to sign
    in without a session). Page requests are GETs: no body is read for them."""
    path: str = scope["path"]
    return (
        carries_session(headers.get("cookie", ""))
        or path in SIGNIN_PATHS
        or path.startswith(f"{WEB_ASSETS_PATH}/")
        or wants_page(scope["method"], path, headers.get("accept", ""))
    )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that gives `messages` first, then goes on with the connection's own."""
    pending = list(messages)

    async def replaying() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive` that stops a body at `limit` bytes: the 413 is raised from the body's
    reader, so the route never sees a truncated upload."""
    size = 0

    async def limited() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise HTTPException(413, too_large(size, limit))
        return message

    return limited


def too_large(size: int, limit: int) -> str:
    """What a 413 says: the size, the limit and the setting that sets it."""
    return (
        f"request body of {size} bytes is over the limit of {limit} bytes for this route "
        "(DEFECTLENS_MAX_UPLOAD_BYTES for images, DEFECTLENS_MAX_ARCHIVE_BYTES for a label "
        "zip, DEFECTLENS_MAX_BODY_BYTES otherwise)"
    )


async def _answer(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
