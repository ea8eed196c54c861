"""Results to the MES: which sinks the settings configure, the delivery worker of a running
service, the dead letters and their re-sending, and each sink's backlog for /metrics and
/readyz. The HTTP routes and the CLI call these."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from defectlens.inference.delivery import DeliveryWorker, RetryPolicy, Sink
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Store
from defectlens.inference.store.outbox import Backlog, DeliveryRecord, DeliveryState
from defectlens.inference.store.tables import utc_now

if TYPE_CHECKING:
    from defectlens.inference.service.core import InspectionService


def sink_names(settings: ServiceSettings, station: str | None = None) -> tuple[str, ...]:
    """The sinks a result of `station` goes to (an outbox row each): those `station_sinks`
    names for it, else every configured sink (also when `station` is None)."""
    names = []
    if settings.webhook_url:
        names.append("webhook")
    if settings.mqtt_url:
        names.append("mqtt")
    if settings.opcua_endpoint:
        names.append("opcua")
    chosen = settings.station_sinks.get(station) if station is not None else None
    if chosen is not None:
        return tuple(name for name in names if name in chosen)
    return tuple(names)


def configured_sinks(settings: ServiceSettings) -> list[Sink]:
    """The sinks of `sink_names`, ready to send."""
    sinks: list[Sink] = []
    if settings.webhook_url:
        from defectlens.inference.delivery.webhook import WebhookSink

        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        sinks.append(WebhookSink(settings.webhook_url, secret, settings.webhook_timeout_s))
    if settings.mqtt_url:
        from defectlens.inference.delivery.mqtt import MqttSink

        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        sinks.append(
            MqttSink(
                settings.mqtt_url,
                username=settings.mqtt_username,
                password=password,
                ca_file=settings.mqtt_ca_file,
                client_id=settings.mqtt_client_id or f"defectlens-{settings.instance_id}",
            )
        )
    if settings.opcua_endpoint:
        from defectlens.inference.delivery.opcua import OpcUaSink

        secret = settings.opcua_password.get_secret_value() if settings.opcua_password else None
        sinks.append(
            OpcUaSink(
                settings.opcua_endpoint,
                username=settings.opcua_username,
                password=secret,
                certificate=settings.opcua_certificate,
                private_key=settings.opcua_private_key,
            )
        )
    return sinks


def retry_policy(settings: ServiceSettings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.delivery_max_attempts,
        max_rejections=settings.delivery_max_rejections,
        backoff_s=settings.delivery_backoff_s,
        max_backoff_s=settings.delivery_max_backoff_s,
    )


def start_delivery(service: InspectionService) -> DeliveryWorker | None:
    """Start delivering the outbox to the configured sinks (None when there are none); the
    service stops the worker when it closes."""
    sinks = configured_sinks(service.settings)
    if not sinks:
        return None
    metrics = service.metrics
    worker = DeliveryWorker(
        service.store,
        sinks,
        retry_policy(service.settings),
        poll_s=service.settings.delivery_poll_s,
        lease_s=service.settings.delivery_lease_s,
        on_delivered=lambda sink, lag: metrics.delivery_lag.labels(sink).observe(lag),
        on_failed=lambda sink, dead: metrics.delivery_failures.labels(sink, str(dead)).inc(),
    )
    worker.start()
    service.delivery = worker
    return worker


def list_deliveries(
    store: Store,
    state: DeliveryState | None = None,
    sink: str | None = None,
    station: str | None = None,
    limit: int = 100,
) -> list[DeliveryRecord]:
    return store.list_deliveries(state=state, sink=sink, station=station, limit=limit)


def retry_delivery(
    store: Store, delivery_id: int, worker: DeliveryWorker | None = None
) -> DeliveryRecord:
    """Send a dead letter again now, its tries counted from zero (`worker`: wake it)."""
    record = store.retry_delivery(delivery_id)
    if worker is not None:
        worker.notify()
    return record


def delivery_backlog(service: InspectionService) -> list[Backlog]:
    """Each configured sink's backlog, also set on the /metrics gauges."""
    configured = sink_names(service.settings)
    found = {backlog.sink: backlog for backlog in service.store.outbox_backlog()}
    now = utc_now()
    backlogs = []
    for sink in sorted({*configured, *found}):
        backlog = found.get(sink, Backlog(sink, 0, 0, None))
        oldest = backlog.oldest_pending_at
        metrics = service.metrics
        metrics.outbox_pending.labels(sink).set(backlog.pending)
        metrics.outbox_dead.labels(sink).set(backlog.dead)
        metrics.outbox_oldest_s.labels(sink).set(
            0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        )
        backlogs.append(backlog)
    return backlogs


def delivery_problems(service: InspectionService) -> list[str]:
    """A sink failing for longer than `sink_down_ready_s`, with its last error (for
    /readyz)."""
    worker = service.delivery
    if worker is None:
        return []
    limit = service.settings.sink_down_ready_s
    now = time.time()
    problems = []
    for name, health in sorted(worker.health().items()):
        if health.failing_since is not None and now - health.failing_since > limit:
            problems.append(
                f"sink {name} has failed for {now - health.failing_since:.0f} s (over "
                f"DEFECTLENS_SINK_DOWN_READY_S, {limit:g} s): {health.last_error}"
            )
    return problems
