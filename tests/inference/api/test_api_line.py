"""The line side through the API: GET /v1/stations shows each station's source state and
/readyz names a source that is down."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from api_service import Service


def test_stations_show_line_state_and_readyz_names_a_source_down(
    make_service: Callable[..., Service], part_images: dict[str, list[Path]], tmp_path: Path
) -> None:
    camera = tmp_path / "camera"
    camera.mkdir()
    for path in part_images["train"][:2]:
        shutil.copy(path, camera / path.name)
    stations = tmp_path / "stations.yaml"
    stations.write_text(
        "stations:\n"
        "  - id: s1\n    line: L1\n"
        f"    source: {{kind: simulated, folder: {camera}, rate_hz: 20}}\n"
        "  - id: s2\n"
        f"    source: {{kind: hot_folder, path: {tmp_path / 'unmounted'}}}\n"
    )
    service = make_service(stations_file=stations)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        listed = {
            s["id"]: s for s in service.client.get("/v1/stations", headers=service.auth()).json()
        }
        if listed["s1"]["line_side"]["parts"] >= 2:
            break
        time.sleep(0.1)
    s1, s2 = listed["s1"]["line_side"], listed["s2"]["line_side"]
    assert s1["connected"] and s1["ng_rate"] == 0.0 and s1["last_part_at"]
    assert not s2["connected"] and "does not exist" in s2["last_error"]
    ready = service.client.get("/readyz")
    assert ready.status_code == 503
    assert any("station s2: source hot_folder" in p for p in ready.json()["problems"])


def test_a_line_key_triggers_a_camera_station_and_gets_the_stored_result(
    make_service: Callable[..., Service], part_images: dict[str, list[Path]], tmp_path: Path
) -> None:
    camera = tmp_path / "camera"
    camera.mkdir()
    shutil.copy(part_images["train"][0], camera / "part.png")
    stations = tmp_path / "stations.yaml"
    stations.write_text(
        "stations:\n"
        f"  - id: s1\n    source: {{kind: simulated, folder: {camera}}}\n"  # API-triggered only
        f"  - id: s2\n    source: {{kind: hot_folder, path: {tmp_path / 'incoming'}}}\n"
        f"  - id: s3\n    source: {{kind: simulated, folder: {tmp_path / 'unplugged'}}}\n"
    )
    service = make_service(stations_file=stations)
    line = service.auth("line")

    answer = service.client.post("/v1/stations/s1/trigger", json={"serial": "API-1"}, headers=line)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["station"], body["serial"], body["verdict"]) == ("s1", "API-1", "OK")
    assert "Fail-Safe" not in answer.headers
    stored = service.store.get_result(body["result_id"])
    assert stored is not None and stored.serial == "API-1" and stored.camera == "sim:camera"
    bare = service.client.post("/v1/stations/s1/trigger", headers=service.auth("admin"))
    assert bare.status_code == 200 and bare.json()["serial"] is None

    for role in ("qa", "manager"):
        refused = service.client.post("/v1/stations/s1/trigger", headers=service.auth(role))
        assert refused.status_code == 403, role
    scoped_key = service.store.create_key("line", "s2-only", stations=["s2"])[1]
    scoped = service.client.post("/v1/stations/s1/trigger", headers={"X-API-Key": scoped_key})
    assert scoped.status_code == 403
    unknown = service.client.post("/v1/stations/s9/trigger", headers=line)
    assert unknown.status_code == 404 and "not in the stations file" in unknown.json()["detail"]
    folder = service.client.post("/v1/stations/s2/trigger", headers=line)
    assert folder.status_code == 409 and "hot folder" in folder.json()["detail"]
    down = service.client.post("/v1/stations/s3/trigger", json={"serial": "X"}, headers=line)
    assert down.status_code == 503 and "nothing was inspected" in down.json()["detail"]
    assert service.stored_count() == 2  # the two answered parts; nothing for s3


def test_trigger_without_a_stations_file_is_404(service: Service) -> None:
    answer = service.client.post("/v1/stations/s1/trigger", headers=service.auth("line"))
    assert answer.status_code == 404 and "no stations file" in answer.json()["detail"]
