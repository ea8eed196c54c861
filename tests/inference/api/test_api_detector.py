"""A station running a detector, through the same service pipeline as the anomaly model:
the answer, the stored result and the MES payload carry each defect's class, score and
box; NG when a defect passes its class threshold."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_service import STATION, Service
from fastapi.testclient import TestClient

from defectlens.datasets.detection import open_detection_dataset
from defectlens.inference.api.app import create_app
from defectlens.inference.api.auth import ROLES
from defectlens.inference.delivery.payload import payload_of
from defectlens.inference.service.deployments import register_model_dir
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Store, open_database
from defectlens.modelcard import ModelCard
from defectlens.result import InspectionResult


@pytest.fixture
def detector_service(trained_detector: Path, tmp_path: Path) -> Iterator[Service]:
    home = tmp_path / "home"
    version = Path(
        shutil.copytree(trained_detector, home / "models" / "boards" / trained_detector.name)
    )
    # Two short epochs teach the smoke model little: thresholds low enough for its peaks,
    # so the NG path (classes and boxes) is what is checked.
    card = ModelCard.read(version / "model.json")
    card.class_thresholds = {name: 1e-4 for name in card.classes}
    card.write(version / "model.json")
    url = f"sqlite:///{home / 'defectlens.db'}"
    settings = ServiceSettings(
        home=home, database_url=url, deployment_poll_s=0, key_cache_s=0, threads=1
    )
    store = Store(open_database(url))
    store.ensure_station(STATION, line="L1")
    store.promote(STATION, register_model_dir(store, version).id, actor="test")
    keys = {role: store.create_key(role, f"test-{role}")[1] for role in ROLES}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Service(client, settings, store, keys, [version])
    store.db.close()


def test_a_detector_station_answers_stores_and_delivers_classes_and_boxes(
    detector_service: Service, synthetic_boards: Path
) -> None:
    sample = open_detection_dataset(synthetic_boards).samples[0]
    response = detector_service.inspect(sample.image.read_bytes(), serial="PCB-1")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["verdict"] == "NG" and result["score"] >= result["threshold"] == 0.5
    classes = ModelCard.read(detector_service.model_dirs[0] / "model.json").classes
    assert result["defects"]
    for defect in result["defects"]:
        assert defect["class"] in classes
        assert defect["score"] >= 0.5
        x0, y0, x1, y1 = defect["box"]
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
    stored = detector_service.client.get(
        f"/v1/results/{result['result_id']}", headers=detector_service.auth("qa")
    )
    assert stored.status_code == 200
    assert stored.json()["defects"] == result["defects"]
    payload = payload_of(InspectionResult.model_validate(stored.json()))
    assert [(d["class"], d["box"]) for d in payload["defects"]] == [
        (d["class"], d["box"]) for d in result["defects"]
    ]
