"""The label store and dataset versions over HTTP, as the QA pages use them: label a
production part (boxes, polygons, brush masks; corrections; overriding the model), import a
zip or a workspace folder, export, freeze, download; with the role checks (a `line` key
cannot label or freeze, `manager` reads) and station-scoped keys; SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import io
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from api_service import STATION, Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "labels"))  # label_folders
from label_folders import coco_folder


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    """The service keeping every part's image (OK ones too), so each can be labelled."""
    return make_service(keep_ok_fraction=1.0)


def gray(data: bytes) -> np.ndarray:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded is not None
    return decoded


def zipped(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(service: Service, data: bytes, role: str = "qa", **form: str) -> Any:
    return service.client.post(
        "/v1/labels/import/upload",
        files={"file": ("batch1.zip", data, "application/zip")},
        data={"format": "coco", **form},
        headers=service.auth(role),
    )


ROUTES_THAT_WRITE = [
    ("post", "/v1/labels/samples/1/labels", {"json": {"verdict": "OK"}}),
    ("post", "/v1/labels/results/x/", {"json": {"verdict": "OK"}}),
    ("post", "/v1/labels/classes", {"json": {"name": "scratch"}}),
    ("post", "/v1/labels/import", {"json": {"format": "coco", "path": "labels/x"}}),
    ("post", "/v1/datasets", {"json": {"name": "parts"}}),
]
ROUTES_THAT_READ = [
    "/v1/labels/samples",
    "/v1/labels/samples/1",
    "/v1/labels/classes",
    "/v1/labels/export",
    "/v1/datasets",
    "/v1/datasets/abcd",
]


def test_roles_line_may_not_label_or_read_labels_manager_only_reads(service: Service) -> None:
    for method, path, kwargs in ROUTES_THAT_WRITE:
        path = path.rstrip("/")
        for role in ("line", "manager"):
            answer = getattr(service.client, method)(path, headers=service.auth(role), **kwargs)
            assert answer.status_code == 403, (role, path, answer.text)
            assert "roles allowed: admin, qa" in answer.json()["detail"]
        assert getattr(service.client, method)(path, **kwargs).status_code == 401
    for path in ROUTES_THAT_READ:
        assert service.client.get(path, headers=service.auth("line")).status_code == 403
        answer = service.client.get(path, headers=service.auth("manager"))
        assert answer.status_code in (200, 404, 422), (path, answer.text)  # let in
    assert upload(service, b"x", role="line").status_code == 403


def test_label_a_part_correct_it_and_see_it_override_the_model(
    service: Service, good_part: bytes
) -> None:
    inspected = service.inspect(good_part, serial="P1").json()
    assert inspected["verdict"] == "OK"
    result_id = inspected["result_id"]
    qa = service.auth("qa")

    first = service.client.post(
        f"/v1/labels/results/{result_id}", json={"verdict": "OK"}, headers=qa
    )
    assert first.status_code == 201, first.text
    assert first.json()["overrides_model"] is False
    sample_id = first.json()["sample_id"]

    body = {
        "verdict": "NG",
        "regions": [
            {"class": "scratch", "box": [10, 10, 40, 30]},
            {"class": "dent", "polygon": [[50, 50], [80, 50], [65, 90]]},
        ],
        "replaces": first.json()["id"],
    }
    second = service.client.post(f"/v1/labels/samples/{sample_id}/labels", json=body, headers=qa)
    assert second.status_code == 201, second.text
    label = second.json()
    assert label["overrides_model"] is True and label["overrides_label_id"] == first.json()["id"]
    assert label["defect_class"] == "scratch"
    assert label["regions"][1] == {
        "class": "dent",
        "box": [50, 50, 80, 90],
        "polygon": [[50, 50], [80, 50], [65, 90]],
        "mask_sha256": None,
    }
    stale = service.client.post(
        f"/v1/labels/samples/{sample_id}/labels",
        json={"verdict": "OK", "replaces": first.json()["id"]},
        headers=qa,
    )
    assert stale.status_code == 409 and "standing label" in stale.json()["detail"]

    detail = service.client.get(f"/v1/labels/samples/{sample_id}", headers=service.auth("manager"))
    assert detail.status_code == 200
    assert [h["verdict"] for h in detail.json()["history"]] == ["OK", "NG"]
    assert detail.json()["label"]["id"] == label["id"] and detail.json()["result_id"] == result_id
    image = service.client.get(detail.json()["image_url"], headers=service.auth("manager"))
    assert image.status_code == 200 and image.content == good_part
    assert service.client.get(
        f"/v1/labels/samples/{sample_id}/reference", headers=qa
    ).status_code == 404  # fmt: skip

    # a box outside the image, an OK with regions, a class name too long: 422, nothing stored
    width = gray(good_part).shape[1]
    for bad in (
        {"verdict": "NG", "regions": [{"class": "scratch", "box": [0, 0, width + 5, 10]}]},
        {"verdict": "OK", "regions": [{"class": "scratch", "box": [0, 0, 5, 5]}]},
        {"verdict": "NG", "regions": [{"class": "x" * 65, "box": [0, 0, 5, 5]}]},
        {"verdict": "NG", "regions": [{"class": "scratch"}]},
        {"verdict": "NG", "regions": [{"class": "a", "polygon": [[1, 2, 3]]}]},
    ):
        answer = service.client.post(f"/v1/labels/samples/{sample_id}/labels", json=bad, headers=qa)
        assert answer.status_code == 422, (bad, answer.text)
    history = service.client.get(f"/v1/labels/samples/{sample_id}/history", headers=qa).json()
    assert len(history) == 2
    assert service.client.post(
        "/v1/labels/results/nope", json={"verdict": "OK"}, headers=qa
    ).status_code == 404  # fmt: skip


def test_a_brush_mask_becomes_a_region_with_its_extent(service: Service, good_part: bytes) -> None:
    result_id = service.inspect(good_part).json()["result_id"]
    height, width = gray(good_part).shape
    mask = np.zeros((height, width), np.uint8)
    mask[20:30, 40:55] = 200
    png = base64.b64encode(cv2.imencode(".png", mask)[1].tobytes()).decode()
    qa = service.auth("qa")
    # the sample learns its size once the image is read; label it first by result
    answer = service.client.post(
        f"/v1/labels/results/{result_id}",
        json={"verdict": "NG", "regions": [{"class": "stain", "mask_png": png}]},
        headers=qa,
    )
    assert answer.status_code == 201, answer.text
    (region,) = answer.json()["regions"]
    assert region["box"] == [40, 20, 55, 30] and region["mask_sha256"]
    kept = service.settings.home / "labels" / "masks" / f"{region['mask_sha256']}.png"
    assert int(np.count_nonzero(gray(kept.read_bytes()))) == 150
    empty = base64.b64encode(cv2.imencode(".png", mask * 0)[1].tobytes()).decode()
    refused = service.client.post(
        f"/v1/labels/results/{result_id}",
        json={"verdict": "NG", "regions": [{"class": "stain", "mask_png": empty}]},
        headers=qa,
    )
    assert refused.status_code == 422 and "empty" in refused.json()["detail"]


def test_import_a_zip_or_a_workspace_folder_then_export_and_freeze(
    service: Service, tmp_path: Path
) -> None:
    folder = coco_folder(tmp_path / "batch1", ok=4, ng=4)
    qa = service.auth("qa")

    refused = upload(service, zipped(coco_folder(tmp_path / "ng", ok=0, ng=2, first=200)))
    assert refused.status_code == 422
    assert "nothing imported" in refused.json()["detail"]
    assert "unknown class" in refused.json()["detail"]
    imported = upload(service, zipped(folder), create_classes="true")
    assert imported.status_code == 200, imported.text
    report = imported.json()
    assert (report["images"], report["samples_added"], report["skipped"]) == (8, 8, 0)
    assert report["classes_added"] == ["scratch", "dent"]
    assert not any((service.settings.home / "labels" / ".transfer").iterdir())

    incoming = service.settings.home / "labels" / "incoming" / "batch2"
    coco_folder(incoming, ok=2, ng=0, first=100)
    by_path = service.client.post(
        "/v1/labels/import", json={"format": "coco", "path": "labels/incoming/batch2"}, headers=qa
    )
    assert by_path.status_code == 200, by_path.text
    assert by_path.json()["samples_added"] == 2
    for outside in ("/etc", "../", "labels/../../x", ""):
        answer = service.client.post(
            "/v1/labels/import", json={"format": "coco", "path": outside}, headers=qa
        )
        assert answer.status_code == 422, (outside, answer.text)
    evil = upload(service, zipped(folder, {"../evil.txt": b"x"}), create_classes="true")
    assert evil.status_code == 422 and "stay in the zip" in evil.json()["detail"]
    assert upload(service, b"not a zip").status_code == 422

    page = service.client.get(
        "/v1/labels/samples", params={"limit": 6, "source": "batch1"}, headers=qa
    ).json()
    assert len(page["items"]) == 6 and page["next_after"] == page["items"][-1]["id"]
    rest = service.client.get(
        "/v1/labels/samples", params={"after": page["next_after"], "source": "batch1"}, headers=qa
    ).json()
    assert len(rest["items"]) == 2 and rest["next_after"] is None
    ng = service.client.get("/v1/labels/samples", params={"class": "dent"}, headers=qa).json()
    assert len(ng["items"]) == 2

    exported = service.client.get(
        "/v1/labels/export", params={"format": "yolo", "verdict": "NG"}, headers=qa
    )
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert (
        "data.yaml" in names
        and len([n for n in names if n.endswith(".txt") and n.startswith("labels/")]) == 4
    )

    frozen = service.client.post("/v1/datasets", json={"name": "parts", "seed": 2}, headers=qa)
    assert frozen.status_code == 201, frozen.text
    version = frozen.json()
    assert version["created"] is True and version["counts"]["images"] == 10
    again = service.client.post("/v1/datasets", json={"name": "parts", "seed": 2}, headers=qa)
    assert again.status_code == 200 and again.json()["id"] == version["id"]
    manager = service.auth("manager")
    listed = service.client.get("/v1/datasets", headers=manager).json()
    assert [v["id"] for v in listed] == [version["id"]]
    shown = service.client.get(f"/v1/datasets/{version['id'][:6]}", headers=manager)
    assert shown.status_code == 200 and shown.json()["id"] == version["id"]
    download = service.client.get(
        f"/v1/datasets/{version['id']}/export", params={"format": "coco"}, headers=manager
    )
    assert download.status_code == 200
    coco = json.loads(zipfile.ZipFile(io.BytesIO(download.content)).read("annotations.json"))
    assert len(coco["images"]) == 10
    bad = service.client.post("/v1/datasets", json={"name": "../x"}, headers=qa)
    assert bad.status_code == 422
    assert service.client.get("/v1/datasets/ffffff", headers=manager).status_code == 404


def test_a_key_limited_to_a_station_sees_only_its_production_samples(
    service: Service, good_part: bytes, tmp_path: Path
) -> None:
    upload(service, zipped(coco_folder(tmp_path / "batch1", ok=2, ng=0)))
    result_id = service.inspect(good_part).json()["result_id"]
    qa = service.auth("qa")
    labelled = service.client.post(
        f"/v1/labels/results/{result_id}", json={"verdict": "OK"}, headers=qa
    )
    _, key = service.store.create_key("qa", "scoped", stations=[STATION])
    scoped = {"X-API-Key": key}
    assert service.client.get("/v1/labels/samples", headers=scoped).status_code == 403
    mine = service.client.get("/v1/labels/samples", params={"source": STATION}, headers=scoped)
    assert [s["result_id"] for s in mine.json()["items"]] == [result_id]
    imported = service.client.get("/v1/labels/samples", params={"imported": True}, headers=qa)
    other = imported.json()["items"][0]["id"]
    assert service.client.get(f"/v1/labels/samples/{other}", headers=scoped).status_code == 404
    own = labelled.json()["sample_id"]
    assert service.client.get(f"/v1/labels/samples/{own}", headers=scoped).status_code == 200
    assert upload(service, b"x", role="qa").status_code == 422
    assert service.client.post(
        "/v1/datasets", json={"name": "x"}, headers=scoped
    ).status_code == 403  # fmt: skip


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_labels_and_a_dataset_on_postgresql(
    service: Service, good_part: bytes, tmp_path: Path
) -> None:
    result_id = service.inspect(good_part).json()["result_id"]
    qa = service.auth("qa")
    body = {"verdict": "NG", "regions": [{"class": "scratch", "box": [1, 1, 9, 9]}]}
    assert (
        service.client.post(f"/v1/labels/results/{result_id}", json=body, headers=qa).status_code
        == 201
    )
    assert (
        upload(
            service, zipped(coco_folder(tmp_path / "b", ok=3, ng=1)), create_classes="true"
        ).status_code
        == 200
    )
    frozen = service.client.post("/v1/datasets", json={"name": "pg"}, headers=qa)
    assert frozen.status_code == 201, frozen.text
    assert frozen.json()["counts"]["images"] == 5


def test_the_demo_labels_stored_ng_parts_and_freezes_them(
    service: Service, part_images: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    from defectlens.demo_labels import run_labels_demo

    defective = [
        p for kind, paths in part_images.items() if kind not in ("train", "good") for p in paths
    ]
    verdicts = [service.inspect(p.read_bytes()).json()["verdict"] for p in defective[:8]]
    assert "NG" in verdicts
    run_labels_demo(service.settings.home, STATION)
    out = capsys.readouterr().out
    assert "NG parts labelled (1 overriding the model)" in out
    assert "dataset version demo-parts" in out
    (version,) = service.store.dataset_versions()
    assert version.counts["images"] == min(verdicts.count("NG"), 6)


def test_a_label_zip_has_its_own_limit_and_streams_to_disk(
    make_service: Callable[..., Service], tmp_path: Path
) -> None:
    # A labelled folder is far larger than a JSON body: the zip route takes up to
    # DEFECTLENS_MAX_ARCHIVE_BYTES, and past it answers 413 whether or not the size was
    # declared, with nothing imported.
    noise = np.random.default_rng(0).integers(0, 256, 300_000, np.uint8).tobytes()
    archive = zipped(coco_folder(tmp_path / "batch1", ok=3, ng=3), {"batch1/scan.raw": noise})
    roomy = make_service(max_body_bytes=1_000, max_archive_bytes=len(archive) * 2)
    imported = upload(roomy, archive, create_classes="true")
    assert imported.status_code == 200, imported.text
    assert imported.json()["samples_added"] == 6

    tight = make_service(max_body_bytes=1_000, max_archive_bytes=len(archive) // 4)
    declared = upload(tight, archive, create_classes="true")
    assert declared.status_code == 413
    assert "DEFECTLENS_MAX_ARCHIVE_BYTES" in declared.json()["detail"]
    body = io.BytesIO()
    prepared = tight.client.build_request(
        "POST",
        "/v1/labels/import/upload",
        files={"file": ("batch2.zip", archive, "application/zip")},
        data={"format": "coco", "create_classes": "true", "source": "batch2"},
        headers=tight.auth("qa"),
    )
    body.write(prepared.read())
    streamed = tight.client.post(  # no Content-Length: counted as it arrives
        "/v1/labels/import/upload",
        content=(body.getvalue()[i : i + 256] for i in range(0, len(body.getvalue()), 256)),
        headers={**tight.auth("qa"), "Content-Type": prepared.headers["Content-Type"]},
    )
    assert streamed.status_code == 413, streamed.text
    samples = tight.client.get(
        "/v1/labels/samples", params={"source": "batch2"}, headers=tight.auth("qa")
    ).json()
    assert samples["items"] == []
