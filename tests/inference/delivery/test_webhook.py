"""The webhook sink and the delivery worker against a real HTTP receiver and a real store:
signed JSON with the result id as idempotency key; through an outage every result arrives,
in order per station, never twice with different content; a refused payload becomes a dead
letter without holding its station up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from receiver import Receiver
from store_factories import make_result

from defectlens.inference.delivery import DeliveryWorker, RetryPolicy, payload_of
from defectlens.inference.delivery.sink import DeliveryFailed, DeliveryRejected
from defectlens.inference.delivery.webhook import (
    SIGNATURE_HEADER,
    WebhookSink,
    payload_body,
    sign,
    verify_signature,
)
from defectlens.inference.store import Store

SECRET = "mes-shared-secret"
FAST = RetryPolicy(max_attempts=1000, max_rejections=2, backoff_s=0.02, max_backoff_s=0.2)


def _store_part(store: Store, n: int, station: str = "S1") -> str:
    result = make_result(n, station=station)
    store.save_result(result, sinks=("webhook",), payload=payload_of(result))
    return result.result_id


def _wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


@pytest.fixture
def worker(store: Store, receiver: Receiver) -> Iterator[DeliveryWorker]:
    running = DeliveryWorker(store, [WebhookSink(receiver.url, SECRET, 2.0)], FAST, poll_s=0.02)
    running.start()
    yield running
    running.stop()


def test_signature_is_hmac_of_timestamp_and_body() -> None:
    # Hand-computed with: printf '1700000000.{}' | openssl dgst -sha256 -hmac k
    header = sign("k", b"{}", 1700000000)
    assert header == (
        "t=1700000000,v1=c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
    )
    assert verify_signature("k", header, b"{}", now=1700000100)
    assert not verify_signature("k", header, b"{ }", now=1700000100)
    assert not verify_signature("other", header, b"{}", now=1700000100)
    assert not verify_signature("k", header, b"{}", now=1700009999)  # too old


def test_sink_posts_signed_json_with_the_idempotency_key(receiver: Receiver) -> None:
    payload = payload_of(make_result(1))
    sink = WebhookSink(receiver.url, SECRET)
    sink.send(payload, payload["result_id"])
    sink.close()
    (got,) = receiver.received
    assert got.payload == payload and got.body == payload_body(payload)
    assert got.headers["Idempotency-Key"] == payload["result_id"]
    assert got.headers["Content-Type"] == "application/json"
    assert verify_signature(SECRET, got.headers[SIGNATURE_HEADER], got.body)


def test_sink_raises_when_down_and_rejects_on_4xx(receiver: Receiver) -> None:
    payload = payload_of(make_result(1))
    sink = WebhookSink(receiver.url, None, timeout_s=1.0)
    receiver.reject.add(payload["result_id"])
    with pytest.raises(DeliveryRejected, match="400"):
        sink.send(payload, payload["result_id"])
    receiver.stop()
    with pytest.raises(DeliveryFailed, match="ConnectError"):
        sink.send(payload, payload["result_id"])
    sink.close()


def test_every_result_arrives_through_an_outage_in_order_per_station(
    store: Store, receiver: Receiver, worker: DeliveryWorker
) -> None:
    ids = [_store_part(store, n, f"S{n % 3}") for n in range(15)]
    worker.notify()
    _wait_for(lambda: len(receiver.received) >= 15)
    receiver.stop()  # the MES goes down while parts keep coming
    ids += [_store_part(store, n, f"S{n % 3}") for n in range(15, 45)]
    worker.notify()
    _wait_for(lambda: worker.health()["webhook"].failing_since is not None)
    time.sleep(0.5)
    receiver.start()  # back on the same port
    _wait_for(lambda: not store.list_deliveries(state="pending"))
    payloads = receiver.payloads()
    by_id: dict[str, list[dict[str, object]]] = {}
    for payload in payloads:
        by_id.setdefault(str(payload["result_id"]), []).append(payload)
    assert set(by_id) == set(ids)
    assert all(all(p == copies[0] for p in copies) for copies in by_id.values())
    for station in ("S0", "S1", "S2"):
        arrived = [str(p["result_id"]) for p in payloads if p["station"] == station]
        first_arrivals = list(dict.fromkeys(arrived))
        assert first_arrivals == sorted(first_arrivals)
    assert store.list_deliveries(state="dead") == []
    assert worker.health()["webhook"].failing_since is None


def test_a_refused_payload_becomes_a_dead_letter_and_later_results_go_on(
    store: Store, receiver: Receiver, worker: DeliveryWorker
) -> None:
    poisoned = _store_part(store, 0)
    receiver.reject.add(poisoned)
    later = [_store_part(store, n) for n in range(1, 4)]
    worker.notify()
    _wait_for(lambda: len(receiver.received) == 3)
    assert [p["result_id"] for p in receiver.payloads()] == later
    (dead,) = store.list_deliveries(state="dead")
    assert dead.result_id == poisoned and dead.attempts == FAST.max_rejections
    assert dead.last_error is not None and "400" in dead.last_error
    receiver.reject.clear()  # the MES is fixed: the dead letter is re-sent
    store.retry_delivery(dead.id)
    worker.notify()
    _wait_for(lambda: len(receiver.received) == 4)
    assert receiver.payloads()[-1]["result_id"] == poisoned
