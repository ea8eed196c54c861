"""What a hostile or unlucky caller meets: bodies refused before they are read, a slow store
that never stalls the service, models that cannot load, a full disk, retries, scoped and
expired keys, overload. Each answer is a clear 4xx/5xx and nothing is half-stored."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_service import STATION, Service
from fastapi.testclient import TestClient

from defectlens.errors import InputError
from defectlens.inference.service import ServiceSettings
from defectlens.inference.service.deployments import register_model_dir
from defectlens.inference.store.tables import ApiKeyRow


class BodyReadCounter:
    """The app, with the request-body messages it pulls counted."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.reads = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.reads += 1
            return message

        await self.app(scope, counted, send)


def test_no_key_is_401_before_any_body_is_read(service: Service) -> None:
    counter = BodyReadCounter(service.client.app)
    client = TestClient(counter, raise_server_exceptions=False)
    big = json.dumps({"id": "s9", "description": "x" * 3_000_000})
    for path in ("/v1/stations", "/v1/inspect"):
        response = client.post(path, content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 401, response.text
        assert "no API key" in response.json()["detail"]
    assert counter.reads == 0
    assert 'defectlens_auth_failures_total{reason="missing"} 2.0' in client.get("/metrics").text


def test_a_body_over_the_route_limit_is_413_before_it_is_read(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(max_body_bytes=10_000)
    counter = BodyReadCounter(service.client.app)
    client = TestClient(counter, raise_server_exceptions=False)
    body = json.dumps({"id": "s9", "description": "x" * 20_000})
    declared = client.post("/v1/stations", content=body, headers=_json(service))
    assert declared.status_code == 413
    assert "DEFECTLENS_MAX_BODY_BYTES" in declared.json()["detail"]
    assert counter.reads == 0

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(30):
            yield b"x" * 1000

    streamed = client.post("/v1/stations", content=chunks(), headers=_json(service))
    assert streamed.status_code == 413
    assert counter.reads <= 12  # stopped just past the limit, not at the end of the body
    image = service.client.post(  # the image route streams: refused past its own limit
        "/v1/inspect",
        params={"station": STATION},
        content=(b"x" * 100_000 for _ in range(300)),
        headers={**service.auth("line"), "Content-Type": "image/png"},
    )
    assert image.status_code == 413
    assert "DEFECTLENS_MAX_UPLOAD_BYTES" in image.json()["detail"]
    assert service.store.get_station("s9") is None


def test_a_timed_out_inspection_never_blocks_the_event_loop(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    # The store is slow (a busy database): the part times out while its result is being
    # stored. The request waits for the outcome, but the event loop stays free: /healthz
    # answers while the write is still going on.
    service = make_service(request_timeout_s=0.3, database_timeout_s=0.2)
    store = service.client.app.state.service.store
    save = store.save_result
    writing, written = threading.Event(), threading.Event()

    def slow_save(*args: Any, **kwargs: Any) -> None:
        writing.set()
        time.sleep(1.5)
        save(*args, **kwargs)
        written.set()

    store.save_result = slow_save
    answers: list[Any] = []
    part = threading.Thread(target=lambda: answers.append(service.inspect(good_part)))
    part.start()
    assert writing.wait(10)
    time.sleep(0.4)  # past the request timeout
    health = service.client.get("/healthz")
    assert health.status_code == 200
    assert not written.is_set(), "/healthz waited for the slow store"
    part.join(10)
    assert answers[0].status_code == 200  # stored, so answered with its result
    assert service.stored_count() == 1


def test_a_model_that_onnx_runtime_refuses(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    # Its sha256 matches, but ONNX Runtime cannot load it: promote is 422, and a station
    # whose active model is that one is unavailable on /readyz while the others serve.
    service = make_service()
    bad = _unloadable_copy(service.model_dirs[1], service.settings.models_dir / "bad" / "v1")
    response = service.client.post(
        "/v1/stations/s1/promote", json={"model_dir": str(bad)}, headers=service.auth("qa")
    )
    assert response.status_code == 422, response.text
    assert "ONNX Runtime cannot load" in response.json()["detail"]
    assert service.inspect(good_part).status_code == 200

    service.store.ensure_station("s2")
    version = register_model_dir(service.store, bad)
    service.store.promote("s2", version.id, actor="test")
    restarted = make_service()
    ready = restarted.client.get("/readyz")
    assert ready.status_code == 503
    assert any("s2" in p and "ONNX Runtime" in p for p in ready.json()["problems"])
    assert restarted.inspect(good_part).status_code == 200
    refused = restarted.inspect(good_part, station="s2")
    assert refused.status_code == 409
    assert "ONNX Runtime cannot load" in refused.json()["detail"]


def test_a_full_disk_is_507_and_nothing_is_stored(
    make_service: Callable[..., Service], good_part: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Below the free-disk floor, a part whose image must be kept is refused; /readyz says so.
    low = make_service(keep_ok_fraction=1.0, min_free_disk_bytes=2**62)
    response = low.inspect(good_part)
    assert response.status_code == 507
    assert "DEFECTLENS_MIN_FREE_DISK_BYTES" in response.json()["detail"]
    ready = low.client.get("/readyz").json()
    assert ready["free_disk_bytes"] > 0
    assert any("bytes free" in problem for problem in ready["problems"])
    assert "defectlens_images_free_bytes" in low.client.get("/metrics").text
    assert low.stored_count() == 0

    # The disk fills during the write: the error the kernel gives is ENOSPC, which a test
    # cannot cause on this machine's disk without filling it, so the write raises it here.
    service = make_service(keep_ok_fraction=1.0)

    def full(path: Path, data: bytes) -> list[Path]:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("defectlens.inference.service.images.write_atomically", full)
    monkeypatch.setattr("defectlens.inference.service.inspection.write_atomically", full)
    response = service.inspect(good_part)
    assert response.status_code == 507
    assert "No space left on device" in response.json()["detail"]
    assert service.stored_count() == 0


def test_a_retried_part_gets_its_stored_result_back(service: Service, good_part: bytes) -> None:
    first = service.inspect(good_part, headers={"Idempotency-Key": "part-42-try"})
    assert first.status_code == 200
    assert "idempotent-replayed" not in first.headers
    again = service.inspect(good_part, headers={"Idempotency-Key": "part-42-try"})
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    as_field = service.inspect(good_part, idempotency_key="part-43")
    assert service.inspect(good_part, idempotency_key="part-43").json() == as_field.json()
    assert service.stored_count() == 2


def test_concurrent_retries_store_one_result(service: Service, good_part: bytes) -> None:
    answers: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(
                service.inspect(good_part, headers={"Idempotency-Key": "same"})
            )
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.json()["result_id"] for a in answers}) == 1
    assert service.stored_count() == 1


def test_keys_scoped_to_stations_and_expiring(service: Service, good_part: bytes) -> None:
    service.store.ensure_station("s2")
    _, scoped = service.store.create_key("line", "line1-plc", stations=["s2"])
    headers = {"X-API-Key": scoped, "Content-Type": "image/png"}
    other = service.client.post(
        "/v1/inspect", params={"station": STATION}, content=good_part, headers=headers
    )
    assert other.status_code == 403
    assert "limited to stations s2" in other.json()["detail"]
    stored = service.inspect(good_part).json()
    hidden = service.client.get(f"/v1/results/{stored['result_id']}", headers=headers)
    assert hidden.status_code == 404

    soon = datetime.now(UTC) + timedelta(hours=1)
    key_id, expired = service.store.create_key("line", "old", expires_at=soon)
    assert service.inspect(good_part, headers={"X-API-Key": expired}).status_code == 200
    with service.store.db.write() as session:  # an hour later
        session.get(ApiKeyRow, key_id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    refused = service.inspect(good_part, headers={"X-API-Key": expired})
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]
    metrics = service.client.get("/metrics").text
    assert 'defectlens_auth_failures_total{reason="invalid"} 1.0' in metrics


def test_overload_is_503_with_retry_after(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    service = make_service(max_concurrent_inspections=1, max_queued_inspections=0)
    core = service.client.app.state.service
    release = threading.Event()
    store = core.store
    save = store.save_result

    def held_save(*args: Any, **kwargs: Any) -> None:
        release.wait(30)
        save(*args, **kwargs)

    store.save_result = held_save
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(service.inspect(good_part)))
    first.start()
    deadline = time.monotonic() + 10
    while core.metrics.parts_waiting._value.get() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = service.inspect(good_part)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "waiting for inspection" in refused.json()["detail"]
    release.set()
    first.join(30)
    assert answers[0].status_code == 200
    assert "defectlens_parts_refused_total 1.0" in service.client.get("/metrics").text


def test_auth_disabled_refuses_a_network_address_unless_told_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(InputError, match="not a loopback address"):
        ServiceSettings(home=home, auth_disabled=True, host="0.0.0.0")
    ServiceSettings(home=home, auth_disabled=True, host="127.0.0.1")
    ServiceSettings(home=home, auth_disabled=True, host="::1")
    ServiceSettings(home=home, auth_disabled=True, host="0.0.0.0", auth_disabled_on_network=True)


def test_the_database_timeout_must_be_below_the_request_timeout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="must be below request_timeout_s"):
        ServiceSettings(home=tmp_path, database_timeout_s=10, request_timeout_s=5)


def _json(service: Service) -> dict[str, str]:
    return {**service.auth("qa"), "Content-Type": "application/json"}


def _unloadable_copy(source: Path, target: Path) -> Path:
    """A version folder whose model.json matches its model.onnx, which ONNX Runtime refuses."""
    shutil.copytree(source, target)
    onnx_path = target / "model.onnx"
    onnx_path.write_bytes(b"\x08\x07" + bytes(64))
    card = json.loads((target / "model.json").read_text())
    card["sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    card["version"] = target.name
    (target / "model.json").write_text(json.dumps(card))
    return target


def test_tidying_sweeps_files_no_result_names_and_keeps_the_rest(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    # A crash between an image's write and its result's commit leaves a file no row names;
    # the service's background pass deletes it once it is older than the grace period.
    service = make_service(keep_ok_fraction=1.0)
    kept = service.inspect(good_part)
    assert kept.status_code == 200
    orphan = service.settings.images_dir / "2026" / "01" / "02" / "lost.png"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(good_part)
    an_hour_ago = time.time() - 3700
    os.utime(orphan, (an_hour_ago, an_hour_ago))
    outcome = service.client.app.state.service.tidy_images()
    assert outcome["orphans_deleted"] == 1
    assert not orphan.exists()
    assert len(service.image_files()) == 1  # the stored part's image stays
    image = service.client.get(
        f"/v1/results/{kept.json()['result_id']}/image", headers=service.auth()
    )
    assert image.status_code == 200


def test_every_answer_carries_a_request_id(service: Service, good_part: bytes) -> None:
    answered = service.inspect(good_part, headers={"X-Request-ID": "plc-7-part-1"})
    assert answered.headers["x-request-id"] == "plc-7-part-1"
    refused = service.client.post("/v1/inspect", content=good_part)
    assert refused.status_code == 401 and len(refused.headers["x-request-id"]) >= 16


def test_images_in_other_formats_or_over_the_pixel_limit_are_never_decoded(
    service: Service, good_part: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny WebP or TIFF whose header claims 12000×12000 pixels: refused from the header
    # (415 for a format that is not accepted, 413 over the limit), never handed to OpenCV.
    def no_decode(*args: Any) -> Any:
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr("defectlens.datasets.images.cv2.imdecode", no_decode)
    webp = b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4)
    webp += (12000 - 1).to_bytes(3, "little") + (12000 - 1).to_bytes(3, "little")
    response = service.inspect(webp, content_type="image/webp")
    assert response.status_code == 415, response.text
    assert "WebP images are not accepted" in response.json()["detail"]
    entries = [(256, 4, 1, 12000), (257, 4, 1, 12000)]  # ImageWidth, ImageLength: LONG
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    tiff += b"".join(struct.pack("<HHII", *entry) for entry in entries) + bytes(4)
    response = service.inspect(tiff, content_type="image/tiff")
    assert response.status_code == 413, response.text
    assert "12000×12000" in response.json()["detail"]
    assert service.stored_count() == 0
