"""Prometheus figures of one service instance.

Each service has its own `CollectorRegistry`, so several in one process (tests) do not
collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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

        self.parts_waiting = Gauge(
            "defectlens_parts_waiting",
            "Parts accepted and not yet answered (queued for an inspection thread or running).",
            registry=self.registry,
        )
        self.parts_refused = Counter(
            "defectlens_parts_refused",
            "Parts refused before inspection because too many were waiting (503).",
            registry=self.registry,
        )
        self.free_disk = Gauge(
            "defectlens_images_free_bytes",
            "Free bytes on the disk that holds the retained images.",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "defectlens_auth_failures",
            "Requests refused for a missing, unknown, revoked or expired API key.",
            ["reason"],
            registry=self.registry,
        )

        self.outbox_pending = Gauge(
            "defectlens_outbox_pending",
            "Results stored and not yet delivered to the sink (the backlog).",
            ["sink"],
            registry=self.registry,
        )
        self.outbox_dead = Gauge(
            "defectlens_outbox_dead",
            "Results the sink never took (dead letters, until retried).",
            ["sink"],
            registry=self.registry,
        )
        self.outbox_oldest_s = Gauge(
            "defectlens_outbox_oldest_pending_seconds",
            "Age of the oldest result not yet delivered to the sink (0 when none waits).",
            ["sink"],
            registry=self.registry,
        )
        self.delivery_lag = Histogram(
            "defectlens_delivery_lag_seconds",
            "Time from a result stored to the sink's acknowledgement, by sink.",
            ["sink"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.delivery_failures = Counter(
            "defectlens_delivery_failures",
            "Failed deliveries by sink, and whether the result became a dead letter.",
            ["sink", "dead"],
            registry=self.registry,
        )

        self.model_drift = Gauge(
            "defectlens_model_score_drift",
            "Score drift of a model version over the last day: population stability index of "
            "its production scores against its good validation scores (reports' model health).",
            ["model", "version"],
            registry=self.registry,
        )
        self.model_drift_alert = Gauge(
            "defectlens_model_drift_alert",
            "1 while a model version's score drift is above DEFECTLENS_DRIFT_ALERT, else 0.",
            ["model", "version"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
