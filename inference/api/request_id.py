"""A request id for every HTTP request: taken from the client's `X-Request-ID` or made here,
current while the request is served (so every log line written for it carries it), and
returned in the response's `X-Request-ID`.

Work handed to a thread pool keeps the id through `defectlens.logs.submit_with_context`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from defectlens.logs import reset_request_id, set_request_id

HEADER = "X-Request-ID"
_HEADER_NAME = HEADER.lower().encode("ascii")
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's `X-Request-ID` when it is 1 to 64 letters, digits, '.', '_' or '-',
    else a new id (32 hex digits): anything else could smuggle text into logs and headers."""
    for name, value in headers:
        if name.lower() == _HEADER_NAME:
            candidate = value.decode("latin-1")
            if _VALID_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI middleware (bodies pass through as they come): the request id is current
    for the whole request and added to the response's headers, errors included.

    Starlette answers an exception that no handler took (and the app's `Exception` handler)
    from outside every middleware added with `add_middleware`; to cover those 500s too, wrap
    the app's whole middleware stack, e.g. in `build_middleware_stack`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        header = (_HEADER_NAME, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _HEADER_NAME]
                headers.append(header)
                message = {**message, "headers": headers}
            await send(message)

        token = set_request_id(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_request_id(token)
