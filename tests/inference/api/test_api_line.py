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
