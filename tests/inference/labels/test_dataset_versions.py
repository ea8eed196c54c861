"""Dataset versions: the frozen folder and its manifest, the same version for the same labels,
splits that honour hints and keep classes apart, a result's image frozen with the imports,
exports of a version; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from label_folders import coco_folder, image

from defectlens.datasets.labels.formats import read_labels
from defectlens.datasets.labels.model import Annotation, Region, Split, Verdict
from defectlens.datasets.layout import open_dataset
from defectlens.datasets.versions import assign_splits, read_manifest
from defectlens.errors import InputError, NotFound
from defectlens.inference.service.dataset_versions import export_version, freeze_dataset
from defectlens.inference.service.images import image_path
from defectlens.inference.service.labelling import import_labels
from defectlens.inference.store import Store, new_result_id
from defectlens.result import InspectionResult
from defectlens.settings import Settings


def test_freeze_writes_an_immutable_version_and_freezing_again_finds_it(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    import_labels(store, settings, "coco", coco_folder(tmp_path / "b", ok=6, ng=6), "qa", True)

    first = freeze_dataset(store, settings, "parts", author="qa:alice")

    version = first.version
    folder = Path(version.path)
    assert first.created and folder == settings.home / "datasets" / "parts" / version.id
    assert len(version.id) == 12
    manifest = read_manifest(folder)
    assert manifest["version"] == version.id and manifest["created_by"] == "qa:alice"
    assert len(manifest["samples"]) == 12
    assert [s["sha256"] for s in manifest["samples"]] == sorted(
        s["sha256"] for s in manifest["samples"]
    )
    assert version.counts == manifest["counts"]
    assert manifest["counts"]["images"] == 12
    by_split = manifest["counts"]["by_split"]
    assert sum(n for split in by_split.values() for n in split.values()) == 12
    # each stratum (OK, scratch) of 6: 0.7/0.15/0.15 of 6 is 4.2/0.9/0.9 -> 4, 1, 1
    assert by_split == {
        "train": {"OK": 4, "scratch": 4},
        "val": {"OK": 1, "scratch": 1},
        "test": {"OK": 1, "scratch": 1},
    }
    for entry in manifest["samples"]:
        assert (folder / entry["image"]).is_file()
    # the detector's COCO, with each image's split, and the anomaly trainer's good folder
    coco = json.loads((folder / "coco.json").read_text())
    assert len(coco["images"]) == 12 and all("split" in i for i in coco["images"])
    plan = read_labels("coco", folder / "coco.json")
    assert len(plan.items) == 12 and plan.skipped == []
    good = open_dataset(folder / "good")
    assert good.layout == "flat" and len(good.samples()) == 6

    again = freeze_dataset(store, settings, "parts", author="qa:bob")
    assert again.version == version and not again.created
    assert [v.id for v in store.dataset_versions()] == [version.id]


def test_a_changed_label_is_a_new_version(store: Store, settings: Settings, tmp_path: Path) -> None:
    import_labels(store, settings, "coco", coco_folder(tmp_path / "b", ok=2, ng=2), "qa", True)
    first = freeze_dataset(store, settings, "parts", "qa").version
    sample = store.list_samples()[0]
    store.label_sample(sample.id, Annotation("NG", (Region("scratch", (1, 1, 5, 5)),)), "qa")
    second = freeze_dataset(store, settings, "parts", "qa").version
    assert second.id != first.id
    assert Path(first.path).is_dir() and Path(second.path).is_dir()  # the first stays
    assert {v.id for v in store.dataset_versions("parts")} == {first.id, second.id}
    assert freeze_dataset(store, settings, "parts", "qa", seed=1).version.id not in {
        first.id,
        second.id,
    }


def test_splits_honour_hints_and_are_the_same_every_time() -> None:
    from defectlens.datasets.labels.export import ExportSample

    def sample(n: int, verdict: Verdict = "OK", split: Split | None = None) -> ExportSample:
        regions = (Region("scratch", (1, 1, 2, 2)),) if verdict == "NG" else ()
        return ExportSample(
            Path(f"{n}.png"), f"{n}.png", 10, 10, Annotation(verdict, regions), split=split
        )

    samples = [sample(n) for n in range(20)] + [sample(20 + n, "NG") for n in range(3)]
    samples.append(sample(99, "NG", split="test"))
    keys = [f"{n:064x}" for n in range(len(samples))]
    splits = assign_splits(samples, keys, seed=0)
    assert splits == assign_splits(samples, keys, seed=0)
    assert splits[-1] == "test"
    assert [splits[:20].count(s) for s in ("train", "val", "test")] == [14, 3, 3]
    # 3 NG: 2.1, 0.45, 0.45 -> 2, 0, 0, and the one left to the largest remainder (val first)
    assert [splits[20:23].count(s) for s in ("train", "val", "test")] == [2, 1, 0]
    one = assign_splits(samples[:1], keys[:1])
    assert one == ["train"]  # a stratum of one goes to training
    # another seed draws other samples for each split
    assert assign_splits(samples, keys, seed=1) != splits
    with pytest.raises(InputError, match="add up"):
        assign_splits(samples, keys, 0, {"train": 0.5, "val": 0.2, "test": 0.2})


def test_a_labelled_result_is_frozen_with_its_image(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    received = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    result = InspectionResult.model_validate(
        {
            "result_id": new_result_id(received),
            "verdict": "OK",
            "score": 0.2,
            "threshold": 0.5,
            "defects": [],
            "timings_ms": {"total": 5.0},
            "model": {"name": "m", "version": "v"},
            "station": "S1",
            "received_at": received,
        }
    )
    path = image_path(settings.images_dir, result.result_id, received, ".png")
    image(path, 200)
    store.save_result(result, images=[("image", str(path.relative_to(settings.images_dir)), 1)])
    unlabelled = new_result_id(received)
    store.save_result(result.model_copy(update={"result_id": unlabelled}), images=[])
    store.sample_for_result(unlabelled)  # a sample without a label is not frozen
    label = store.label_sample(
        store.sample_for_result(result.result_id),
        Annotation("NG", (Region("scratch", (10, 10, 20, 20)),)),
        "qa:alice",
    )
    assert label.overrides_model

    frozen = freeze_dataset(store, settings, "line-s1", "qa")

    manifest = read_manifest(Path(frozen.version.path))
    (entry,) = manifest["samples"]
    assert entry["source"] == "S1" and entry["verdict"] == "NG"
    assert (entry["width"], entry["height"]) == (100, 80)
    sample = store.sample(store.sample_for_result(result.result_id))
    assert sample.sha256 == entry["sha256"]  # learnt once, kept


@pytest.mark.parametrize("format", ["yolo", "voc", "masks", "coco"])
def test_a_version_exports_in_each_format(
    store: Store, settings: Settings, tmp_path: Path, format: str
) -> None:
    import_labels(store, settings, "coco", coco_folder(tmp_path / "b", ok=2, ng=3), "qa", True)
    frozen = freeze_dataset(store, settings, "parts", "qa")
    out = tmp_path / "out"
    assert export_version(store, settings, frozen.version.id[:6], format, out) == 5
    plan = read_labels(format, out)
    assert len(plan.items) == 5 and plan.skipped == []
    with pytest.raises(NotFound):
        export_version(store, settings, "ffffffffffff", format, tmp_path / "out2")


def test_nothing_to_freeze_and_bad_names_are_refused(store: Store, settings: Settings) -> None:
    with pytest.raises(InputError, match="nothing to freeze"):
        freeze_dataset(store, settings, "parts", "qa")
    with pytest.raises(InputError, match="dataset name"):
        freeze_dataset(store, settings, "../escape", "qa")
    assert not (settings.home / "datasets").exists() or not any(
        (settings.home / "datasets").rglob("manifest.json")
    )


def test_0005_turns_each_labelled_result_into_a_sample(tmp_path: Path) -> None:
    from sqlalchemy import text

    from defectlens.inference.store import open_database, upgrade
    from defectlens.inference.store.connect import make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0004")  # a store from before the label store, with two labels on a result
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO results (result_id, verdict, score, threshold, station, "
                    "received_at, model_name, model_version, timings_ms) VALUES ('R1', 'NG', "
                    "0.9, 0.5, 'S1', '2026-11-26 08:00:00+00:00', 'm', 'v', '{}')"
                )
            )
            for n, (label, replaces) in enumerate((("OK", None), ("NG", 1)), 1):
                connection.execute(
                    text(
                        "INSERT INTO labels (id, result_id, label, author, created_at, "
                        "overrides_label_id) VALUES (:id, 'R1', :label, 'alice', "
                        "'2026-11-26 09:00:00+00:00', :replaces)"
                    ),
                    {"id": n, "label": label, "replaces": replaces},
                )
    finally:
        engine.dispose()
    with open_database(url) as database:  # migrates to the head
        store = Store(database)
        (sample,) = store.list_samples()
        assert (sample.result_id, sample.source) == ("R1", "S1")
        assert sample.label is not None and sample.label.annotation.verdict == "NG"
        assert [label.id for label in store.label_history(sample.id)] == [1, 2]
