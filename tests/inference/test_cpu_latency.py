"""The CPU latency request `defectlens serve` holds with DEFECTLENS_CPU_WAKE_LATENCY_US, read
back from the kernel's own `/dev/cpu_dma_latency`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from defectlens.cli import main
from defectlens.errors import InputError
from defectlens.inference import cpu_latency
from defectlens.inference.cpu_latency import cpu_wake_latency, current_limit

TEST_US = 7
"""A limit no machine is held to by default, so that the test can see its own request."""


def _machine_limit() -> int:
    """The machine's current limit; skips where this process cannot ask for one."""
    if not os.access(cpu_latency.DEVICE, os.W_OK):
        pytest.skip(f"{cpu_latency.DEVICE} is missing or not writable here (needs Linux, root)")
    limit = current_limit()
    assert limit is not None
    if limit <= TEST_US:
        pytest.skip(f"another process already holds the CPUs to {limit} us")
    return limit


def test_the_request_holds_while_the_block_runs_and_ends_with_it() -> None:
    before = _machine_limit()
    with cpu_wake_latency(TEST_US, "TEST"):
        assert current_limit() == TEST_US
        with cpu_wake_latency(0, "TEST"):
            assert current_limit() == 0  # the lowest request wins
        assert current_limit() == TEST_US
    assert current_limit() == before


def test_no_setting_leaves_the_machine_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_latency, "DEVICE", Path("/nonexistent/cpu_dma_latency"))
    with cpu_wake_latency(None, "TEST"):
        pass  # nothing opened, nothing raised


def test_a_machine_that_refuses_the_request_gets_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cpu_latency, "DEVICE", tmp_path / "cpu_dma_latency")
    refused = r"SETTING=0: cannot open .*cpu_dma_latency .*Unset it"
    with pytest.raises(InputError, match=refused), cpu_wake_latency(0, "SETTING"):
        pytest.fail("the block must not run without the request")
    out_of_range = r"SETTING=-1: expected 0 to 2000000000"
    with pytest.raises(InputError, match=out_of_range), cpu_wake_latency(-1, "SETTING"):
        pytest.fail("the block must not run without the request")


def test_serve_refuses_to_start_without_the_request_it_was_told_to_hold(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    monkeypatch.setenv("DEFECTLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEFECTLENS_CPU_WAKE_LATENCY_US", "0")
    monkeypatch.setattr(cpu_latency, "DEVICE", tmp_path / "missing")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the service started"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "DEFECTLENS_CPU_WAKE_LATENCY_US=0: cannot open" in err and str(tmp_path) in err


def test_the_service_holds_the_request_while_it_runs(tmp_path: Path) -> None:
    before = _machine_limit()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if k != "DEFECTLENS_DATABASE_URL"},
        "DEFECTLENS_HOME": str(tmp_path / "home"),
        "DEFECTLENS_CPU_WAKE_LATENCY_US": str(TEST_US),
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("defectlens")), "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.2)
        assert current_limit() == TEST_US
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert current_limit() == before
