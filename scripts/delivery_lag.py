"""Delivery lag (result stored -> sink acknowledged) p50/p99 per sink at a line's rate, on
loopback: a local HTTP receiver and, when installed, a mosquitto broker.

    python scripts/delivery_lag.py [--rate 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "inference" / "store"))
from mqtt_broker import MosquittoBroker, _free_port, find_mosquitto
from store_factories import make_result

from defectlens.inference.delivery import DeliveryWorker, RetryPolicy, Sink, payload_of
from defectlens.inference.delivery.mqtt import MqttSink
from defectlens.inference.delivery.webhook import WebhookSink
from defectlens.inference.store import Store, new_result_id, open_database


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0, help="parts per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dl-lag-"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sinks: list[Sink] = [WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/", "s")]
    broker = None
    binary = find_mosquitto()
    if binary:
        broker = MosquittoBroker(binary, folder, _free_port())
        broker.start()
        sinks.append(MqttSink(broker.url, client_id="lag"))
        time.sleep(0.5)
    store = Store(open_database(f"sqlite:///{folder / 'lag.db'}"))
    lags: dict[str, list[float]] = {sink.name: [] for sink in sinks}
    worker = DeliveryWorker(
        store, sinks, RetryPolicy(), on_delivered=lambda s, lag: lags[s].append(lag)
    )
    worker.start()
    count = int(args.rate * args.seconds)
    start = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, start + n / args.rate - time.monotonic()))
        result = make_result(n, station=f"S{n % 4}").model_copy(
            update={"result_id": new_result_id()}
        )
        store.save_result(result, sinks=[s.name for s in sinks], payload=payload_of(result))
        worker.notify()
    time.sleep(1.0)
    worker.stop()
    if broker:
        broker.stop()
    server.shutdown()
    for name, values in lags.items():
        ms = sorted(v * 1000 for v in values)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        print(
            f"{name}: {len(ms)}/{count} delivered at {args.rate:g} parts/s, lag p50 "
            f"{statistics.median(ms):.1f} ms, p99 {p99:.1f} ms"
        )


if __name__ == "__main__":
    main()
