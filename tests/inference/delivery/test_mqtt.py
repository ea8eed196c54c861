"""The MQTT sink against a real mosquitto broker (tests/mqtt_broker.py): QoS 1 results on
defectlens/{line}/{station}/result, the retained status, and every result through a broker
outage, in order per station, never twice with different content."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from store_factories import make_result

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for mqtt_broker
from mqtt_broker import MosquittoBroker, mqtt_broker  # noqa: F401  (the fixture)

from defectlens.inference.delivery import DeliveryWorker, RetryPolicy, payload_of
from defectlens.inference.delivery.mqtt import MqttSink, station_topic
from defectlens.inference.store import Store

FAST = RetryPolicy(max_attempts=1000, backoff_s=0.05, max_backoff_s=0.3)


class Subscriber:
    """A persistent QoS 1 subscriber to defectlens/# (the MES side)."""

    def __init__(self, port: int, client_id: str = "mes", clean: bool = False) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe("defectlens/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, json.loads(message.payload), message.retain))

    def results(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for topic, body, _ in self.messages if topic.endswith("/result")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.fixture
def subscriber(mqtt_broker: MosquittoBroker) -> Iterator[Subscriber]:  # noqa: F811
    running = Subscriber(mqtt_broker.port)
    yield running
    running.close()


def _store_part(store: Store, n: int, station: str = "S1", verdict: str = "OK") -> str:
    result = make_result(n, station=station, verdict=verdict)
    store.save_result(result, sinks=("mqtt",), payload=payload_of(result))
    return result.result_id


def test_topics_name_line_and_station_without_wildcards() -> None:
    assert station_topic("L1", "cam/1") == "defectlens/L1/cam_1"
    assert station_topic(None, "s+#") == "defectlens/-/s__"


def test_results_and_retained_status_reach_the_broker(
    store: Store,
    mqtt_broker: MosquittoBroker,  # noqa: F811
    subscriber: Subscriber,
) -> None:
    worker = DeliveryWorker(store, [MqttSink(mqtt_broker.url, client_id="t1")], FAST, poll_s=0.05)
    worker.start()
    try:
        ids = [_store_part(store, n, verdict="NG" if n == 2 else "OK") for n in range(3)]
        worker.notify()
        _wait_for(lambda: len(subscriber.results()) == 3)
    finally:
        worker.stop()
    assert [r["result_id"] for r in subscriber.results()] == ids
    late = Subscriber(mqtt_broker.port, client_id="late", clean=True)  # joins afterwards
    try:
        _wait_for(lambda: bool(late.messages))
        topic, status, retained = late.messages[0]
    finally:
        late.close()
    assert topic == "defectlens/L1/S1/status" and retained
    assert status["last_result_id"] == ids[-1] and status["last_verdict"] == "NG"
    assert status["counts"] == {"OK": 2, "NG": 1}


def test_a_result_sent_again_is_counted_once_in_the_status(
    mqtt_broker: MosquittoBroker,  # noqa: F811
) -> None:
    sink = MqttSink(mqtt_broker.url, client_id="t3")
    try:
        _wait_for(sink.client.is_connected)
        first, second = make_result(0), make_result(1, verdict="NG")
        sink.send(payload_of(first), first.result_id)
        sink.send(payload_of(first), first.result_id)  # e.g. the status was not acknowledged
        sink.send(payload_of(second), second.result_id)
        sink.send(payload_of(first), first.result_id)  # rows sent again after a crash
    finally:
        sink.close()
    late = Subscriber(mqtt_broker.port, client_id="late", clean=True)
    try:
        _wait_for(lambda: bool(late.messages))
        _, status, _ = late.messages[0]
    finally:
        late.close()
    assert status["counts"] == {"OK": 1, "NG": 1}


def test_every_result_arrives_through_a_broker_outage(
    store: Store,
    mqtt_broker: MosquittoBroker,  # noqa: F811
    subscriber: Subscriber,
) -> None:
    sink = MqttSink(mqtt_broker.url, client_id="t2", timeout_s=1.0)
    worker = DeliveryWorker(store, [sink], FAST, poll_s=0.05)
    worker.start()
    try:
        ids = [_store_part(store, n, f"S{n % 2}") for n in range(10)]
        worker.notify()
        _wait_for(lambda: len(subscriber.results()) == 10)
        mqtt_broker.stop()  # the broker goes down while parts keep coming
        ids += [_store_part(store, n, f"S{n % 2}") for n in range(10, 30)]
        worker.notify()
        _wait_for(lambda: worker.health()["mqtt"].failing_since is not None)
        mqtt_broker.start()  # back, with the subscriber's session
        _wait_for(lambda: not store.list_deliveries(state="pending"))
        _wait_for(lambda: {r["result_id"] for r in subscriber.results()} == set(ids))
    finally:
        worker.stop()
    results = subscriber.results()
    first: dict[str, dict[str, Any]] = {}
    for body in results:
        assert first.setdefault(body["result_id"], body) == body  # copies are identical
    for station in ("S0", "S1"):
        arrived = list(dict.fromkeys(r["result_id"] for r in results if r["station"] == station))
        assert arrived == sorted(arrived)
