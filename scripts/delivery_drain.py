"""The MQTT backlog after a broker outage: parts keep coming at a line's rate while a
mosquitto broker is down, then it comes back; prints how long the backlog took to drain and
whether a subscriber (the MES) got every result.

    python scripts/delivery_drain.py [--rate 20] [--outage-minutes 10] [--compressed]

`--compressed` stores the outage's parts as fast as the store takes them instead of waiting
the outage out: the same backlog, minutes sooner. The retry policy is the service's default
(back-off up to 30 s), so the time from the broker's return includes the sink's wait.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "inference" / "store"))
from mqtt_broker import MosquittoBroker, _free_port, find_mosquitto
from store_factories import make_result

from defectlens.inference.delivery import DeliveryWorker, RetryPolicy, payload_of
from defectlens.inference.delivery.mqtt import MqttSink
from defectlens.inference.store import Store, new_result_id, open_database

STATIONS = 4


class Mes:
    """A persistent QoS 1 subscriber to every result: what the MES received."""

    def __init__(self, port: int) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id="mes-drain",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe("defectlens/+/+/result", qos=1)
        self.client.on_message = self._message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.ids.append(json.loads(message.payload)["result_id"])


class Line:
    """Stores a result every 1/rate s (stations in turn) until stopped."""

    def __init__(self, store: Store, worker: DeliveryWorker, rate: float) -> None:
        self.store, self.worker, self.rate = store, worker, rate
        self.stored: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def store_one(self) -> None:
        n = len(self.stored)
        result = make_result(n, station=f"S{n % STATIONS}").model_copy(
            update={"result_id": new_result_id()}
        )
        self.store.save_result(result, sinks=["mqtt"], payload=payload_of(result))
        self.stored.append(result.result_id)
        self.worker.notify()

    def _run(self) -> None:
        start = time.monotonic()
        n = 0
        while not self.stop.is_set():
            self.stop.wait(max(0.0, start + n / self.rate - time.monotonic()))
            self.store_one()
            n += 1


def pending(store: Store) -> int:
    return sum(b.pending for b in store.outbox_backlog() if b.sink == "mqtt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0, help="parts per second")
    parser.add_argument("--outage-minutes", type=float, default=10.0)
    parser.add_argument("--compressed", action="store_true")
    args = parser.parse_args()
    binary = find_mosquitto()
    if binary is None:
        sys.exit("mosquitto is not installed (scripts/dev.sh installs it)")
    folder = Path(tempfile.mkdtemp(prefix="dl-drain-"))
    # The MES's queue must hold the backlog: mosquitto keeps 1000 messages a client by default.
    broker = MosquittoBroker(binary, folder, _free_port(), extra=("max_queued_messages 0",))
    broker.start()
    mes = Mes(broker.port)
    store = Store(open_database(f"sqlite:///{folder / 'drain.db'}"))
    sink = MqttSink(broker.url, client_id="defectlens-drain")
    time.sleep(0.5)
    worker = DeliveryWorker(store, [sink], RetryPolicy())
    worker.start()
    line = Line(store, worker, args.rate)
    line.thread.start()
    time.sleep(3)

    outage_s = args.outage_minutes * 60
    broker.stop()
    down_at = time.monotonic()
    print(f"broker down for {args.outage_minutes:g} min, parts at {args.rate:g}/s", flush=True)
    if args.compressed:
        line.stop.set()
        line.thread.join()
        for _ in range(int(outage_s * args.rate)):
            line.store_one()
        line = Line(store, worker, args.rate)  # the line goes on at its rate meanwhile
        line.stored = []
        line.thread.start()
    else:
        time.sleep(max(0.0, down_at + outage_s - time.monotonic()))
    backlog = pending(store)
    broker.start()
    back_at = time.monotonic()
    first_at = None
    while True:
        left = pending(store)
        if first_at is None and left < backlog:
            first_at = time.monotonic()
        if left <= STATIONS:  # only the parts just stored by the running line
            break
        time.sleep(0.05)
    drained_at = time.monotonic()
    line.stop.set()
    line.thread.join()
    deadline = time.monotonic() + 60
    stored = set(store_ids(store))
    while set(mes.ids) < stored and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.stop()
    got = set(mes.ids)
    assert first_at is not None
    print(
        f"backlog {backlog} results; broker back -> first delivery "
        f"{first_at - back_at:.1f} s; drained {drained_at - back_at:.1f} s after the broker "
        f"came back ({backlog / max(1e-9, drained_at - first_at):.0f} results/s while "
        f"draining, the line still storing {args.rate:g}/s)"
    )
    print(
        f"MES received {len(got & stored)}/{len(stored)} stored results "
        f"({len(stored - got)} lost, {len(mes.ids) - len(got)} duplicates)"
    )
    broker.stop()


def store_ids(store: Store) -> list[str]:
    from sqlalchemy import select

    from defectlens.inference.store.tables import OutboxRow

    with store.db.read() as session:
        return list(session.scalars(select(OutboxRow.result_id)))


if __name__ == "__main__":
    main()
