"""The detection reader: DeepPCB's layout and a COCO file (with references), and bad
annotations named with their file and line or entry; the synthetic boards' boxes lie on
their defects."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectlens.datasets.deeppcb import CLASSES as DEEPPCB_CLASSES
from defectlens.datasets.detection import (
    is_detection_data,
    open_detection_dataset,
    seeded_split,
)
from defectlens.datasets.images import read_image
from defectlens.datasets.synthetic_pcb import TEMPLATE_NAME, write_pcb_dataset
from defectlens.errors import DataError


def deeppcb(root: Path, annotation: str = "10,20,40,50,1\n100 110 130 140 6\n") -> Path:
    folder, notes = root / "group1" / "1", root / "group1" / "1_not"
    folder.mkdir(parents=True)
    notes.mkdir()
    blank = np.zeros((64, 64), np.uint8)
    cv2.imwrite(str(folder / "1000_test.png"), blank)
    cv2.imwrite(str(folder / "1000_temp.png"), blank)
    (notes / "1000.txt").write_text(annotation)
    (root / "trainval.txt").write_text("group1/1/1000.png group1/1_not/1000.txt\n")
    return root


def test_deeppcb_layout(tmp_path: Path) -> None:
    data = open_detection_dataset(deeppcb(tmp_path))
    assert data.layout == "deeppcb" and data.classes == DEEPPCB_CLASSES
    (sample,) = data.samples
    assert sample.image.name == "1000_test.png" and sample.reference.name == "1000_temp.png"  # type: ignore[union-attr]
    assert sample.boxes.tolist() == [[10, 20, 40, 50], [100, 110, 130, 140]]
    assert sample.labels.tolist() == [0, 5]  # types 1 and 6: open, pin-hole
    assert data.counts() == {"images": 1, "open": 1, "pin-hole": 1} | {
        name: 0 for name in DEEPPCB_CLASSES[1:5]
    }
    # the list file itself works too (the official test split sits beside trainval)
    assert open_detection_dataset(tmp_path / "trainval.txt").samples[0].image == sample.image
    assert is_detection_data(tmp_path) and not is_detection_data(tmp_path / "group1")


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ("10,20,40\n", r"1000.txt:1: expected 'x1,y1,x2,y2,type'"),
        ("10,20,40,50,7\n", r"1000.txt:1: type 7 is not 1..6"),
        ("\n40,20,10,50,1\n", r"1000.txt:2: the box needs x2 > x1 and y2 > y1"),
    ],
)
def test_bad_deeppcb_lines_are_named(tmp_path: Path, annotation: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_detection_dataset(deeppcb(tmp_path, annotation))


def test_coco_file_with_references(tmp_path: Path) -> None:
    annotations = write_pcb_dataset(tmp_path / "boards", 6, size=96, seed=2, good=2)
    data = open_detection_dataset(annotations)
    assert data.layout == "coco" and data.classes == ("open", "short", "copper")
    assert len(data.samples) == 8 and data.has_references
    assert all(s.reference is not None and s.reference.name == TEMPLATE_NAME for s in data.samples)
    assert [len(s.labels) for s in data.samples[6:]] == [0, 0]  # the defect-free boards
    template = read_image(data.samples[0].reference)  # type: ignore[arg-type]
    for sample in data.samples[:6]:
        image = read_image(sample.image)
        changed = image != template
        covered = np.zeros_like(changed)
        for x0, y0, x1, y1 in sample.boxes.astype(int):
            covered[y0:y1, x0:x1] = True
        assert changed.any() and not (changed & ~covered).any()  # every change is boxed


def test_coco_problems_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    base = {
        "images": [{"id": 1, "file_name": "a.png"}],
        "categories": [{"id": 3, "name": "scratch"}],
    }
    cases = [
        (
            {"annotations": [{"image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5]}]},
            "category_id 4",
        ),
        ({"annotations": [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 0, 5]}]}, "no area"),
        ({"annotations": [{"image_id": 1, "category_id": 3}]}, r"annotations\[0\]: needs"),
        ({"annotations": [{"image_id": 9, "category_id": 3, "bbox": [0, 0, 5, 5]}]}, "ids \\[9\\]"),
        ({"images": [{"id": 1, "file_name": "b.png"}], "annotations": []}, "b.png not found"),
        ({"categories": []}, "'categories' is empty"),
    ]
    for change, message in cases:
        path = tmp_path / "coco.json"
        path.write_text(json.dumps(base | change))
        with pytest.raises(DataError, match=message):
            open_detection_dataset(path)


def test_seeded_split_is_repeatable_and_disjoint() -> None:
    first, rest = seeded_split(10, 0.2, seed=0)
    assert (first, rest) == seeded_split(10, 0.2, seed=0)
    assert len(first) == 2 and sorted(first + rest) == list(range(10))
    assert seeded_split(10, 0.2, seed=1) != (first, rest)


def test_a_dataset_versions_splits_are_used_when_every_image_has_one(tmp_path: Path) -> None:
    from defectlens.train.detector_pipeline import plan
    from defectlens.train.detector_recipe import DetectorRecipe

    annotations = write_pcb_dataset(tmp_path / "boards", 10, size=96, seed=2)
    coco = json.loads(annotations.read_text())
    for i, image in enumerate(coco["images"]):
        image["split"] = "train" if i < 6 else "val" if i < 8 else "test"
    annotations.write_text(json.dumps(coco))
    fit, validation, evaluation = plan(
        open_detection_dataset(annotations), DetectorRecipe(name="b")
    )
    assert [s.image.name for s in evaluation] == ["board_0008.png", "board_0009.png"]
    assert len(fit) == 6 and len(validation) == 2
    del coco["images"][0]["split"]  # one image without: the seeded split for all
    annotations.write_text(json.dumps(coco))
    fit, validation, evaluation = plan(
        open_detection_dataset(annotations), DetectorRecipe(name="b")
    )
    assert (len(fit), len(validation), len(evaluation)) == (7, 1, 2)
