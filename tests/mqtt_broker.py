"""A throwaway mosquitto broker for tests, from the machine's own package.

    from mqtt_broker import mqtt_broker  # noqa: F401  (in a conftest: the fixture)
    def test_x(mqtt_broker): url = mqtt_broker.url; mqtt_broker.stop(); mqtt_broker.start()

The broker listens on a free loopback port, keeps its state in a temporary folder (so a
persistent subscriber's queued messages survive `stop()` and `start()`, as they would a
restart of the plant's broker) and is killed at the end. Missing binary: the tests are
skipped with the package to install, or fail when the environment variable `CI` is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "apt-get install mosquitto (Debian/Ubuntu), or put mosquitto on PATH"


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MosquittoBroker:
    binary: str
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()
    """More mosquitto.conf lines (e.g. "max_queued_messages 0")."""

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.root / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.root}/",
            f"log_dest file {self.root}/mosquitto.log",
        ]
        lines.extend(self.extra)
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to a `mosquitto` user that may not exist
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen([self.binary, "-c", str(config)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        log = (self.root / "mosquitto.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{log}")

    def stop(self) -> None:
        """Stop as a service manager would (SIGTERM: state saved to its folder)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def mqtt_broker() -> Iterator[MosquittoBroker]:
    """A running broker for one test."""
    binary = find_mosquitto()
    if binary is None:
        message = f"mosquitto not found: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI must install it.", pytrace=False)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="dl-mqtt-", dir="/tmp"))
    broker = MosquittoBroker(binary, root, _free_port())
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
