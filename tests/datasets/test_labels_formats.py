"""Label formats read into import plans (with the skip report) and written back: COCO, YOLO,
Pascal VOC, mask folders and DeepPCB, on small files made here and a few real DeepPCB
boards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectlens.datasets.labels.deeppcb import read_deeppcb
from defectlens.datasets.labels.export import ExportSample
from defectlens.datasets.labels.formats import parse_mask_values, read_labels, write_labels
from defectlens.datasets.labels.model import Annotation, Region
from defectlens.datasets.labels.plan import ImportPlan
from defectlens.errors import DataError, InputError

# The benchmark data sits beside the repository (`../shared`), read in place.
DEEPPCB = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "deeppcb"


def image(path: Path, width: int = 100, height: int = 80, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), value, np.uint8)
    pixels[0, 0] = (value + 1) % 256  # a different file (and sha256) per value
    assert cv2.imwrite(str(path), pixels)
    return path


def by_name(plan: ImportPlan) -> dict[str, Annotation]:
    return {item.image.name: item.annotation for item in plan.items}


def reasons(plan: ImportPlan) -> list[tuple[str, str]]:
    return sorted((skip.file, skip.reason) for skip in plan.skipped)


def test_coco_boxes_polygons_and_what_is_skipped(tmp_path: Path) -> None:
    for n in range(1, 7):
        image(tmp_path / "images" / f"{n}.png", value=n)
    coco = {
        "images": [
            {"id": 1, "file_name": "1.png"},
            {"id": 2, "file_name": "images/2.png", "reference": "3.png"},
            {"id": 3, "file_name": "3.png"},  # no annotations: OK
            {"id": 4, "file_name": "4.png"},
            {"id": 5, "file_name": "5.png"},
            {"id": 6, "file_name": "6.png"},
            {"id": 7, "file_name": "missing.png"},
            {"id": 8, "file_name": "../../etc/passwd"},
            {"file_name": "no-id.png"},
        ],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 15]},
            {
                "image_id": 2,
                "category_id": 2,
                "bbox": [10, 10, 20, 20],
                "segmentation": [[10, 10, 30, 10, 20, 30]],
            },
            {"image_id": 4, "category_id": 1, "bbox": [90, 10, 20, 20]},  # x1 = 110 > 100
            {"image_id": 5, "category_id": 9, "bbox": [1, 1, 2, 2]},
            {"image_id": 6, "category_id": 1, "segmentation": {"counts": "abc", "size": [80, 100]}},
            {"image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2]},
            {"image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]},
        ],
        "categories": [{"id": 1, "name": "scratch"}, {"id": 2, "name": "dent"}],
    }
    (tmp_path / "labels.json").write_text(json.dumps(coco))

    plan = read_labels("coco", tmp_path)

    assert by_name(plan) == {
        "1.png": Annotation("NG", (Region("scratch", (10, 20, 40, 35)),)),
        "2.png": Annotation(
            "NG", (Region("dent", (10, 10, 30, 30), ((10, 10), (30, 10), (20, 30))),)
        ),
        "3.png": Annotation("OK"),
    }
    assert plan.items[1].reference == tmp_path / "images" / "3.png"
    skipped = {(s.where, s.reason) for s in plan.skipped}
    assert skipped == {
        ("images[3]", "box outside image"),
        ("annotations[3]", "unknown class"),
        ("annotations[4]", "unsupported"),
        ("images[6]", "image file missing"),
        ("images[7]", "malformed"),  # outside the import's folder
        ("images[8]", "malformed"),
        ("annotations[6]", "image file missing"),
    }
    report = plan.report()
    assert (report.images, report.regions, report.skipped) == (3, 2, 7)
    assert report.skipped_by_reason["malformed"] == 2
    assert any("RLE" in line for line in report.skipped_lines)


def test_coco_that_is_not_coco_is_refused_whole(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(DataError, match=r"a\.json: not a readable JSON"):
        read_labels("coco", tmp_path)
    (tmp_path / "a.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match="'images' list"):
        read_labels("coco", tmp_path / "a.json")


def test_yolo_boxes_splits_and_skips(tmp_path: Path) -> None:
    image(tmp_path / "images" / "train" / "a.png", value=1)
    image(tmp_path / "images" / "val" / "b.png", value=2)
    image(tmp_path / "images" / "c.png", value=3)  # no label file: OK
    image(tmp_path / "images" / "d.png", value=4)
    image(tmp_path / "images" / "e.png", value=5)
    (tmp_path / "images" / "f.png").write_bytes(b"not an image")
    labels = tmp_path / "labels"
    (labels / "train").mkdir(parents=True)
    (labels / "val").mkdir()
    (labels / "train" / "a.txt").write_text("0 0.25 0.5 0.2 0.25\n")
    (labels / "val" / "b.txt").write_text("1 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.5 0.5\n")
    (labels / "d.txt").write_text("0 0.95 0.5 0.2 0.2\n")  # reaches x = 105
    (labels / "e.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    (labels / "f.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (labels / "g.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (labels / "c2.txt").write_text("zero 0.5 0.5\n")
    image(tmp_path / "images" / "c2.png", value=6)
    (tmp_path / "data.yaml").write_text("names: {0: scratch, 1: dent}\n")

    plan = read_labels("yolo", tmp_path)

    assert by_name(plan) == {
        "a.png": Annotation("NG", (Region("scratch", (15, 30, 35, 50)),)),
        "b.png": Annotation(
            "NG", (Region("dent", (45, 36, 55, 44)), Region("scratch", (25, 20, 75, 60)))
        ),
        "c.png": Annotation("OK"),
    }
    assert [item.split for item in plan.items] == [None, "train", "val"]  # c, train/a, val/b
    assert reasons(plan) == [
        ("labels/c2.txt", "malformed"),
        ("labels/d.txt", "box outside image"),
        ("labels/e.txt", "unknown class"),
        ("labels/f.txt", "unreadable image"),
        ("labels/g.txt", "image file missing"),
    ]


def test_voc_boxes_are_one_based_and_bad_files_skipped(tmp_path: Path) -> None:
    image(tmp_path / "JPEGImages" / "a.png", value=1)
    image(tmp_path / "JPEGImages" / "b.png", value=2)
    image(tmp_path / "JPEGImages" / "c.png", value=3)
    (tmp_path / "Annotations").mkdir()
    box = "<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>35</ymax></bndbox>"
    (tmp_path / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>a.png</filename><object><name>scratch</name>{box}</object>"
        "</annotation>"
    )
    (tmp_path / "Annotations" / "b.xml").write_text("<annotation><filename>b.png</filename>")
    (tmp_path / "Annotations" / "c.xml").write_text(
        "<annotation><filename>c.png</filename><object><name>dent</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>120</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    (tmp_path / "Annotations" / "d.xml").write_text(
        "<annotation><filename>d.png</filename></annotation>"
    )
    plan = read_labels("voc", tmp_path)
    assert by_name(plan) == {"a.png": Annotation("NG", (Region("scratch", (10, 20, 40, 35)),))}
    assert reasons(plan) == [
        ("Annotations/b.xml", "malformed"),
        ("Annotations/c.xml", "box outside image"),
        ("Annotations/d.xml", "image file missing"),
    ]


def mask_folder(root: Path) -> None:
    image(root / "images" / "a.png", value=1)
    image(root / "images" / "b.png", value=2)
    image(root / "images" / "c.png", value=3)
    mask = np.zeros((80, 100), np.uint8)
    mask[10:20, 5:25] = 1  # a scratch patch
    mask[50:60, 70:90] = 1  # another one
    mask[30:40, 40:45] = 2  # a dent
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    cv2.imwrite(str(root / "masks" / "b.png"), np.zeros((80, 100), np.uint8))  # OK
    cv2.imwrite(str(root / "masks" / "c.png"), np.full((80, 100), 7, np.uint8))


def test_mask_folder_by_value_makes_a_region_per_patch(tmp_path: Path) -> None:
    mask_folder(tmp_path)
    (tmp_path / "classes.txt").write_text("scratch\ndent\n")
    plan = read_labels("masks", tmp_path)
    found = by_name(plan)
    assert found["b.png"] == Annotation("OK")
    regions = found["a.png"].regions
    assert [(r.defect_class, r.box) for r in regions] == [
        ("scratch", (5, 10, 25, 20)),
        ("scratch", (70, 50, 90, 60)),
        ("dent", (40, 30, 45, 40)),
    ]
    item = next(i for i in plan.items if i.image.name == "a.png")
    assert set(item.masks) == {r.mask_sha256 for r in regions}
    decoded = cv2.imdecode(np.frombuffer(item.masks[regions[2].mask_sha256 or ""], np.uint8), 0)
    assert int((decoded > 0).sum()) == 50
    assert reasons(plan) == [("masks/c.png", "unknown class")]
    with_map = read_labels("masks", tmp_path, parse_mask_values("1=scratch,2=dent,7=stain"))
    assert len(with_map.items) == 3


def test_mask_folder_by_class_folder(tmp_path: Path) -> None:
    image(tmp_path / "images" / "a.png")
    (tmp_path / "masks" / "scratch").mkdir(parents=True)
    mask = np.zeros((80, 100), np.uint8)
    mask[1:3, 1:4] = 255
    cv2.imwrite(str(tmp_path / "masks" / "scratch" / "a.png"), mask)
    cv2.imwrite(str(tmp_path / "masks" / "scratch" / "z.png"), mask)  # no image z
    cv2.imwrite(str(tmp_path / "masks" / "scratch" / "a2.png"), mask)
    plan = read_labels("masks", tmp_path)
    assert [(r.defect_class, r.box) for r in by_name(plan)["a.png"].regions] == [
        ("scratch", (1, 1, 4, 3))
    ]
    assert [reason for _, reason in reasons(plan)] == ["image file missing"] * 2
    with pytest.raises(InputError, match="VALUE=CLASS"):
        parse_mask_values("1:scratch")


def deeppcb_sample(root: Path, boards: int = 3) -> list[str]:
    """The first `boards` boards of the real DeepPCB list, copied (read-only source)."""
    lines = (DEEPPCB / "trainval.txt").read_text().splitlines()[:boards]
    for line in lines:
        listed, annotation = line.split()
        for name in (annotation, *_board_files(listed)):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DEEPPCB / name, root / name)
    (root / "trainval.txt").write_text("\n".join(lines) + "\n")
    return lines


def _board_files(listed: str) -> list[str]:
    stem, suffix = listed.rsplit(".", 1)
    return [f"{stem}_test.{suffix}", f"{stem}_temp.{suffix}"]


@pytest.mark.skipif(not DEEPPCB.is_dir(), reason="the DeepPCB sample is not on this machine")
def test_deeppcb_boards_with_their_templates(tmp_path: Path) -> None:
    lines = deeppcb_sample(tmp_path, boards=4)
    first_annotation = (DEEPPCB / lines[0].split()[1]).read_text().splitlines()
    (tmp_path / "test.txt").write_text(lines[3] + "\nbad line with three\n")
    plan = read_deeppcb(tmp_path)
    assert len(plan.items) == 5  # 4 boards listed for training, 1 of them again for test
    first = plan.items[0]
    assert first.image.name.endswith("_test.png") and first.reference is not None
    assert first.reference.name.endswith("_temp.png")
    assert (first.width, first.height) == (640, 640)
    assert len(first.annotation.regions) == len(first_annotation)
    x0, y0, x1, y1, kind = (int(v) for v in first_annotation[0].split())
    assert first.annotation.regions[0].box == (x0, y0, x1, y1)
    assert (
        first.annotation.regions[0].defect_class
        == ("open", "short", "mousebite", "spur", "copper", "pin-hole")[kind - 1]
    )
    assert plan.items[-1].split == "test"
    assert reasons(plan) == [("test.txt", "malformed")]


def test_deeppcb_lines_that_cannot_be_read_are_skipped_with_the_reason(tmp_path: Path) -> None:
    annotations = {1: "10,20,40,50,2", 2: "10 20 40 50 9", 3: "40,20,10,50,1", 4: "10,20,40"}
    for n, annotation in annotations.items():
        image(tmp_path / "g" / "0" / f"{n}_test.jpg", value=n)  # listed as .png
        image(tmp_path / "g" / "0" / f"{n}_temp.jpg", value=n + 10)
        (tmp_path / "g" / "0_not").mkdir(exist_ok=True)
        (tmp_path / "g" / "0_not" / f"{n}.txt").write_text(annotation + "\n")
    (tmp_path / "trainval.txt").write_text(
        "".join(f"g/0/{n}.png g/0_not/{n}.txt\n" for n in annotations)
    )
    plan = read_deeppcb(tmp_path)
    assert [item.image.name for item in plan.items] == ["1_test.jpg"]
    assert plan.items[0].annotation.regions == (Region("short", (10, 20, 40, 50)),)
    assert reasons(plan) == [
        ("g/0_not/2.txt:1", "unknown class"),
        ("g/0_not/3.txt:1", "malformed"),
        ("g/0_not/4.txt:1", "malformed"),
    ]


def export_samples(tmp_path: Path) -> list[ExportSample]:
    a = image(tmp_path / "src" / "a.png", value=1)
    b = image(tmp_path / "src" / "b.png", value=2)
    c = image(tmp_path / "src" / "c.png", value=3)
    return [
        ExportSample(a, "a.png", 100, 80, Annotation("OK"), split="train"),
        ExportSample(
            b,
            "b.png",
            100,
            80,
            Annotation(
                "NG",
                (
                    Region("scratch", (10, 20, 40, 35)),
                    Region("dent", (50, 10, 70, 30), ((50, 10), (70, 10), (70, 30), (50, 30))),
                ),
            ),
            split="val",
        ),
        ExportSample(c, "c.png", 100, 80, Annotation("NG", (Region("dent", (1, 2, 99, 79)),))),
    ]


def no_masks(digest: str) -> bytes:
    raise AssertionError(f"no mask expected, asked for {digest}")


@pytest.mark.parametrize("format", ["coco", "yolo", "voc", "masks"])
def test_export_then_import_gives_the_same_labels(tmp_path: Path, format: str) -> None:
    samples = export_samples(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    write_labels(format, samples, out, ["scratch", "dent"], no_masks)

    plan = read_labels(format, out)

    assert plan.skipped == []
    found = by_name(plan)
    # A polygon filled into a mask covers its edge pixels: its box grows by up to a pixel.
    tolerance = 1.0 if format == "masks" else 1e-6
    for sample in samples:
        got = found[sample.name]
        assert got.verdict == sample.annotation.verdict
        expected = sorted((r.defect_class, r.box) for r in sample.annotation.regions)
        regions = sorted((r.defect_class, r.box) for r in got.regions)
        assert [name for name, _ in regions] == [name for name, _ in expected]
        for (_, box), (_, want) in zip(regions, expected, strict=True):
            assert box == pytest.approx(want, abs=tolerance)
    if format == "coco":  # polygons and splits go through COCO too
        assert found["b.png"] == samples[1].annotation
        assert [item.split for item in plan.items] == ["train", "val", None]
    if format in ("yolo", "voc"):
        assert {item.image.name: item.split for item in plan.items}["b.png"] == "val"
