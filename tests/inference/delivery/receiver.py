"""A real HTTP receiver for webhook tests: a `ThreadingHTTPServer` on a loopback port that
records every POST, can answer a chosen status, and can go down and come back on its port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class Receiver:
    """`url` stays the same across `stop()` and `start()`."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    reject: set[str] = field(default_factory=set)
    """Result ids answered 400 (a payload the MES refuses)."""
    delay_s: float = 0.0
    """How long each answer takes (a slow MES, so results queue up in the outbox)."""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mes/results"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                time.sleep(receiver.delay_s)
                if key in receiver.reject:
                    status = 400
                else:
                    status = 200
                    with receiver._lock:
                        receiver.received.append(Received(body, dict(self.headers.items())))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.payload for r in self.received]
