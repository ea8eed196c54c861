"""Stations file checks, the hot folder through restarts, the simulated and OpenCV cameras."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectlens.cli import main
from defectlens.errors import InputError
from defectlens.inference.line.runner import LineRunner
from defectlens.inference.line.sources import VideoCamera
from defectlens.inference.line.stations import CameraSource, LineConfig, load_stations
from defectlens.inference.service.core import InspectionService

STATION = "s1"

GOOD = """\
stations:
  - id: s1
    line: L1
    source: {kind: hot_folder, path: incoming}
"""


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOOD.replace("hot_folder", "hot_foldr"), ":4: stations.0.source"),
        (GOOD + "    deadline_ms: -5\n", ":5: stations.0.deadline_ms"),
        (GOOD + "  - id: s1\n    source: {kind: simulated, folder: x, rate_hz: 2}\n", ":1: "),
        (GOOD + "    plc: {address: 100}\n", ":2: stations.0"),  # a hot folder is not triggered
        (GOOD + "    plc: {protocol: opcua, address: 100}\n", ":5: stations.0.plc.opcua.address"),
    ],
)
def test_a_wrong_station_is_named_with_file_and_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "stations.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=f"{path}{where}"):
        load_stations(path)


def test_serve_refuses_a_wrong_stations_file_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "stations.yaml"
    path.write_text(GOOD + "    fail_safe: MAYBE\n")
    monkeypatch.setenv("DEFECTLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEFECTLENS_STATIONS_FILE", str(path))
    assert main(["serve"]) == 2
    assert f"{path}:5: stations.0.fail_safe" in capsys.readouterr().err


def _wait(condition: object, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _hot_folder_line(service: InspectionService, folder: Path) -> LineRunner:
    config = LineConfig.model_validate(
        {
            "stations": [
                {
                    "id": STATION,
                    "source": {
                        "kind": "hot_folder",
                        "path": str(folder),
                        "serial_pattern": r"^(?P<serial>[A-Z]+-\d+)_",
                        "poll_s": 0.05,
                    },
                }
            ]
        }
    )
    line = LineRunner(service, config, folder / "stations.yaml")
    line.start()
    return line


def test_hot_folder_inspects_complete_files_once_across_a_restart(
    service: InspectionService, good_images: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    images = sorted(good_images.iterdir())
    shutil.copy(images[0], folder / "SN-1_top.png")
    (folder / "SN-2_top.png.part").write_bytes(images[1].read_bytes())  # still being written
    (folder / "BAD-3_top.png").write_bytes(b"not an image at all")
    line = _hot_folder_line(service, folder)
    try:
        _wait(lambda: (folder / "done" / "SN-1_top.png").exists())
        _wait(lambda: (folder / "failed" / "BAD-3_top.png").exists())
        assert (folder / "SN-2_top.png.part").exists()  # never picked up while incomplete
        os.replace(folder / "SN-2_top.png.part", folder / "SN-2_top.png")  # rename-on-complete
        _wait(lambda: (folder / "done" / "SN-2_top.png").exists())
    finally:
        line.stop()
    assert (folder / "failed" / "BAD-3_top.png.reason.txt").read_text().strip()
    # A crash after storing SN-1's result but before moving it: the file comes back as it was.
    done = folder / "done" / "SN-1_top.png"
    stat = done.stat()
    os.replace(done, folder / "SN-1_top.png")
    os.utime(folder / "SN-1_top.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    line = _hot_folder_line(service, folder)
    try:
        _wait(lambda: (folder / "done" / "SN-1_top.png").exists())
    finally:
        line.stop()
    stored, _ = service.store.list_results(limit=10)
    assert sorted(r.serial for r in stored) == ["SN-1", "SN-2"]  # inspected once each


def test_simulated_camera_at_a_rate_feeds_the_service(
    service: InspectionService, good_images: Path
) -> None:
    config = LineConfig.model_validate(
        {
            "stations": [
                {
                    "id": STATION,
                    "product": "housing",
                    "source": {"kind": "simulated", "folder": str(good_images), "rate_hz": 20},
                }
            ]
        }
    )
    line = LineRunner(service, config, good_images / "stations.yaml")
    line.start()
    try:
        _wait(lambda: line.statuses()[0].parts >= 3)
        status = line.statuses()[0]
    finally:
        line.stop()
    assert status.connected and status.ng_rate == 0.0 and status.parts_per_min >= 3
    stored, _ = service.store.list_results(limit=10)
    assert {r.product for r in stored} == {"housing"}


def test_opencv_camera_grabs_frames_from_a_video_file(tmp_path: Path) -> None:
    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for shade in (40, 120, 200):
        writer.write(np.full((48, 64, 3), shade, np.uint8))
    writer.release()
    camera = VideoCamera(CameraSource(kind="camera", device=str(video), exposure=-4))
    camera.open()
    try:
        frames = [camera.grab() for _ in range(4)]  # the 4th starts the file again
    finally:
        camera.close()
    decoded = [cv2.imdecode(np.frombuffer(f.data, np.uint8), cv2.IMREAD_COLOR) for f in frames]
    assert [d.shape for d in decoded] == [(48, 64, 3)] * 4
    means = [round(float(d.mean()) / 40) for d in decoded]
    assert means == [1, 3, 5, 1]
    assert camera.warnings  # a video file has no exposure: said, not silently ignored
    with pytest.raises(Exception, match="cannot open"):
        VideoCamera(CameraSource(kind="camera", device=str(tmp_path / "nope.avi"))).open()
