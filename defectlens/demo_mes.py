"""The demo's MES side: a local webhook receiver, a mosquitto broker with a subscriber when
mosquitto is installed, and the settings that point the service's sinks (and its OPC UA
server) at them; `report` prints what each received."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MesSide:
    """What the plant's systems received, and the service settings that send it there."""

    settings: dict[str, Any]
    webhook: list[dict[str, Any]] = field(default_factory=list)
    mqtt: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    mqtt_note: str = ""

    def report(self, station: str) -> None:
        from defectlens.inference.delivery.opcua import read_station

        results = self.webhook
        last = results[-1] if results else {}
        print(
            f"    MES webhook  {len(results)} results received (signed), the last "
            f"{last.get('serial')} {last.get('verdict')} score {last.get('score', 0):.3f}"
        )
        if self.mqtt_note:
            print(f"    MQTT         {self.mqtt_note}")
        else:
            got = [body for topic, body in self.mqtt if topic.endswith("/result")]
            status = [body for topic, body in self.mqtt if topic.endswith("/status")]
            counts = status[-1]["counts"] if status else {}
            print(f"    MQTT         {len(got)} results on defectlens/+/+/result; status {counts}")
        opcua = read_station(self.settings["opcua_endpoint"], station)
        print(
            f"    OPC UA       {self.settings['opcua_endpoint']} {station}: ResultId "
            f"{opcua['Result/ResultId']}, PartId {opcua['Result/PartId']}, Verdict "
            f"{opcua['Result/Verdict']}, OkCount {opcua['OkCount']}, NgCount {opcua['NgCount']}"
        )


@contextmanager
def mes_side() -> Iterator[MesSide]:
    with ExitStack() as stack:
        side = MesSide(settings={})
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(side.webhook))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        side.settings.update(
            webhook_url=f"http://127.0.0.1:{server.server_address[1]}/mes/results",
            webhook_secret="demo-secret",
            opcua_endpoint=f"opc.tcp://127.0.0.1:{_free_port()}/defectlens/",
            delivery_poll_s=0.05,
        )
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            side.mqtt_note = "mosquitto is not installed: no MQTT sink (scripts/dev.sh installs it)"
        else:
            port = stack.enter_context(_mosquitto(binary))
            stack.enter_context(_subscriber(port, side.mqtt))
            side.settings["mqtt_url"] = f"mqtt://127.0.0.1:{port}"
        yield side


def _handler(received: list[dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def _mosquitto(binary: str) -> Iterator[int]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="defectlens-demo-mqtt-") as folder:
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "log_dest none"]
        if os.geteuid() == 0:
            lines.append("user root")
        config = Path(folder) / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("mosquitto did not start for the demo") from None
                    time.sleep(0.05)
            yield port
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def _subscriber(port: int, received: list[tuple[str, dict[str, Any]]]) -> Iterator[None]:
    import paho.mqtt.client as mqtt

    subscribed = threading.Event()
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="mes")
    client.on_connect = lambda c, *_: c.subscribe("defectlens/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda c, u, m: received.append((m.topic, json.loads(m.payload)))
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.wait(10)
    try:
        yield
    finally:
        client.disconnect()
        client.loop_stop()
