"""Probes and figures: /healthz, /readyz (with reasons when not ready), /metrics; the
process set up for serving."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from api_service import STATION, Service

from defectlens.inference.service.deployments import register_model_dir


def test_healthz(service: Service) -> None:
    assert service.client.get("/healthz").json() == {"status": "ok"}


def test_readyz_when_ready(service: Service) -> None:
    response = service.client.get("/readyz")
    assert response.status_code == 200
    report = response.json()
    assert report.pop("free_disk_bytes") > service.settings.min_free_disk_bytes
    assert report == {
        "ready": True,
        "database": "ok",
        "auth": "enabled",
        "stations": [
            {
                "station": STATION,
                "model": f"test-parts/{service.model_dirs[0].name}",
                "ready": True,
                "problem": None,
            }
        ],
        "problems": [],
    }


def test_readyz_503_names_the_station_whose_model_failed(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    broken = (
        Path(
            shutil.copytree(
                Path(make_service.__self__ if False else tmp_path),
                tmp_path / "unused",
                dirs_exist_ok=True,
            )
        )
        if False
        else None
    )
    del broken
    first = make_service(promote=True)
    # A second station whose model folder is damaged after it was promoted.
    damaged = Path(shutil.copytree(first.model_dirs[1], tmp_path / "damaged"))
    first.store.ensure_station("s2")
    version = register_model_dir(first.store, damaged)
    first.store.promote("s2", version.id, actor="test")
    (damaged / "model.onnx").write_bytes(b"changed")
    service = make_service()  # a fresh start loads every station's model
    response = service.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    ready = {s["station"]: s["ready"] for s in body["stations"]}
    assert ready == {STATION: True, "s2": False}
    assert "s2" in body["problems"][0] and "sha256" in body["problems"][0]
    stations = service.client.get("/v1/stations", headers=service.auth("line")).json()
    assert [s["serving"] for s in stations] == [True, False]


def test_readyz_503_without_any_model(make_service: Callable[..., Service]) -> None:
    service = make_service(promote=False)
    response = service.client.get("/readyz")
    assert response.status_code == 503
    assert "no station has a model promoted" in response.json()["problems"][0]


def test_metrics_count_requests_verdicts_and_model_time(service: Service, good_part: bytes) -> None:
    for _ in range(3):
        assert service.inspect(good_part).status_code == 200
    service.inspect(b"", serial="empty")
    service.client.get("/v1/results/unknown", headers=service.auth())
    text = service.client.get("/metrics").text
    assert (
        'defectlens_http_requests_total{method="POST",route="/v1/inspect",status="200"} 3.0' in text
    )
    assert (
        'defectlens_http_requests_total{method="POST",route="/v1/inspect",status="422"} 1.0' in text
    )
    assert 'route="/v1/results/{result_id}",status="404"' in text
    assert f'defectlens_inspections_total{{station="{STATION}",verdict="OK"}} 3.0' in text
    assert f'defectlens_model_seconds_count{{station="{STATION}"}} 3.0' in text
    assert (
        'defectlens_http_request_seconds_bucket{le="0.05",method="POST",route="/v1/inspect"}'
        in text
    )
