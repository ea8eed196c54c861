"""A real `defectlens serve` killed with SIGKILL while parts stream in over HTTP and results
queue up for a slow webhook receiver, then started again: every stored result reaches the
receiver, first deliveries in order, a result delivered twice with the same bytes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_service import STATION

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))  # receiver
from receiver import Receiver

from defectlens.cli import main
from defectlens.inference.store import Store, open_database

KILL_AFTER = 12
"""Parts acknowledged before the kill."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Serve:
    """`defectlens serve` as a subprocess on `port`, its log in `log`."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = str(Path(sys.executable).with_name("defectlens"))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [binary, "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not get ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(delay_s=0.05)  # a slow MES: results wait in the outbox
    running.start()
    yield running
    running.stop()


def test_sigkill_mid_stream_loses_no_result(
    tmp_path: Path,
    model_versions: list[Path],
    receiver: Receiver,
    good_part: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DEFECTLENS_HOME", str(home))
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    assert (
        main(["models", "promote", str(model_versions[0]), "--station", STATION, "--no-wait"]) == 0
    )
    assert main(["keys", "create", "--role", "line", "--name", "crash-test"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    port = _free_port()
    env = {
        **os.environ,
        "DEFECTLENS_HOME": str(home),
        "DEFECTLENS_PORT": str(port),
        "DEFECTLENS_THREADS": "1",
        "DEFECTLENS_DEPLOYMENT_POLL_S": "0",
        "DEFECTLENS_KEEP_OK_FRACTION": "0",
        "DEFECTLENS_LOG_LEVEL": "WARNING",
        "DEFECTLENS_WEBHOOK_URL": receiver.url,
        "DEFECTLENS_WEBHOOK_SECRET": "crash-secret",
        "DEFECTLENS_DELIVERY_BACKOFF_S": "0.05",
        "DEFECTLENS_DELIVERY_MAX_BACKOFF_S": "0.2",
        "DEFECTLENS_DELIVERY_POLL_S": "0.05",
        "DEFECTLENS_DELIVERY_LEASE_S": "3",  # rows the killed service had claimed
    }
    env.pop("DEFECTLENS_DATABASE_URL", None)
    serve = Serve(env, port, tmp_path / "serve.log")
    acknowledged: list[str] = []
    killed = threading.Event()

    def line() -> None:  # posts parts until the service is gone
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for n in range(1000):
                try:
                    answer = client.post(
                        "/v1/inspect",
                        params={"station": STATION, "serial": f"SN-{n}", "line": "L1"},
                        content=good_part,
                        headers={"X-API-Key": key, "Content-Type": "image/png"},
                    )
                except httpx.HTTPError:
                    return
                assert answer.status_code == 200, answer.text
                acknowledged.append(answer.json()["result_id"])
                if len(acknowledged) == KILL_AFTER:
                    killed.set()

    try:
        serve.start()
        poster = threading.Thread(target=line)
        poster.start()
        assert killed.wait(60)
        serve.kill()  # mid-stream: parts in flight, results waiting for the slow receiver
        poster.join(20)
        delivered_before = {r.payload["result_id"] for r in receiver.received}
        with open_database(f"sqlite:///{home / 'defectlens.db'}") as db:
            page, _ = Store(db).list_results(limit=1000)
            stored = [r.result_id for r in page]
        assert set(acknowledged) <= set(stored)  # every answered part was stored
        assert len(delivered_before) < len(stored)  # the kill left results undelivered

        serve.start()  # the restarted service delivers what the killed one did not
        deadline = time.monotonic() + 60
        while {r.payload["result_id"] for r in receiver.received} != set(stored):
            assert time.monotonic() < deadline, "not every stored result was delivered"
            time.sleep(0.1)
    finally:
        serve.stop()

    bodies: dict[str, bytes] = {}
    first_seen: list[str] = []
    for received in receiver.received:
        result_id = received.payload["result_id"]
        if result_id in bodies:
            assert received.body == bodies[result_id]  # a duplicate is the same result
        else:
            bodies[result_id] = received.body
            first_seen.append(result_id)
    assert first_seen == sorted(stored)  # one station: delivered in the order stored
