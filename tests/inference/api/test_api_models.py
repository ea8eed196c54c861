"""Stations and models: list, create, promote, roll back, and the hot swap under load."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from api_service import STATION, Service

from defectlens.inference.service.deployments import register_model_dir


def promote(service: Service, body: Any, station: str = STATION) -> Any:
    return service.client.post(
        f"/v1/stations/{station}/promote", json=body, headers=service.auth("qa")
    )


def test_models_and_stations_are_listed(service: Service) -> None:
    models = service.client.get("/v1/models", headers=service.auth("manager")).json()
    assert [m["version"] for m in models] == [service.model_dirs[0].name]
    assert models[0]["stations"] == [STATION]
    assert {"image_auroc", "escape_rate", "false_reject_rate"} <= set(models[0]["metrics"])
    stations = service.client.get("/v1/stations", headers=service.auth("line")).json()
    assert stations == [
        {
            "id": STATION,
            "line": "L1",
            "description": None,
            "model": {"name": models[0]["name"], "version": models[0]["version"]},
            "serving": True,
            "problem": None,
            "line_side": None,  # no stations file
        }
    ]


def test_create_station_then_promote_and_roll_back(service: Service, good_part: bytes) -> None:
    first, second = service.model_dirs
    created = service.client.post(
        "/v1/stations", json={"id": "s2", "line": "L2"}, headers=service.auth("qa")
    )
    assert created.status_code == 201, created.text
    assert created.json()["serving"] is False
    assert service.inspect(good_part, station="s2").status_code == 409

    promoted = service.client.post(
        "/v1/stations/s2/promote", json={"model_dir": str(second)}, headers=service.auth("qa")
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["model"]["version"] == second.name
    assert service.inspect(good_part, station="s2").json()["model"]["version"] == second.name

    by_id = service.client.post(
        "/v1/stations/s2/promote",
        json={"model_version_id": _version_id(service, first)},
        headers=service.auth("admin"),
    )
    assert by_id.status_code == 200, by_id.text
    assert service.inspect(good_part, station="s2").json()["model"]["version"] == first.name

    back = service.client.post("/v1/stations/s2/rollback", headers=service.auth("qa"))
    assert back.status_code == 200, back.text
    assert back.json()["model"]["version"] == second.name
    assert service.inspect(good_part, station="s2").json()["model"]["version"] == second.name
    history = service.store.deployment_history("s2")
    assert [d.promoted_by for d in history] == ["key:4", "key:2"]  # admin, then qa
    assert service.stored_count() == 3


def test_promote_and_rollback_errors(service: Service, good_part: bytes, tmp_path: Path) -> None:
    nothing_before = service.client.post(
        f"/v1/stations/{STATION}/rollback", headers=service.auth("qa")
    )
    assert nothing_before.status_code == 409
    assert "nothing to roll back" in nothing_before.json()["detail"]
    unknown = promote(service, {"model_dir": str(service.model_dirs[1])}, station="s404")
    assert unknown.status_code == 404
    assert (
        service.client.post("/v1/stations/s404/rollback", headers=service.auth()).status_code == 404
    )
    models = service.settings.models_dir
    broken = Path(shutil.copytree(service.model_dirs[1], models / "broken"))
    (broken / "model.onnx").write_bytes(b"not the model")
    outside = Path(shutil.copytree(service.model_dirs[1], tmp_path / "outside"))
    for body, status, words in (
        ({"model_dir": str(broken)}, 422, "sha256"),
        ({"model_dir": str(models / "absent")}, 422, "not found"),
        ({"model_dir": str(outside)}, 422, "workspace's models folder"),
        ({"model_dir": "/etc"}, 422, "workspace's models folder"),
        ({"model_version_id": 999}, 404, "not registered"),
        ({}, 422, "exactly one"),
        ({"model_dir": "x", "model_version_id": 1}, 422, "exactly one"),
    ):
        response = promote(service, body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["detail"], response.json()
    # The station kept its model throughout.
    assert service.inspect(good_part).json()["model"]["version"] == service.model_dirs[0].name
    active = service.store.active_model(STATION)
    assert active is not None and active.version == service.model_dirs[0].name


def test_hot_swap_under_concurrent_load_fails_no_request(
    service: Service, good_part: bytes
) -> None:
    first, second = service.model_dirs
    stop = threading.Event()

    def client_loop() -> Counter[tuple[int, str]]:
        seen: Counter[tuple[int, str]] = Counter()
        while not stop.is_set():
            response = service.inspect(good_part)
            version = response.json().get("model", {}).get("version", response.text)
            seen[(response.status_code, version)] += 1
        return seen

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client_loop) for _ in range(4)]
        time.sleep(0.3)
        for _ in range(3):
            assert promote(service, {"model_dir": str(second)}).status_code == 200
            time.sleep(0.2)
            rollback = service.client.post(
                f"/v1/stations/{STATION}/rollback", headers=service.auth("qa")
            )
            assert rollback.status_code == 200, rollback.text
            time.sleep(0.2)
        stop.set()
        seen = sum((f.result() for f in futures), Counter())
    statuses = {status for status, _ in seen}
    assert statuses == {200}, seen
    assert {version for _, version in seen} == {first.name, second.name}
    assert service.stored_count() == sum(seen.values())


def test_promotion_made_elsewhere_is_picked_up(
    make_service: Callable[..., Service], good_part: bytes
) -> None:
    service = make_service(deployment_poll_s=0.1)
    second = service.model_dirs[1]
    # What `defectlens models promote` does from another process: only the store changes.
    version = register_model_dir(service.store, second)
    service.store.promote(STATION, version.id, actor="cli")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if service.inspect(good_part).json()["model"]["version"] == second.name:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the service did not pick up the promotion")


def _version_id(service: Service, folder: Path) -> int:
    version = service.store.get_model_version(folder)
    assert version is not None
    return version.id
