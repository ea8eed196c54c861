"""`defectlens backup` and `defectlens restore`: a consistent copy while parts are saved and
parts are labelled, a byte-identical restore of results, images, models, the label store's
files and the dataset versions, and the refusals that leave everything as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pg_server import PostgresServer
from sqlalchemy import select
from store_factories import DEFECTS, make_result

from defectlens.cli import main
from defectlens.datasets.labels.model import Annotation
from defectlens.inference.service.dataset_versions import export_version, freeze_dataset
from defectlens.inference.service.labelling import (
    import_labels,
    label_files,
    mask_region,
    sample_image_file,
)
from defectlens.inference.store import Database, Store, StoredImage, open_database
from defectlens.inference.store.backup import MANIFEST, read_manifest
from defectlens.inference.store.labels import Sample
from defectlens.inference.store.tables import ImageRow, LabelRegionRow, ModelVersionRow, ResultRow
from defectlens.settings import Settings


def use_workspace(
    monkeypatch: pytest.MonkeyPatch, home: Path, database_url: str | None = None
) -> Settings:
    """Point the commands at `home` (and `database_url`, default SQLite in it), as a plant's
    environment would."""
    monkeypatch.setenv("DEFECTLENS_HOME", str(home))
    if database_url is None:
        monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DEFECTLENS_DATABASE_URL", database_url)
    return Settings()


@pytest.fixture(autouse=True)
def no_settings_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # a defectlens.yaml in the caller's folder must not leak in


def save_part(store: Store, images_dir: Path, n: int) -> str:
    """Store one part as the service does: its image files first, then the result's rows."""
    ng = n % 4 == 0
    result = make_result(n, verdict="NG" if ng else "OK", defects=DEFECTS if ng else [])
    kept = [("image", f"part {n} ".encode() * (50 + n % 7))]
    if ng:
        kept.append(("heatmap", hashlib.sha256(f"heat {n}".encode()).digest() * 20))
    images = []
    for kind, data in kept:
        relative = f"2026/11/26/{result.result_id}{'_heatmap' if kind == 'heatmap' else ''}.png"
        path = images_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        images.append(StoredImage(kind, relative, len(data)))
    store.save_result(result, images=images)
    return result.result_id


def model_folder(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(hashlib.sha256(tag.encode()).digest() * 100)
    (folder / "model.json").write_text(json.dumps({"name": "bottle", "version": tag}))
    (folder / "report").mkdir()
    (folder / "report" / "index.html").write_text(f"<h1>{tag}</h1>")
    return folder


def board(path: Path, value: int) -> Path:
    """A small generated board image (PNG) whose bytes differ with `value`."""
    pixels = np.full((60, 80, 3), value, np.uint8)
    cv2.rectangle(pixels, (10 + value % 17, 12), (44, 30), (255 - value, 90, value), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def brush(n: int, width: int = 80, height: int = 60) -> bytes:
    """A brush mask PNG of the boards' size, a different stroke for each `n`."""
    mask = np.zeros((height, width), np.uint8)
    cv2.line(mask, (5 + n % 50, 8), (30 + n % 40, 50), 255, 3)
    return bytes(cv2.imencode(".png", mask)[1].tobytes())


def paint(store: Store, settings: Settings, sample: Sample, n: int) -> None:
    """Label `sample` NG with a brush mask, as the labelling page's brush does."""
    region = mask_region(settings, brush(n), "scratch", sample)
    store.label_sample(sample.id, Annotation("NG", (region,)), "qa:alice")


def label_store(settings: Settings, store: Store, folder: Path) -> str:
    """Labels imported through the label store (four generated boards in COCO: three with
    boxes, one of them with its golden template, one OK), a brush mask painted on the OK one,
    frozen as dataset `boards`; the version's id."""
    images = [
        {"id": n + 1, "file_name": board(folder / f"board{n}.png", 30 * n + 20).name}
        for n in range(4)
    ]
    images[0]["reference"] = (
        board(folder / "templates" / "board0.png", 240).relative_to(folder).as_posix()
    )
    annotations = [
        {"image_id": n + 1, "category_id": 1 + n % 2, "bbox": [10, 12, 30, 16]} for n in range(3)
    ]
    categories = [{"id": 1, "name": "short"}, {"id": 2, "name": "scratch"}]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(coco))
    import_labels(store, settings, "coco", folder, "qa:alice", create_classes=True)
    [ok] = [s for s in store.list_samples() if s.label and s.label.annotation.verdict == "OK"]
    paint(store, settings, ok, 0)
    return freeze_dataset(store, settings, "boards", author="qa:alice").version.id


def workspace(
    settings: Settings, parts: int, outside_models: Path | None = None
) -> tuple[Database, Store]:
    """A workspace with `parts` results and their images, one model version under its models
    folder and (given `outside_models`) one outside it, and a label store of four imported
    boards (boxes, a template, a brush mask) frozen into one dataset version."""
    db = open_database(settings.resolved_database_url)
    store = Store(db)
    for n in range(parts):
        save_part(store, settings.images_dir, n)
    inside = model_folder(settings.models_dir / "bottle" / "v2", "v2")
    store.register_model_version("bottle", "v2", "patchcore", inside, "a" * 64, {"f1": 0.9})
    if outside_models is not None:
        outside = model_folder(outside_models / "v1", "v1")
        store.register_model_version("bottle", "v1", "patchcore", outside, "b" * 64)
    label_store(settings, store, settings.home.parent / f"{settings.home.name}-import")
    return db, store


def assert_labels_restored(
    store: Store, plant: Settings, restored_store: Store, restored: Settings
) -> None:
    """Every restored sample's image, template and masks (of every label in its history) are
    the plant's, byte for byte, read back through the label store; every dataset version's
    folder is the plant's, at the new home, and exports."""
    samples = restored_store.list_samples()
    assert len(samples) == 4
    for sample in samples:
        original = store.sample(sample.id)
        assert (sample.path, sample.reference_path) == (original.path, original.reference_path)
        image = sample_image_file(restored_store, restored, sample)
        assert image.is_relative_to(restored.home.resolve() / "labels")
        assert image.read_bytes() == sample_image_file(store, plant, original).read_bytes()
        if sample.reference_path is not None:
            template = sample_image_file(restored_store, restored, sample, reference=True)
            assert (
                template.read_bytes()
                == sample_image_file(store, plant, original, True).read_bytes()
            )
        for label in restored_store.label_history(sample.id):
            for region in label.annotation.regions:
                if region.mask_sha256 is not None:
                    mask = label_files(restored).mask(region.mask_sha256)
                    assert mask == label_files(plant).mask(region.mask_sha256)
    assert sum(s.reference_path is not None for s in samples) == 1
    assert any(r.mask_sha256 for s in samples if s.label for r in s.label.annotation.regions)
    versions = restored_store.dataset_versions()
    assert [v.id for v in versions] == [v.id for v in store.dataset_versions()]
    for version in versions:
        folder = Path(version.path)
        assert folder == restored.home.resolve() / "datasets" / "boards" / version.id
        original = Path(store.dataset_version(version.id).path)
        files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
        assert {"manifest.json", "coco.json"} <= {f.name for f in files}
        for file in files:
            assert (folder / file).read_bytes() == (original / file).read_bytes()
        # The version's images are the label store's files, linked as the freeze linked them.
        assert all((folder / f).stat().st_nlink > 1 for f in files if f.parts[0] == "images")
        out = restored.home.parent / f"export-{version.id}"
        assert export_version(restored_store, restored, version.id, "coco", out) == 4
        assert (out / "annotations.json").is_file()


def image_rows(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(ImageRow.path).order_by(ImageRow.id)))


def result_ids(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(ResultRow.result_id).order_by(ResultRow.result_id)))


def model_paths(db: Database) -> dict[str, str]:
    with db.read() as session:
        return {row.version: row.path for row in session.scalars(select(ModelVersionRow))}


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary folders or files a backup or restore left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_backup_taken_while_parts_are_saved_restores_every_result_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, store = workspace(plant, parts=300, outside_models=tmp_path / "elsewhere")
    painted = store.list_samples()[1]

    stop, saved = threading.Event(), [0]

    def keep_saving() -> None:  # the line keeps inspecting, QA keeps labelling
        n = 1000
        while not stop.is_set():
            save_part(store, plant.images_dir, n)
            if n % 5 == 0:  # a new brush mask: a file first, then the region row naming it
                paint(store, plant, painted, n // 5)
            saved[0], n = saved[0] + 1, n + 1

    writer = threading.Thread(target=keep_saving)
    writer.start()
    try:
        # Past the second new mask (parts 1000 and 1005; brush(200) draws brush(0)'s mask
        # again), so the copy holds more than one mask whenever the backup starts.
        while saved[0] < 7:
            time.sleep(0.005)
        started = saved[0]
        status = main(["backup", str(tmp_path / "backup")])
        during = saved[0] - started
    finally:
        stop.set()
        writer.join()
    out, err = capsys.readouterr()
    assert status == 0, err
    assert during > 0  # parts were stored while the backup ran

    backup = tmp_path / "backup"
    manifest = read_manifest(backup)
    assert manifest.format == "defectlens-backup" and manifest.database.dialect == "sqlite"
    assert manifest.format_version == 2
    assert manifest.database.schema_revision is not None
    assert 305 <= manifest.counts.results < len(result_ids(db))  # some came after the copy
    assert f"backup {backup}: {manifest.counts.results} results" in out
    # Consistent: every image row of the copied database has its file in the backup.
    with sqlite3.connect(backup / "defectlens.db") as copy:
        copied_rows = [path for (path,) in copy.execute("SELECT path FROM images")]
    assert len(copied_rows) == manifest.counts.images == manifest.counts.image_files
    assert all((backup / "images" / path).is_file() for path in copied_rows)
    assert {name for name in manifest.files if name.startswith("images/")} == {
        f"images/{path}" for path in copied_rows
    }
    # ... and every label file its sample and region rows name, every dataset version's folder.
    with sqlite3.connect(backup / "defectlens.db") as copy:
        named = {
            f"labels/{path}"
            for (path,) in copy.execute(
                "SELECT path FROM samples UNION SELECT reference_path FROM samples "
                "UNION SELECT 'masks/' || mask_sha256 || '.png' FROM label_regions"
            )
            if path is not None
        }
        [(version, stored)] = list(copy.execute("SELECT id, path FROM dataset_versions"))
    assert {name for name in manifest.files if name.startswith("labels/")} == named
    assert manifest.counts.label_files == len(named)
    assert len([n for n in named if n.startswith("labels/images/")]) == 4 + 1  # + the template
    assert len([n for n in named if n.startswith("labels/masks/")]) > 1  # painted meanwhile
    assert (manifest.counts.samples, manifest.counts.dataset_versions) == (4, 1)
    assert [(d.id, d.original, d.stored_as) for d in manifest.datasets] == [
        (version, stored, f"datasets/boards/{version}")
    ]
    dataset_files = [n for n in manifest.files if n.startswith(f"datasets/boards/{version}/")]
    assert len(dataset_files) == manifest.counts.dataset_files > 4
    # The version's images are the label store's files: one file in the backup, not two.
    for name in dataset_files:
        if name.startswith(f"datasets/boards/{version}/images/"):
            assert (backup / name).stat().st_nlink > 1
    assert (
        f"{manifest.counts.samples} label samples ({manifest.counts.label_files} label files), "
        f"1 dataset versions ({manifest.counts.dataset_files} files)" in out
    )
    for name, digest in manifest.files.items():
        assert hashlib.sha256((backup / name).read_bytes()).hexdigest() == digest
    # The model folder under the workspace is in it; the one outside is reported.
    assert [(m.stored_as, m.original) for m in manifest.models] == [
        ("models/bottle/v2", str((plant.models_dir / "bottle" / "v2").resolve()))
    ]
    assert manifest.counts.model_files == 3
    [outside] = manifest.not_included
    assert outside.what == "model" and outside.path.endswith("elsewhere/v1")
    assert "not included: model" in err and "elsewhere/v1" in err

    restored_home = tmp_path / "restored"
    restored_settings = use_workspace(monkeypatch, restored_home)
    status = main(["restore", str(backup)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"{manifest.counts.results} results" in out
    assert f"{manifest.counts.label_files} label files, 1 dataset versions" in out
    restored = open_database(f"sqlite:///{restored_home / 'defectlens.db'}")
    restored_store = Store(restored)
    ids = result_ids(restored)
    assert len(ids) == manifest.counts.results
    for result_id in ids:
        assert restored_store.get_result(result_id) == store.get_result(result_id)
    paths = image_rows(restored)
    assert paths == copied_rows
    for path in paths:
        original = (plant.images_dir / path).read_bytes()
        assert (restored_home / "images" / path).read_bytes() == original
    versions = model_paths(restored)
    assert versions["v2"] == str((restored_home / "models" / "bottle" / "v2").resolve())
    assert versions["v1"] == outside.path  # not restored: the row still names the old folder
    for file in ("model.onnx", "model.json", "report/index.html"):
        original = (plant.models_dir / "bottle" / "v2" / file).read_bytes()
        assert (restored_home / "models" / "bottle" / "v2" / file).read_bytes() == original
    assert_labels_restored(store, plant, restored_store, restored_settings)
    with restored.read() as session:
        masks = set(session.scalars(select(LabelRegionRow.mask_sha256)))
    assert {f"labels/masks/{m}.png" for m in masks if m} == {
        n for n in named if n.startswith("labels/masks/")
    }
    assert leftovers(restored_home) == [] and leftovers(tmp_path) == []
    restored.close()
    db.close()


def test_an_image_whose_file_is_gone_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, _ = workspace(plant, parts=6)
    lost = image_rows(db)[2]
    (plant.images_dir / lost).unlink()

    assert main(["backup", str(tmp_path / "backup")]) == 0
    err = capsys.readouterr().err
    manifest = read_manifest(tmp_path / "backup")
    [missing] = manifest.not_included
    assert (missing.what, missing.path) == ("image", lost) and "missing" in missing.reason
    assert f"not included: image {missing.id} {lost}" in err
    assert manifest.counts.image_files == manifest.counts.images - 1
    db.close()


def test_a_label_file_or_dataset_folder_that_is_gone_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, store = workspace(plant, parts=2)
    [templated] = [s for s in store.list_samples() if s.reference_path is not None]
    assert templated.reference_path is not None
    (plant.home / "labels" / templated.reference_path).unlink()
    [version] = store.dataset_versions()
    shutil.rmtree(version.path)

    assert main(["backup", str(tmp_path / "backup")]) == 0
    err = capsys.readouterr().err
    manifest = read_manifest(tmp_path / "backup")
    assert [(m.what, m.id, m.path) for m in manifest.not_included] == [
        ("reference", templated.id, templated.reference_path),
        ("dataset", version.id, version.path),
    ]
    assert "missing" in manifest.not_included[0].reason
    assert manifest.not_included[1].reason == "folder missing"
    assert f"not included: reference {templated.id} {templated.reference_path}: file" in err
    assert f"not included: dataset {version.id} {version.path}: folder missing" in err
    assert manifest.counts.dataset_versions == 1 and manifest.datasets == []
    assert manifest.counts.label_files == 4 + 1  # four images and the brush mask

    restored = use_workspace(monkeypatch, tmp_path / "restored")
    assert main(["restore", str(tmp_path / "backup")]) == 0, capsys.readouterr().err
    with open_database(restored.resolved_database_url) as database:
        restored_store = Store(database)
        assert len(restored_store.list_samples()) == 4
        # Not in the backup: the row still names the folder it named.
        assert restored_store.dataset_version(version.id).path == version.path
    db.close()


def test_an_existing_dest_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, _ = workspace(plant, parts=3)
    dest = tmp_path / "backups" / "monday"
    dest.mkdir(parents=True)

    assert main(["backup", str(dest)]) == 2
    err = capsys.readouterr().err
    assert str(dest) in err and "already exists" in err
    assert list(dest.iterdir()) == [] and leftovers(dest.parent) == []
    db.close()


def test_a_failed_backup_leaves_nothing_at_dest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, _ = workspace(plant, parts=5)
    unreadable = plant.images_dir / image_rows(db)[3]
    unreadable.unlink()
    unreadable.mkdir()  # a folder where the row names a file: reading it fails mid-copy

    assert main(["backup", str(tmp_path / "backup")]) == 1
    assert "IsADirectoryError" in capsys.readouterr().err
    assert not (tmp_path / "backup").exists() and leftovers(tmp_path) == []
    db.close()


@pytest.fixture
def backup_of_three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, _ = workspace(plant, parts=3)
    db.close()
    assert main(["backup", str(tmp_path / "backup")]) == 0
    return tmp_path / "backup"


def test_a_workspace_with_results_or_images_is_refused_unless_forced(
    backup_of_three: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = use_workspace(monkeypatch, tmp_path / "target")
    db = open_database(target.resolved_database_url)
    kept = save_part(Store(db), target.images_dir, 77)
    capsys.readouterr()

    assert main(["restore", str(backup_of_three)]) == 2
    err = capsys.readouterr().err
    assert "1 results" in err and str(target.images_dir.resolve()) in err and "--force" in err
    assert result_ids(db) == [kept]

    images_only = use_workspace(monkeypatch, tmp_path / "images-only")
    (images_only.images_dir / "2026").mkdir(parents=True)
    (images_only.images_dir / "2026" / "x.png").write_bytes(b"png")
    assert main(["restore", str(backup_of_three)]) == 2
    assert str(images_only.images_dir.resolve()) in capsys.readouterr().err
    assert not (images_only.home / "defectlens.db").exists()

    for folder in ("labels", "datasets"):  # a label store's files, a dataset version
        occupied = use_workspace(monkeypatch, tmp_path / f"{folder}-only")
        (occupied.home / folder / "parts").mkdir(parents=True)
        (occupied.home / folder / "parts" / "x.png").write_bytes(b"png")
        assert main(["restore", str(backup_of_three)]) == 2
        err = capsys.readouterr().err
        assert f"files in {(occupied.home / folder).resolve()}" in err and "--force" in err
        assert not (occupied.home / "defectlens.db").exists()
        assert (occupied.home / folder / "parts" / "x.png").read_bytes() == b"png"

    use_workspace(monkeypatch, tmp_path / "target")
    (target.home / "labels" / "stray.png").parent.mkdir(parents=True)
    (target.home / "labels" / "stray.png").write_bytes(b"png")
    db.close()
    assert main(["restore", str(backup_of_three), "--force"]) == 0
    replaced = open_database(target.resolved_database_url)
    restored = result_ids(replaced)
    assert len(restored) == 3 and kept not in restored
    assert {f"images/{path}" for path in image_rows(replaced)} == {
        f"images/{p.relative_to(target.images_dir).as_posix()}" for p in _files(target.images_dir)
    }
    # The label store and the datasets are the backup's: what they held before is gone.
    manifest = read_manifest(backup_of_three)
    assert {
        f"{folder}/{p.relative_to(target.home / folder).as_posix()}"
        for folder in ("labels", "datasets")
        for p in _files(target.home / folder)
    } == {n for n in manifest.files if n.startswith(("labels/", "datasets/"))}
    assert len(Store(replaced).list_samples()) == 4
    replaced.close()


def test_a_version_1_backup_restores_and_leaves_labels_and_datasets_alone(
    backup_of_three: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What the previous format wrote: no label files, no dataset versions, no counts of them.
    manifest_file = backup_of_three / MANIFEST
    old = json.loads(manifest_file.read_text())
    old["format_version"] = 1
    del old["datasets"]
    for count in ("samples", "label_files", "dataset_versions", "dataset_files"):
        del old["counts"][count]
    old["files"] = {
        name: digest
        for name, digest in old["files"].items()
        if not name.startswith(("labels/", "datasets/"))
    }
    manifest_file.write_text(json.dumps(old, indent=2))
    shutil.rmtree(backup_of_three / "labels")
    shutil.rmtree(backup_of_three / "datasets")
    plant = Settings(home=tmp_path / "plant")
    # The label store's files, copied by hand beside such a backup, are where they belong.
    target = use_workspace(monkeypatch, tmp_path / "target")
    shutil.copytree(plant.home / "labels", target.home / "labels")
    shutil.copytree(plant.home / "datasets", target.home / "datasets")
    before = {p: p.read_bytes() for p in _files(target.home / "labels")}
    capsys.readouterr()

    assert main(["restore", str(backup_of_three)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "3 results" in out and "a version 1 backup: labels/, datasets/ untouched" in out
    assert {p: p.read_bytes() for p in _files(target.home / "labels")} == before
    with open_database(target.resolved_database_url) as database:
        store = Store(database)
        samples = store.list_samples()
        assert len(samples) == 4 and len(result_ids(database)) == 3
        for sample in samples:
            assert sample_image_file(store, target, sample).is_file()
        [version] = store.dataset_versions()
        assert version.path == str(plant.home.resolve() / "datasets" / "boards" / version.id)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_a_tampered_file_is_named_and_nothing_is_restored(
    backup_of_three: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = read_manifest(backup_of_three)
    tampered = backup_of_three / sorted(n for n in manifest.files if n.startswith("images/"))[-1]
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    target = use_workspace(monkeypatch, tmp_path / "target")

    assert main(["restore", str(backup_of_three)]) == 2
    err = capsys.readouterr().err
    assert str(tampered) in err and "sha256" in err and "nothing was restored" in err
    assert not target.home.exists() or list(target.home.iterdir()) == []


def test_a_missing_or_damaged_manifest_or_file_is_an_input_error(
    backup_of_three: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = use_workspace(monkeypatch, tmp_path / "target")
    assert main(["restore", str(tmp_path / "nowhere")]) == 2
    assert "no such backup folder" in capsys.readouterr().err

    manifest_file = backup_of_three / MANIFEST
    original = manifest_file.read_text()
    database = backup_of_three / "defectlens.db"
    database.rename(tmp_path / "aside.db")
    assert main(["restore", str(backup_of_three)]) == 2
    assert f"{database}: listed in" in capsys.readouterr().err
    (tmp_path / "aside.db").rename(database)

    manifest_file.write_text(original[: len(original) // 2])
    assert main(["restore", str(backup_of_three)]) == 2
    assert f"{manifest_file}: not a valid defectlens backup manifest" in capsys.readouterr().err

    escaping = json.loads(original)
    escaping["files"]["../../etc/passwd"] = "0" * 64
    manifest_file.write_text(json.dumps(escaping))
    assert main(["restore", str(backup_of_three)]) == 2
    assert "not a relative path inside the backup" in capsys.readouterr().err

    manifest_file.unlink()
    assert main(["restore", str(backup_of_three)]) == 2
    assert f"{manifest_file}: missing" in capsys.readouterr().err
    assert not target.home.exists()


def test_postgres_without_pg_dump_names_the_command_and_hides_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://qa:s3cret@db.plant.local:5433/defectlens"
    use_workspace(monkeypatch, tmp_path / "plant", database_url=url)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # a machine without the client

    assert main(["backup", str(tmp_path / "backup")]) == 2
    err = capsys.readouterr().err
    assert "pg_dump is not on PATH" in err and "pg_dump --format=custom" in err
    assert "--host=db.plant.local --port=5433 --username=qa --dbname=defectlens" in err
    assert "s3cret" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "backup").exists()


def test_postgres_backup_and_restore(
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant", postgres_server.create_database())
    db, store = workspace(plant, parts=20)
    painted = store.list_samples()[2]
    stop, saved = threading.Event(), [0]

    def keep_labelling() -> None:  # QA paints masks while the backup runs
        n = 1
        while not stop.is_set():
            paint(store, plant, painted, n)
            saved[0], n = saved[0] + 1, n + 1

    writer = threading.Thread(target=keep_labelling)
    writer.start()
    try:
        while saved[0] < 2:
            time.sleep(0.005)
        status = main(["backup", str(tmp_path / "backup")])
    finally:
        stop.set()
        writer.join()
    assert status == 0, capsys.readouterr().err
    manifest = read_manifest(tmp_path / "backup")
    assert manifest.database.dialect == "postgresql" and manifest.database.file in manifest.files
    assert manifest.counts.results == 20 and manifest.not_included == []
    assert (manifest.counts.samples, manifest.counts.dataset_versions) == (4, 1)

    target_url = postgres_server.create_database()
    target = use_workspace(monkeypatch, tmp_path / "restored", target_url)
    assert main(["restore", str(tmp_path / "backup")]) == 0, capsys.readouterr().err
    restored = open_database(target_url)
    assert result_ids(restored) == result_ids(db)
    for result_id in result_ids(db):
        assert Store(restored).get_result(result_id) == store.get_result(result_id)
    for path in image_rows(restored):
        assert (target.images_dir / path).read_bytes() == (plant.images_dir / path).read_bytes()
    assert model_paths(restored)["v2"] == str(target.models_dir.resolve() / "bottle" / "v2")
    # The dump's region rows name exactly the masks the backup holds (same snapshot).
    with restored.read() as session:
        masks = {m for m in session.scalars(select(LabelRegionRow.mask_sha256)) if m}
    assert {f"labels/masks/{m}.png" for m in masks} == {
        n for n in manifest.files if n.startswith("labels/masks/")
    }
    assert len(masks) > 1
    assert_labels_restored(store, plant, Store(restored), target)

    assert main(["restore", str(tmp_path / "backup")]) == 2  # now it holds results
    assert "20 results" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "backup"), "--force"]) == 0
    assert len(result_ids(restored)) == 20
    assert len(Store(restored).list_samples()) == 4
    restored.close()
    db.close()
