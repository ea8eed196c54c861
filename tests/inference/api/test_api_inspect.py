"""POST /v1/inspect end to end: verdicts on synthetic parts, retention, heat maps, and every
kind of bad input answered 4xx with nothing stored."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tifffile
from api_service import STATION, Service

from defectlens.datasets.images import read_mask
from defectlens.inference.engine import Engine
from defectlens.inference.service.images import keep_image
from defectlens.prediction import Verdict


def png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def tiff(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, photometric="minisblack", planarconfig="contig")
    return buffer.getvalue()


def test_good_part_is_ok_and_the_result_is_stored(service: Service, good_part: bytes) -> None:
    response = service.inspect(good_part, serial="SN-1", line="L1", product="plate", camera="c1")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["verdict"] == "OK"
    assert result["score"] < result["threshold"] == 0.5
    assert result["defects"] == []
    assert result["model"]["version"] == service.model_dirs[0].name
    assert set(result["timings_ms"]) == {"decode", "preprocess", "model", "postprocess", "total"}
    assert result["timings_ms"]["total"] >= result["timings_ms"]["model"] > 0
    assert (result["station"], result["serial"], result["line"]) == (STATION, "SN-1", "L1")
    stored = service.client.get(f"/v1/results/{result['result_id']}", headers=service.auth("qa"))
    assert stored.status_code == 200
    assert stored.json() == result


def test_multipart_upload_with_form_fields(service: Service, good_part: bytes) -> None:
    response = service.client.post(
        "/v1/inspect",
        files={"file": ("part.png", good_part, "image/png")},
        data={"station": STATION, "serial": "SN-2", "captured_at": "2026-11-26T10:00:00+01:00"},
        headers=service.auth("line"),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["serial"] == "SN-2"
    assert result["captured_at"] == "2026-11-26T09:00:00Z"


def test_defective_part_is_ng_with_a_box_on_the_defect(
    service: Service, part_images: dict[str, list[Path]], synthetic_data: Path
) -> None:
    # The service must report the engine's finding faithfully: the most anomalous defective
    # part is NG and its defect box covers ground-truth defect pixels.
    results = []
    for kind in ("spot", "missing", "extra", "scratch", "crack"):
        for path in part_images[kind]:
            response = service.inspect(path.read_bytes(), serial=f"{kind}/{path.stem}")
            assert response.status_code == 200, response.text
            results.append((response.json(), kind, path))
    result, kind, path = max(results, key=lambda item: item[0]["score"])
    assert result["verdict"] == "NG"
    assert result["defects"], "an NG part names at least one region"
    mask = read_mask(synthetic_data / "ground_truth" / kind / f"{path.stem}_mask.png", (256, 256))
    x0, y0, x1, y1 = result["defects"][0]["box"]
    assert mask[y0:y1, x0:x1].any(), "the top defect box misses the ground-truth defect"
    # Every NG image is kept, as sent, and its heat map is rendered on demand.
    image = service.client.get(result["image_url"], headers=service.auth("qa"))
    assert image.status_code == 200
    assert image.content == path.read_bytes()
    heatmap = service.client.get(result["heatmap_url"], headers=service.auth("qa"))
    assert heatmap.status_code == 200 and heatmap.headers["content-type"] == "image/png"
    picture = cv2.imdecode(np.frombuffer(heatmap.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape == (256, 256, 3)


def test_overlay_flag_writes_the_heat_map(service: Service, good_part: bytes) -> None:
    result = service.inspect(good_part, overlay="true").json()
    assert result["heatmap_url"] == f"/v1/results/{result['result_id']}/heatmap"
    names = [path.name for path in service.image_files()]
    assert f"{result['result_id']}.png" in names
    assert f"{result['result_id']}_heatmap.png" in names
    day = result["received_at"][:10].replace("-", "/")
    assert all(day in path.as_posix() for path in service.image_files())
    heatmap = service.client.get(result["heatmap_url"], headers=service.auth("line"))
    assert heatmap.status_code == 200 and heatmap.content.startswith(b"\x89PNG")


def test_kept_images_reach_the_disk_before_their_result_is_stored(
    make_service: Callable[..., Service], good_part: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a power cut, a stored result must not name an image that never reached the disk:
    # each kept file's bytes are synced before its rename, then its folder, with the folders
    # made for the day, and all of it before the result's commit.
    service = make_service(keep_ok_fraction=1.0)
    events: list[tuple[str, str]] = []
    sync_file, sync_folder = os.fdatasync, os.fsync

    def recorded(kind: str, sync: Callable[[int], None]) -> Callable[[int], None]:
        def call(handle: int) -> None:
            events.append((kind, os.readlink(f"/proc/self/fd/{handle}")))
            sync(handle)

        return call

    monkeypatch.setattr(os, "fdatasync", recorded("file", sync_file))
    monkeypatch.setattr(os, "fsync", recorded("folder", sync_folder))
    store = service.client.app.state.service.store
    save_result = store.save_result

    def save(*args: Any, **kwargs: Any) -> None:
        events.append(("stored", ""))
        save_result(*args, **kwargs)

    monkeypatch.setattr(store, "save_result", save)
    result = service.inspect(good_part, overlay="true").json()
    assert events[-1] == ("stored", ""), "the result was stored before its images were synced"
    files = [Path(path).name for kind, path in events if kind == "file"]
    for name in (f"{result['result_id']}.png", f"{result['result_id']}_heatmap.png"):
        assert any(synced.startswith(f".{name}.") for synced in files), f"{name} not synced"
    folders = [Path(path) for kind, path in events if kind == "folder"]
    day = service.image_files()[0].parent
    assert {day, day.parent, day.parent.parent, service.settings.images_dir} <= set(folders)
    assert len(folders) == len(set(folders)), "a folder was synced twice for one part"


def test_ok_parts_are_kept_only_as_a_sample(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    service = make_service(keep_ok_fraction=0.0)
    result = service.inspect(good_part).json()
    assert result["image_url"] is None and result["heatmap_url"] is None
    assert service.image_files() == []
    missing = service.client.get(f"/v1/results/{result['result_id']}/image", headers=service.auth())
    assert missing.status_code == 404
    assert "not retained" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("verdict", "fraction", "draw", "kept"),
    [("NG", 0.0, 0.99, True), ("OK", 0.05, 0.04, True), ("OK", 0.05, 0.05, False),
     ("OK", 0.0, 0.0, False), ("OK", 1.0, 0.999, True)],
)  # fmt: skip
def test_keep_image_policy(verdict: Verdict, fraction: float, draw: float, kept: bool) -> None:
    assert keep_image(verdict, fraction, draw) is kept


def test_sixteen_bit_and_colour_images_are_accepted(service: Service, good_part: bytes) -> None:
    gray = cv2.imdecode(np.frombuffer(good_part, np.uint8), cv2.IMREAD_UNCHANGED)
    assert gray is not None
    sixteen = png(gray.astype(np.uint16) * 257)
    colour = png(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    for image in (sixteen, colour):
        response = service.inspect(image)
        assert response.status_code == 200, response.text
        assert response.json()["verdict"] == "OK"


def _bad_images(good_part: bytes) -> dict[str, tuple[bytes, str]]:
    return {
        "zero bytes": (b"", "empty"),
        "not an image": (b"serial,verdict\nA1,OK\n", "not a readable image"),
        "truncated": (good_part[: len(good_part) // 2], "not a readable image"),
        "corrupt": (good_part[:16] + bytes(64) + good_part[80:], "header is unreadable"),
        "float pixels": (tiff(np.zeros((64, 64), np.float32)), "floating-point"),
        "32-bit pixels": (tiff(np.zeros((64, 64), np.uint32)), "uint32"),
        "five channels": (tiff(np.zeros((64, 64, 5), np.uint8)), "5 channels"),
    }


@pytest.mark.parametrize(
    "case",
    ["zero bytes", "not an image", "truncated", "corrupt", "float pixels", "32-bit pixels",
     "five channels"],
)  # fmt: skip
def test_bad_images_are_422_and_nothing_is_stored(
    service: Service, good_part: bytes, case: str
) -> None:
    image, words = _bad_images(good_part)[case]
    response = service.inspect(image, serial="bad")
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]
    assert service.stored_count() == 0
    assert service.image_files() == []
    assert service.inspect(good_part).status_code == 200, "the service is unaffected"


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"station": None}, 422, "station is required"),
        ({"station": "nowhere"}, 404, "not known"),
        ({"station": "bad station!"}, 422, "station"),
        ({"captured_at": "yesterday"}, 422, "captured_at"),
        ({"serial": "x" * 200}, 422, "serial"),
    ],
)
def test_bad_metadata_names_the_field(
    service: Service, good_part: bytes, params: dict[str, str | None], status: int, words: str
) -> None:
    response = service.inspect(good_part, **params)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert service.stored_count() == 0


def test_station_without_a_model_is_409(service: Service, good_part: bytes) -> None:
    service.store.ensure_station("s2")
    response = service.inspect(good_part, station="s2")
    assert response.status_code == 409
    assert "no model version is promoted" in response.json()["detail"]


def test_wrong_content_type_is_415(service: Service, good_part: bytes) -> None:
    response = service.inspect(good_part, content_type="application/json")
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_multipart_without_a_file_is_422(service: Service) -> None:
    response = service.client.post(
        "/v1/inspect", data={"station": STATION}, files={"other": ("a.txt", b"x", "text/plain")},
        headers=service.auth("line"),
    )  # fmt: skip
    assert response.status_code == 422
    assert "field named 'file'" in response.json()["detail"]


def test_limits(make_service: Callable[..., Service], good_part: bytes) -> None:
    service = make_service(max_upload_bytes=len(good_part) - 1, max_pixels=1000)
    too_big = service.inspect(good_part)
    assert too_big.status_code == 413
    assert "over the limit" in too_big.json()["detail"]
    multipart = service.client.post(
        "/v1/inspect", data={"station": STATION},
        files={"file": ("p.png", good_part + bytes(100_000), "image/png")},
        headers=service.auth("line"),
    )  # fmt: skip
    assert multipart.status_code == 413
    bomb = service.inspect(png(np.zeros((40, 40), np.uint8)))  # 1600 pixels > 1000
    assert bomb.status_code == 413
    assert "1600 pixels" in bomb.json()["detail"]
    assert service.stored_count() == 0


def test_timeout_is_504_and_nothing_is_stored(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    # The model outlasts the request timeout: the caller gets 504 at once, and when the
    # inspection ends it stores nothing and removes the image it kept.
    service = make_service(request_timeout_s=0.3, database_timeout_s=0.2, keep_ok_fraction=1.0)
    state = service.client.app.state.service
    engine = state.registry.get(STATION)
    predict = engine.predict
    release = threading.Event()

    def slow_predict(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return predict(*args, **kwargs)

    engine.predict = slow_predict
    response = service.inspect(good_part)  # answered while the model is still held
    release.set()
    assert response.status_code == 504
    assert "nothing was stored" in response.json()["detail"]
    state.threads.shutdown(wait=True)  # the abandoned inspection has ended
    assert service.stored_count() == 0
    assert service.image_files() == []


def test_a_part_that_times_out_in_the_queue_is_never_inspected(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    # One inspection thread, held busy: the part waits its turn past the timeout, is
    # answered 504, and is dropped from the queue rather than inspected later.
    service = make_service(
        max_concurrent_inspections=1,
        request_timeout_s=0.5,
        database_timeout_s=0.2,
        keep_ok_fraction=1.0,
    )
    inspections = service.client.app.state.service.threads
    release = threading.Event()
    busy = inspections.submit(release.wait, 30)
    response = service.inspect(good_part, serial="queued")
    assert response.status_code == 504, response.text
    release.set()
    busy.result(timeout=30)
    inspections.submit(lambda: None).result(timeout=30)  # the queue has drained
    assert service.stored_count() == 0
    assert service.image_files() == []
    assert service.inspect(good_part, serial="next").status_code == 200
    assert service.stored_count() == 1


def test_overlapping_parts_run_split_by_default_and_can_be_told_not_to(
    make_service: Callable[..., Service],
) -> None:
    # DEFECTLENS_ONNX_SPLIT_OVERLAPPING: on by default; false keeps one session per model.
    default = make_service(threads=2)
    assert default.client.app.state.service.registry.get(STATION).single_thread_session
    off = make_service(threads=2, onnx_split_overlapping=False)
    assert not off.client.app.state.service.registry.get(STATION).single_thread_session


def test_the_service_gives_the_single_thread_session_to_parts_that_overlap(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    # The service, not the engine, decides: a part alone gets all threads; a part inspected
    # while another is in progress gets the single-threaded session.
    service = make_service(threads=2)
    core = service.client.app.state.service
    engine = core.registry.get(STATION)
    chosen: list[bool] = []
    run = engine.run

    def recording_run(batch: Any, single_thread: bool = False) -> Any:
        chosen.append(single_thread)
        return run(batch, single_thread)

    engine.run = recording_run
    assert service.inspect(good_part).status_code == 200
    with core.part_in_progress():  # another part is decoding or storing meanwhile
        assert service.inspect(good_part).status_code == 200
    assert chosen == [False, True]


def test_onnx_spinning_off_gives_the_same_answers(
    make_service: Callable[..., Service], part_images: dict[str, list[Path]]
) -> None:
    # DEFECTLENS_ONNX_SPINNING=false only changes how ONNX Runtime's threads wait.
    service = make_service(onnx_spinning=False)
    engine = service.client.app.state.service.registry.get(STATION)
    assert engine.spin is False
    reference = Engine(service.model_dirs[0], threads=1)
    assert reference.spin is True
    for path in (part_images["good"][0], part_images["scratch"][0]):
        result = service.inspect(path.read_bytes()).json()
        expected = reference.predict(path.read_bytes(), with_map=False)
        assert (result["verdict"], result["score"]) == (expected.verdict, expected.score)
