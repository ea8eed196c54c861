"""Results to the plant's systems: the payload the sinks send, the `Sink` interface, the
sinks (HTTP webhook, MQTT, OPC UA server) and the worker that delivers the outbox's rows.

    payload = payload_of(result)                     # built once, stored with the outbox row
    worker = DeliveryWorker(store, [WebhookSink(url, secret)], RetryPolicy())
    worker.start(); worker.notify(); ...; worker.stop()
"""

from defectlens.inference.delivery.payload import ResultPayload, payload_of, payload_schema
from defectlens.inference.delivery.sink import DeliveryFailed, DeliveryRejected, Sink
from defectlens.inference.delivery.worker import DeliveryWorker, RetryPolicy, SinkHealth

__all__ = [
    "DeliveryFailed",
    "DeliveryRejected",
    "DeliveryWorker",
    "ResultPayload",
    "RetryPolicy",
    "Sink",
    "SinkHealth",
    "payload_of",
    "payload_schema",
]
