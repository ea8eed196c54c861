"""Prometheus figures of one service instance, and the ASGI middleware that counts requests.

Each app has its own `CollectorRegistry`, so several apps in one process (tests) do not
collide. Requests are labelled by route template (`/v1/results/{result_id}`), never by the
raw path, to keep the label set small.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_MODEL_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)


class ServiceMetrics:
    """The counters and histograms /metrics exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "defectlens_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "defectlens_http_request_seconds",
            "Time from request start to the end of the response, by route template.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.verdicts = Counter(
            "defectlens_inspections",
            "Parts inspected and stored, by station and verdict.",
            ["station", "verdict"],
            registry=self.registry,
        )
        self.model_time = Histogram(
            "defectlens_model_seconds",
            "ONNX Runtime time of one inspection (the graph call only), by station.",
            ["station"],
            buckets=_MODEL_BUCKETS,
            registry=self.registry,
        )
        self.inspection_time = Histogram(
            "defectlens_inspection_seconds",
            "Decode, model, post-processing, image retention and storing of one part.",
            ["station"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_swaps = Counter(
            "defectlens_model_swaps",
            "Hot swaps of a station's model (promote or rollback).",
            ["station"],
            registry=self.registry,
        )
        self.stations_ready = Gauge(
            "defectlens_stations_ready",
            "Stations with a model loaded (1) or not (0).",
            ["station"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it."""

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
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)
