"""Reading dataset folders: the MVTec layout, class folders, and the errors a QA engineer sees."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from defectlens.datasets.images import read_image, read_mask
from defectlens.datasets.layout import (
    Sample,
    open_dataset,
    read_class_folders,
    read_mvtec,
)
from defectlens.datasets.synthetic import DEFECT_KINDS, generate_dataset
from defectlens.errors import DataError


def write_png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8), value, np.uint8))
    return path


@pytest.fixture(scope="module")
def mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "plates"
    return generate_dataset(root, train_good=5, test_good=3, test_defect_per_kind=2, size=64)


def test_mvtec_counts_and_order(mvtec_root: Path) -> None:
    dataset = open_dataset(mvtec_root)
    assert dataset.layout == "mvtec"
    assert dataset.root == mvtec_root
    expected = {"train_good": 5, "good": 3} | {kind: 2 for kind in DEFECT_KINDS}
    assert dataset.counts() == expected
    assert [s.path.name for s in dataset.train] == [f"{i:03d}.png" for i in range(5)]
    assert all(not s.is_defective and s.mask_path is None for s in dataset.train)
    assert read_mvtec(mvtec_root) == dataset


def test_mvtec_masks_are_paired_with_their_images(mvtec_root: Path) -> None:
    dataset = read_mvtec(mvtec_root)
    for sample in dataset.test:
        if not sample.is_defective:
            assert sample.mask_path is None
            continue
        assert sample.mask_path is not None
        assert sample.mask_path == (
            mvtec_root / "ground_truth" / sample.defect_type / f"{sample.path.stem}_mask.png"
        )
        image = read_image(sample.path)
        assert read_mask(sample.mask_path, image.shape[:2]).any()


def test_mvtec_skips_hidden_files_masks_and_other_files(tmp_path: Path) -> None:
    root = tmp_path / "bracket"
    write_png(root / "train" / "good" / "a.png")
    write_png(root / "train" / "good" / "B.PNG")
    write_png(root / "train" / "good" / ".c.png")
    (root / "train" / "good" / "notes.txt").write_text("camera 2")
    write_png(root / "test" / "dent" / "001.jpg")
    write_png(root / "test" / "dent" / "001_mask.png")  # a mask misplaced among images
    write_png(root / "test" / "dent" / "002.tif")
    write_png(root / "ground_truth" / "dent" / "002_mask.png", 255)
    write_png(root / "test" / ".cache" / "x.png")

    dataset = open_dataset(root)

    assert [s.path.name for s in dataset.train] == ["B.PNG", "a.png"]
    assert dataset.test == [
        Sample(root / "test" / "dent" / "001.jpg", "dent", None),
        Sample(root / "test" / "dent" / "002.tif", "dent", root / "ground_truth/dent/002_mask.png"),
    ]
    assert dataset.counts() == {"train_good": 2, "dent": 2}


def test_class_folders(tmp_path: Path) -> None:
    root = tmp_path / "line3"
    for name in ("p1.png", "p2.png"):
        write_png(root / "OK" / name)
    write_png(root / "good" / "p3.bmp")
    write_png(root / "scratch" / "s1.jpg")
    write_png(root / "burr" / "b1.png")

    dataset = open_dataset(root)

    assert dataset.layout == "folders"
    assert dataset.train == []
    assert dataset.counts() == {"train_good": 0, "burr": 1, "good": 3, "scratch": 1}
    assert [s.defect_type for s in dataset.test] == ["good", "good", "good", "burr", "scratch"]
    assert all(s.mask_path is None for s in dataset.test)
    assert read_class_folders(root) == dataset


def test_class_folders_without_good_images(tmp_path: Path) -> None:
    write_png(tmp_path / "scratch" / "s1.png")
    with pytest.raises(DataError, match=r"no good/ \(or ok/\) folder among scratch") as caught:
        open_dataset(tmp_path)
    assert str(tmp_path) in str(caught.value)
    write_png(tmp_path / "loose.png")
    with pytest.raises(DataError, match=r"1 image lies directly in the folder: move good ones"):
        open_dataset(tmp_path)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as caught:
        open_dataset(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(caught.value)


def test_root_is_a_file(tmp_path: Path) -> None:
    path = write_png(tmp_path / "one.png")
    with pytest.raises(DataError, match="is a file, not a folder"):
        open_dataset(path)


def test_empty_root_says_which_layouts_are_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images and no folders inside") as caught:
        open_dataset(tmp_path)
    for layout in ("MVTec layout", "one folder per class", "a folder of good images"):
        assert layout in str(caught.value)


def test_flat_folder_of_good_images(tmp_path: Path) -> None:
    """A plant with no defects collected yet: images directly in the folder are good parts."""
    for name in ("b.png", "a.jpg", "C.TIF", "a_mask.png", ".hidden.png"):
        write_png(tmp_path / "cells" / name)
    (tmp_path / "cells" / "notes.txt").write_text("camera 2")

    dataset = open_dataset(tmp_path / "cells")

    assert dataset.layout == "flat" and dataset.pooled
    assert dataset.description == "a folder of good images"
    assert [s.path.name for s in dataset.test] == ["C.TIF", "a.jpg", "b.png"]
    assert all(not s.is_defective for s in dataset.test) and dataset.train == []


def test_test_only_mvtec_folder_is_not_read_as_class_folders(tmp_path: Path) -> None:
    """A new batch of labeled parts with masks: test/ and ground_truth/, no train/."""
    root = tmp_path / "batch7"
    write_png(root / "test" / "good" / "g1.png")
    write_png(root / "test" / "crack" / "c1.png")
    write_png(root / "ground_truth" / "crack" / "c1_mask.png", 255)

    dataset = open_dataset(root)

    assert dataset.layout == "mvtec" and dataset.description == "MVTec layout, test only"
    assert dataset.train == []
    assert dataset.test == [
        Sample(
            root / "test" / "crack" / "c1.png", "crack", root / "ground_truth/crack/c1_mask.png"
        ),
        Sample(root / "test" / "good" / "g1.png", "good"),
    ]


def test_class_folders_say_which_images_they_leave_out(tmp_path: Path) -> None:
    write_png(tmp_path / "good" / "a.png")
    write_png(tmp_path / "stray.png")
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "folders"
    assert [s.path.name for s in dataset.test] == ["a.png"]
    assert len(dataset.notes) == 1 and "1 image lies directly in" in dataset.notes[0]


def test_train_without_good(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "ok" / "a.png")
    with pytest.raises(DataError, match=r"has train/ but no train/good/; expected the MVTec"):
        open_dataset(tmp_path)


def test_empty_training_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="no images") as caught:
        open_dataset(tmp_path)
    assert str(tmp_path / "train" / "good") in str(caught.value)


def test_defect_folder_without_images_is_named(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "good" / "a.png")
    (tmp_path / "test" / "crack").mkdir(parents=True)
    (tmp_path / "test" / "crack" / "readme.txt").write_text("to do")
    with pytest.raises(DataError, match="no images") as caught:
        open_dataset(tmp_path)
    assert str(tmp_path / "test" / "crack") in str(caught.value)
