"""Request ids: the client's `X-Request-ID` or a new one, on every response and on every log
line written for the request, in the route and on the inspection threads alike."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from defectlens.inference.api.request_id import HEADER, RequestIdMiddleware
from defectlens.logs import JsonFormatter, current_request_id, submit_with_context

log = logging.getLogger("defectlens.test.request_id")
GENERATED = re.compile(r"[0-9a-f]{32}")


class ServiceFault(Exception):
    """An error the app's own handler answers with a 500 (inside the middleware stack)."""


class OutermostRequestIds(FastAPI):
    """The wiring the service uses: around Starlette's last-resort error layer too."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack())


def build_app(placement: str, inspections: ThreadPoolExecutor) -> FastAPI:
    if placement == "outermost":
        app: FastAPI = OutermostRequestIds()
    else:
        app = FastAPI()
        app.add_middleware(RequestIdMiddleware)

    async def service_fault(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "service fault"}, status_code=500)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s: unexpected error", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_exception_handler(ServiceFault, service_fault)
    app.add_exception_handler(Exception, unexpected)

    def inspect_part(serial: str) -> str | None:
        log.info("inspected", extra={"station": "line1-cam1", "serial": serial})
        return current_request_id()

    @app.get("/part")
    async def part() -> dict[str, Any]:
        log.info("part received", extra={"serial": "A1"})
        on_thread = await asyncio.wrap_future(submit_with_context(inspections, inspect_part, "A1"))
        return {"request_id": current_request_id(), "on_thread": on_thread}

    @app.get("/sync")
    def sync_route() -> dict[str, Any]:  # runs on a worker thread of anyio's
        return {"request_id": current_request_id()}

    @app.get("/handled")
    async def handled() -> None:
        raise ServiceFault

    @app.get("/unexpected")
    async def unexpected_route() -> None:
        raise RuntimeError("boom")

    @app.get("/sets-its-own")
    async def sets_its_own() -> Response:
        return Response("ok", headers={HEADER: "from-the-route"})

    return app


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield stream
    log.removeHandler(handler)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture(params=["outermost", "add_middleware"])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with (
        ThreadPoolExecutor(2, "inspect") as inspections,
        TestClient(build_app(request.param, inspections), raise_server_exceptions=False) as c,
    ):
        yield c


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", True),
        ("Line1.cam_2-0007", True),
        ("x", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("has space", False),
        ("a/b", False),
        ("a\tb", False),
        ("semi;colon", False),
        ("ünïcode", False),
    ],
)
def test_a_valid_client_id_is_kept_any_other_replaced(
    client: TestClient, sent: str, kept: bool
) -> None:
    response = client.get("/part", headers={HEADER: sent.encode("utf-8")})
    assert response.status_code == 200
    answered = response.headers[HEADER]
    assert response.json()["request_id"] == answered
    if kept:
        assert answered == sent
    else:
        assert GENERATED.fullmatch(answered)


def test_without_a_client_id_each_request_gets_a_new_one(client: TestClient) -> None:
    first, second = (client.get("/part").headers[HEADER] for _ in range(2))
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second)
    assert first != second


def test_sync_routes_see_the_id(client: TestClient) -> None:
    response = client.get("/sync", headers={HEADER: "sync-1"})
    assert response.json() == {"request_id": "sync-1"}


def test_one_header_even_when_the_route_sets_its_own(client: TestClient) -> None:
    response = client.get("/sets-its-own", headers={HEADER: "client-1"})
    assert response.headers.get_list(HEADER) == ["client-1"]


@pytest.mark.parametrize(("path", "status"), [("/no/such/route", 404), ("/handled", 500)])
def test_errors_carry_the_id(client: TestClient, path: str, status: int) -> None:
    response = client.get(path, headers={HEADER: "err-1"})
    assert response.status_code == status
    assert response.headers[HEADER] == "err-1"


def test_the_route_and_its_inspection_thread_log_the_same_id(
    client: TestClient, log_lines: io.StringIO
) -> None:
    response = client.get("/part", headers={HEADER: "part-1"})
    assert response.json() == {"request_id": "part-1", "on_thread": "part-1"}
    route_line, thread_line = parsed(log_lines)
    assert route_line["message"] == "part received"
    assert route_line["request_id"] == "part-1"
    assert thread_line == {
        **thread_line,
        "message": "inspected",
        "request_id": "part-1",
        "station": "line1-cam1",
        "serial": "A1",
    }


def test_an_unexpected_error_s_500_and_its_log_line_carry_the_id(log_lines: io.StringIO) -> None:
    """Starlette answers it from outside `add_middleware`'s stack: only the outermost wiring
    covers it."""
    with (
        ThreadPoolExecutor(1) as inspections,
        TestClient(build_app("outermost", inspections), raise_server_exceptions=False) as client,
    ):
        response = client.get("/unexpected", headers={HEADER: "boom-1"})
    assert response.status_code == 500
    assert response.headers[HEADER] == "boom-1"
    (line,) = parsed(log_lines)
    assert line["request_id"] == "boom-1"
    assert "RuntimeError: boom" in line["exception"]


def asgi_scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "GET", "path": "/", "headers": headers}


def empty_body() -> Receive:
    """A client that sent no body and then stays connected."""
    messages: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # until the app stops listening
        raise AssertionError("unreachable")

    return receive


def test_the_id_is_reset_after_the_request_also_on_error() -> None:
    seen: list[str | None] = []

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(current_request_id())
        raise RuntimeError("boom")

    async def ignore(message: Message) -> None:
        pass

    async def scenario() -> str | None:
        with pytest.raises(RuntimeError):
            await RequestIdMiddleware(failing)(
                asgi_scope([(b"x-request-id", b"r-1")]), empty_body(), ignore
            )
        return current_request_id()

    assert asyncio.run(scenario()) is None
    assert seen == ["r-1"]


def test_a_streamed_body_passes_chunk_by_chunk() -> None:
    """Pure ASGI: each message goes on as it comes, nothing is gathered first."""
    sent: list[Message] = []

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"one", b"two"):
            yield chunk
            # The first chunk is already on its way before the second is made.
            assert sent[-1]["body"] == chunk

    async def record(message: Message) -> None:
        sent.append(message)

    app = RequestIdMiddleware(StreamingResponse(chunks()))
    asyncio.run(app(asgi_scope([(b"X-Request-ID", b"s-1")]), empty_body(), record))
    start, *bodies = sent
    assert (b"x-request-id", b"s-1") in start["headers"]
    assert [m.get("body") for m in bodies] == [b"one", b"two", b""]


def test_other_scopes_pass_untouched() -> None:
    seen: list[tuple[str, str | None]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope["type"], current_request_id()))

    async def nothing() -> Message:
        return {"type": "lifespan.startup"}

    async def ignore(message: Message) -> None:
        pass

    asyncio.run(RequestIdMiddleware(app)({"type": "lifespan"}, nothing, ignore))
    assert seen == [("lifespan", None)]
