"""The MQTT sink (paho-mqtt): each result published with QoS 1 to
`defectlens/{line}/{station}/result`, then the station's retained
`defectlens/{line}/{station}/status` (last verdict, result and OK/NG counts since this sink
started, each result id counted once). A result counts as delivered once the broker
acknowledged it (PUBACK).

The client connects in the background and reconnects by itself; while it is not connected
`send` fails at once and the worker tries again later. `mqtts://` connects with TLS.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from defectlens.errors import InputError
from defectlens.inference.delivery.sink import DeliveryFailed, RecentIds, Sink

TOPIC_PREFIX = "defectlens"
_NOT_IN_TOPICS = str.maketrans({"/": "_", "+": "_", "#": "_"})
"""Result ids remembered per station, so a result sent again is not counted twice."""


def station_topic(line: str | None, station: str) -> str:
    """`defectlens/{line}/{station}` (a missing line is `-`; `/`, `+`, `#` become `_`)."""
    return f"{TOPIC_PREFIX}/{(line or '-').translate(_NOT_IN_TOPICS)}/" + station.translate(
        _NOT_IN_TOPICS
    )


class MqttSink(Sink):
    """Publishes to the broker at `url` (mqtt://host:1883 or mqtts://host:8883)."""

    name = "mqtt"

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        client_id: str = "defectlens",
        timeout_s: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise InputError(
                f"DEFECTLENS_MQTT_URL {url!r}: expected mqtt://host:port or mqtts://host:port"
            )
        self.url = url
        self.timeout_s = timeout_s
        self._counts: dict[str, dict[str, int]] = {}
        self._seen: dict[str, RecentIds] = {}
        self._since = datetime.now(UTC).isoformat()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
        )
        if username:
            self.client.username_pw_set(username, password)
        if parts.scheme == "mqtts":
            self.client.tls_set(ca_certs=str(ca_file) if ca_file else None)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.client.connect_async(parts.hostname, port, keepalive=30)
        self.client.loop_start()

    def send(self, payload: dict[str, Any], result_id: str) -> None:
        if not self.client.is_connected():
            raise DeliveryFailed(f"MQTT broker {self.url}: not connected")
        topic = station_topic(payload.get("line"), str(payload["station"]))
        self._publish(f"{topic}/result", json.dumps(payload, separators=(",", ":")), False)
        self._publish(f"{topic}/status", json.dumps(self._status(payload)), True)

    def _status(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = str(payload["station"])
        result_id = str(payload["result_id"])
        with self._lock:
            counts = self._counts.setdefault(station, {"OK": 0, "NG": 0})
            # A re-send (the status unacknowledged, or rows sent again after a crash) publishes
            # the status again without counting the part twice.
            if self._seen.setdefault(station, RecentIds()).add(result_id):
                counts[str(payload["verdict"])] = counts.get(str(payload["verdict"]), 0) + 1
            counts = dict(counts)
        return {
            "station": station,
            "line": payload.get("line"),
            "last_verdict": payload["verdict"],
            "last_result_id": payload["result_id"],
            "last_received_at": payload.get("received_at"),
            "counts": counts,
            "counts_since": self._since,
        }

    def _publish(self, topic: str, body: str, retain: bool) -> None:
        info = self.client.publish(topic, body, qos=1, retain=retain)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as error:
            raise DeliveryFailed(f"MQTT broker {self.url}: {topic}: {error}") from error
        if not info.is_published():
            raise DeliveryFailed(
                f"MQTT broker {self.url}: {topic} not acknowledged within {self.timeout_s:g} s"
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
