"""Which images fit, calibrate and evaluate, per layout; and the record of training images."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from defectlens.datasets.layout import Dataset, Layout, Sample
from defectlens.errors import ModelError
from defectlens.train.splits import (
    TRAINING_IMAGES_FILE,
    plan_splits,
    read_training_images,
    without_copies_of_fit,
    write_training_images,
)

ROOT = Path("/data/cells")


def good(count: int, folder: str = "good") -> list[Sample]:
    return [Sample(ROOT / folder / f"{i:03d}.png", "good") for i in range(count)]


def defective(kind: str, count: int) -> list[Sample]:
    return [Sample(ROOT / kind / f"{i:03d}.png", kind) for i in range(count)]


def counts(dataset: Dataset) -> dict[str, int]:
    splits = plan_splits(dataset, validation_fraction=0.3, good_holdout=0.1, seed=0)
    assert not {s.path for s in splits.fit} & {s.path for s in splits.calibration}
    assert not {s.path for s in splits.fit} & {s.path for s in splits.evaluation}
    return splits.counts()


@pytest.mark.parametrize(
    ("layout", "train", "test", "expected"),
    [
        # MVTec: 100 train/good: 10 calibrate, 90 fit; test/good 20 and scratch 10: 30 %
        # calibrate, 70 % evaluate
        ("mvtec", good(100, "train"), good(20) + defective("scratch", 10), (90, 16, 3, 14, 7)),
        # class folders: 100 good pooled: 80 training images (8 calibrate, 72 fit), the other
        # 20 held out as test/good would be (6 calibrate, 14 evaluate); scratch 3 and 7
        ("folders", [], good(100) + defective("scratch", 10), (72, 14, 3, 14, 7)),
        # a flat folder of good images: as the good images of class folders
        ("flat", [], good(100), (72, 14, 0, 14, 0)),
        # a test-only MVTec folder, trained on: pooled as class folders
        ("mvtec", [], good(100) + defective("scratch", 10), (72, 14, 3, 14, 7)),
    ],
)
def test_split_per_layout(
    layout: Layout, train: list[Sample], test: list[Sample], expected: tuple[int, ...]
) -> None:
    dataset = Dataset(ROOT, layout, train=train, test=test)
    assert tuple(counts(dataset).values()) == expected


def test_the_rule_is_said_in_words() -> None:
    mvtec = plan_splits(
        Dataset(ROOT, "mvtec", train=good(10, "train"), test=good(4)),
        validation_fraction=0.3,
        good_holdout=0.1,
        seed=0,
    )
    assert mvtec.rule == (
        "MVTec layout: train/good: 90 % fit, 10 % calibrate; each test/ folder: 30 % "
        "calibrate, 70 % evaluate"
    )
    folders = plan_splits(
        Dataset(ROOT, "folders", test=good(10) + defective("dent", 4)),
        validation_fraction=0.3,
        good_holdout=0.1,
        seed=0,
    )
    assert folders.rule == (
        "one folder per class: 80 % of the good images are training images (90 % of those "
        "fit, 10 % calibrate); the other 20 % and each defect type: 30 % calibrate, 70 % "
        "evaluate"
    )
    header, fit, calibrate, evaluate = folders.table()
    assert header.split() == ["images", "good", "defective", "used", "to"]
    assert fit.split()[:4] == ["fit", "7", "7", "0"]
    # 10 good: 8 training images (1 calibrates, 7 fit), 2 held out (1 calibrates, 1
    # evaluates); 4 dent: 1 calibrates, 3 evaluate
    assert calibrate.split()[:4] == ["calibrate", "3", "2", "1"]
    assert evaluate.split() == ["evaluate", "4", "1", "3", "measure", "the", "model:", "dent", "3"]


def test_copies_of_fit_images_are_left_out_of_the_held_out_images() -> None:
    dataset = Dataset(ROOT, "flat", test=good(20))
    splits = plan_splits(dataset, validation_fraction=0.3, good_holdout=0.1, seed=0)
    sha = {s.path: f"{i:064x}" for i, s in enumerate(dataset.test)}
    copied = splits.evaluation[0].path
    sha[copied] = sha[splits.fit[0].path]  # the same file under another name
    fresh, dropped = without_copies_of_fit(splits, sha)
    assert dropped == 1 and copied not in {s.path for s in fresh.evaluation}
    assert fresh.fit == splits.fit and fresh.rule == splits.rule


def test_training_images_record_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "data"
    samples = [Sample(root / "good" / f"{i}.png", "good") for i in range(12)]
    for sample in samples:
        sample.path.parent.mkdir(parents=True, exist_ok=True)
        sample.path.write_bytes(f"image {sample.path.name}".encode())
    sha = {s.path: hashlib.sha256(s.path.read_bytes()).hexdigest() for s in samples}
    splits = plan_splits(
        Dataset(root, "flat", test=samples), validation_fraction=0.3, good_holdout=0.1, seed=0
    )

    write_training_images(tmp_path, splits, sha, root)
    record = read_training_images(tmp_path)

    assert record is not None
    assert record.fit == {sha[s.path]: f"good/{s.path.name}" for s in splits.fit}
    assert record.calibration == {sha[s.path]: f"good/{s.path.name}" for s in splits.calibration}
    assert read_training_images(tmp_path / "older-version") is None
    (tmp_path / TRAINING_IMAGES_FILE).write_text("abc\tfit\tgood/1.png\n")
    with pytest.raises(ModelError, match="line 1 is not sha256"):
        read_training_images(tmp_path)
