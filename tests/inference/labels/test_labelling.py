"""Imports into the label store (files by content, one transaction, the skip report),
exports out of it and back, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from label_folders import coco_folder, image
from sqlalchemy import func, select

from defectlens.datasets.labels.formats import EXPORT_FORMATS, read_labels
from defectlens.errors import InputError
from defectlens.inference.service.labelling import (
    NothingImported,
    export_labels,
    import_labels,
)
from defectlens.inference.store import Database, Store
from defectlens.inference.store.labels import SampleFilter
from defectlens.inference.store.tables import LabelRow, SampleRow
from defectlens.settings import Settings

# The benchmark data sits beside the repository (`../shared`), read in place.
DEEPPCB = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "deeppcb"


def counts(db: Database) -> tuple[int, int]:
    with db.read() as session:
        samples = session.scalar(select(func.count()).select_from(SampleRow)) or 0
        labels = session.scalar(select(func.count()).select_from(LabelRow)) or 0
        return samples, labels


def test_import_copies_files_by_content_and_reports(
    store: Store, db: Database, settings: Settings, tmp_path: Path
) -> None:
    folder = coco_folder(tmp_path / "batch1")
    report = import_labels(store, settings, "coco", folder, "qa:alice", create_classes=True)
    assert (report.images, report.regions, report.skipped) == (8, 6, 0)
    assert (report.samples_added, report.labels_added) == (8, 8)
    assert report.classes_added == ["scratch", "dent"]
    stored = sorted(p.name for p in (settings.home / "labels" / "images").iterdir())
    assert len(stored) == 8 and all(len(name) == 64 + 4 for name in stored)
    samples = store.list_samples()
    assert {s.source for s in samples} == {"batch1"}
    assert counts(db) == (8, 8)

    again = import_labels(store, settings, "coco", folder, "qa:alice")
    assert (again.samples_added, again.samples_known, again.labels_added) == (0, 8, 0)
    assert counts(db) == (8, 8)
    assert "8 known already" in again.lines()[0]


def test_unknown_classes_are_skipped_unless_created(
    store: Store, db: Database, settings: Settings, tmp_path: Path
) -> None:
    folder = coco_folder(tmp_path / "batch1", ok=2, ng=2)
    store.add_class("scratch")
    report = import_labels(store, settings, "coco", folder, "qa")
    # the second NG image also has a dent, which the store does not know
    assert (report.images, report.skipped) == (3, 1)
    assert report.skipped_by_reason == {"unknown class": 1}
    assert "--create-classes" in report.skipped_lines[0]
    assert counts(db) == (3, 3)


def test_an_import_with_nothing_usable_writes_nothing(
    store: Store, db: Database, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.png").write_bytes(b"truncated")
    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png"}]}
    (folder / "labels.json").write_text(json.dumps(coco))
    with pytest.raises(NothingImported, match="nothing imported") as caught:
        import_labels(store, settings, "coco", folder, "qa")
    assert caught.value.report.skipped_by_reason == {
        "image file missing": 1,
        "unreadable image": 1,
    }
    assert counts(db) == (0, 0)
    assert not (settings.home / "labels").exists()


def test_a_write_failing_midway_leaves_no_sample_label_or_class(
    store: Store, db: Database, settings: Settings, tmp_path: Path
) -> None:
    if db.dialect != "sqlite":
        pytest.skip("the failure is made by an SQLite trigger")
    # The database itself fails the third label's insert, as a full disk would.
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER fail_third BEFORE INSERT ON labels "
            "WHEN (SELECT COUNT(*) FROM labels) >= 2 "
            "BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END"
        )
    folder = coco_folder(tmp_path / "batch1", ok=2, ng=2)
    with pytest.raises(Exception, match="simulated write failure"):
        import_labels(store, settings, "coco", folder, "qa", create_classes=True)
    assert counts(db) == (0, 0)
    assert store.classes() == []


@pytest.mark.parametrize("format", EXPORT_FORMATS)
def test_export_then_import_into_another_store_gives_the_same_labels(
    store: Store, settings: Settings, tmp_path: Path, format: str
) -> None:
    import_labels(store, settings, "coco", coco_folder(tmp_path / "b"), "qa", True)
    out = tmp_path / "export"
    written, left_out = export_labels(store, settings, format, out)
    assert (written, left_out) == (8, [])

    other = Settings(home=tmp_path / "other-home")
    from defectlens.inference.store import open_database

    with open_database(f"sqlite:///{tmp_path / 'other.db'}") as database:
        second = Store(database)
        import_labels(second, other, format, out, "qa", create_classes=True)
        before = {s.sha256: s.label.annotation for s in store.list_samples() if s.label}
        after = {s.sha256: s.label.annotation for s in second.list_samples() if s.label}
    assert set(before) == set(after)
    for digest, annotation in before.items():
        got = after[digest]
        assert got.verdict == annotation.verdict
        boxes = sorted((r.defect_class, r.box) for r in got.regions)
        want = sorted((r.defect_class, r.box) for r in annotation.regions)
        assert [c for c, _ in boxes] == [c for c, _ in want]
        tolerance = 1.0 if format == "masks" else 1e-6  # a filled polygon covers its edge
        for (_, box), (_, expected) in zip(boxes, want, strict=True):
            assert box == pytest.approx(expected, abs=tolerance)
        if format == "coco":
            assert got == annotation


def test_export_filters_and_refuses_a_used_folder(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    import_labels(store, settings, "coco", coco_folder(tmp_path / "b"), "qa", True)
    written, _ = export_labels(store, settings, "yolo", tmp_path / "ok", SampleFilter(verdict="OK"))
    assert written == 4
    with pytest.raises(InputError, match="not empty"):
        export_labels(store, settings, "yolo", tmp_path / "ok")
    with pytest.raises(InputError, match="nothing to export"):
        export_labels(store, settings, "voc", tmp_path / "x", SampleFilter(source="nope"))
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not DEEPPCB.is_dir(), reason="the DeepPCB sample is not on this machine")
def test_deeppcb_import_keeps_each_template(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "deeppcb"
    lines = (DEEPPCB / "trainval.txt").read_text().splitlines()[:3]
    for line in lines:
        listed, annotation = line.split()
        stem, suffix = listed.rsplit(".", 1)
        for name in (annotation, f"{stem}_test.{suffix}", f"{stem}_temp.{suffix}"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DEEPPCB / name, root / name)
    (root / "trainval.txt").write_text("\n".join(lines) + "\n")

    report = import_labels(store, settings, "deeppcb", root, "qa", create_classes=True)

    assert (report.images, report.skipped) == (3, 0)
    samples = store.list_samples()
    assert all(s.reference_path and s.reference_sha256 for s in samples)
    reference = settings.home / "labels" / (samples[0].reference_path or "")
    assert (
        reference.read_bytes()
        == (root / lines[0].split()[0])
        .with_name(Path(lines[0].split()[0]).stem + "_temp.png")
        .read_bytes()
    )
    assert {c.name for c in store.classes()} <= {
        "open", "short", "mousebite", "spur", "copper", "pin-hole"
    }  # fmt: skip


def test_mask_import_keeps_each_region_mask(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    import cv2
    import numpy as np

    root = tmp_path / "masks-batch"
    image(root / "images" / "a.png", 1)
    mask = np.zeros((80, 100), np.uint8)
    mask[5:9, 5:9] = 255
    (root / "masks" / "scratch").mkdir(parents=True)
    cv2.imwrite(str(root / "masks" / "scratch" / "a.png"), mask)
    import_labels(store, settings, "masks", root, "qa", create_classes=True)
    (sample,) = store.list_samples()
    assert sample.label is not None
    (region,) = sample.label.annotation.regions
    assert region.box == (5, 5, 9, 9) and region.mask_sha256 is not None
    kept = settings.home / "labels" / "masks" / f"{region.mask_sha256}.png"
    decoded = cv2.imread(str(kept), cv2.IMREAD_GRAYSCALE)
    assert decoded is not None and int(np.count_nonzero(decoded)) == 16


def test_region_masks_go_out_and_come_back_the_same(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    import cv2
    import numpy as np

    root = tmp_path / "masks-batch"
    image(root / "images" / "a.png", 1)
    image(root / "images" / "b.png", 2)
    mask = np.zeros((80, 100), np.uint8)
    mask[5:9, 5:9] = 1
    mask[40:50, 60:64] = 2
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    (root / "classes.txt").write_text("scratch\ndent\n")
    import_labels(store, settings, "masks", root, "qa", create_classes=True)
    written, _ = export_labels(store, settings, "masks", tmp_path / "out")
    assert written == 2
    exported = cv2.imread(
        str(tmp_path / "out" / "masks" / f"{store.list_samples()[0].sha256}.png"), 0
    )
    assert exported is not None
    classes = (tmp_path / "out" / "classes.txt").read_text().split()
    assert {classes[v - 1]: int((exported == v).sum()) for v in (1, 2)} == {
        "dent": 40,
        "scratch": 16,
    }
    back = read_labels("masks", tmp_path / "out")
    regions = {r.defect_class: r for item in back.items for r in item.annotation.regions}
    stored = {
        r.defect_class: r
        for s in store.list_samples()
        if s.label
        for r in s.label.annotation.regions
    }
    assert regions == stored  # the same boxes and the same mask files, by content
