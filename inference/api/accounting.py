"""The ASGI middleware that accounts for every HTTP request: counted and timed in the
service's Prometheus figures, and one log line at INFO (with the request id, set outside).

Requests are labelled by route template (`/v1/results/{result_id}`), never by the raw path,
to keep the label set small; the log line has the path as requested.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from defectlens.inference.service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class RequestAccounting:
    """Counts every HTTP request by route template and status, times it, and logs it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            method = scope.get("method", "")
            # The router records the matched route in the (shared) scope.
            route = str(getattr(scope.get("route"), "path", "unmatched"))
            seconds = time.perf_counter() - start
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(seconds)
            log.info(
                "%s %s %d %.1f ms",
                method,
                scope.get("path", ""),
                status,
                seconds * 1000,
                extra={"status": status, "route": route, **_log_fields(scope)},
            )


def _log_fields(scope: Scope) -> dict[str, object]:
    """Fields a route put on its request's log line (`request.state.log_fields`)."""
    state = scope.get("state") or {}
    fields = state.get("log_fields") if isinstance(state, dict) else None
    return dict(fields) if isinstance(fields, dict) else {}
