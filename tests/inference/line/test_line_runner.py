"""The line runner's start and its log: a Modbus port already taken fails the start with no
station left running, and a hot folder waiting for a model says so once, not every poll."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from defectlens.errors import InputError
from defectlens.inference.line.runner import LineRunner
from defectlens.inference.line.stations import LineConfig
from defectlens.inference.service.core import InspectionService

STATION = "s1"


def _line_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("line-")}


def test_a_taken_modbus_port_starts_no_station(
    service: InspectionService, good_images: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = LineConfig.model_validate(
            {
                "modbus": {"port": taken.getsockname()[1]},
                "stations": [
                    {
                        "id": STATION,
                        "source": {"kind": "simulated", "folder": str(good_images)},
                        "plc": {"address": 100},
                    }
                ],
            }
        )
        line = LineRunner(service, config, good_images / "stations.yaml")
        before = _line_threads()
        try:
            with pytest.raises(InputError, match="cannot serve Modbus TCP"):
                line.start()
            assert _line_threads() - before == set()
        finally:
            for runner in line.stations.values():
                with contextlib.suppress(RuntimeError):  # never started: nothing to join
                    runner.stop()


def test_a_hot_folder_without_a_model_logs_its_wait_once(
    service: InspectionService,
    good_images: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    shutil.copy(next(iter(sorted(good_images.iterdir()))), folder / "SN-1_top.png")
    config = LineConfig.model_validate(
        {
            "stations": [
                {
                    "id": "s2",  # known to the store once started, with no model promoted
                    "source": {"kind": "hot_folder", "path": str(folder), "poll_s": 0.02},
                }
            ]
        }
    )
    line = LineRunner(service, config, folder / "stations.yaml")
    with caplog.at_level(logging.INFO, logger="defectlens.inference.line.runner"):
        line.start()
        try:
            time.sleep(1.0)  # some 50 polls
            assert line.statuses()[0].last_error is not None
            service.registry.serve("s2", service.registry.get(STATION))  # a model arrives
            end = time.monotonic() + 20
            while not (folder / "done" / "SN-1_top.png").exists():
                assert time.monotonic() < end, "the part was not inspected"
                time.sleep(0.05)
        finally:
            line.stop()
    messages = [r.getMessage() for r in caplog.records if r.name.endswith("line.runner")]
    assert len([m for m in messages if "waits" in m]) == 1, messages
    assert any("inspects again" in m for m in messages)


@pytest.mark.parametrize("parts_in_parallel", [None, 1])
def test_triggered_parts_are_inspected_on_the_lines_threads(
    service: InspectionService,
    good_images: Path,
    parts_in_parallel: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from defectlens.inference.line import parts

    ran_on: list[str] = []
    inspect_part = parts.inspect_part

    def recording(*args: object, **kwargs: object) -> object:
        ran_on.append(threading.current_thread().name)
        return inspect_part(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(parts, "inspect_part", recording)
    config = LineConfig.model_validate(
        {
            "parts_in_parallel": parts_in_parallel,
            "stations": [
                {"id": STATION, "source": {"kind": "simulated", "folder": str(good_images)}}
            ],
        }
    )
    line = LineRunner(service, config, good_images / "stations.yaml")
    line.start()
    try:
        answer = line.trigger(STATION, "P-1").result(timeout=30)
    finally:
        line.stop()
    assert answer.verdict == "OK" and answer.fail_safe is None
    assert [name.startswith("line-inspect") for name in ran_on] == [True]
    workers = line.threads._max_workers  # type: ignore[attr-defined]
    assert workers == (parts_in_parallel or len(os.sched_getaffinity(0)))
