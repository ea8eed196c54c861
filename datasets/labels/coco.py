"""COCO detection JSON, in and out: boxes and polygons (`segmentation` as point lists).

Read: `images[]` (`id`, `file_name` relative to the JSON file's folder or its `images/`
subfolder, optional `reference`: the aligned template, resolved the same way, optional
`split`), `annotations[]` (`image_id`, `category_id`, `bbox` [x, y, width, height],
optional `segmentation` polygons), `categories[]` (`id`, `name`). An image without
annotations is an OK part. RLE masks (`segmentation` as a dict, or `iscrowd: 1`) are refused
with a reason: convert them to polygons or a mask folder.

Written: `annotations.json` beside `images/` (and `references/`), the same fields; this is
what the detector's trainer reads (`defectlens.datasets.detection`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from defectlens.datasets.labels.export import ExportSample, export_classes, place
from defectlens.datasets.labels.model import Annotation, Region, Verdict, polygon_box
from defectlens.datasets.labels.plan import ImportPlan, SkipReason
from defectlens.errors import DataError

FILE_NAME = "annotations.json"


def read_coco(path: Path) -> ImportPlan:
    """The import plan of a COCO JSON file, or of the one JSON file in a folder. `DataError`
    if the file cannot be read as COCO at all; single bad images and annotations are skipped
    with their reason."""
    json_file = _json_file(path)
    plan = ImportPlan("coco", json_file.parent)
    name = json_file.name
    try:
        data = json.loads(json_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{json_file}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{json_file}: expected a COCO object with an 'images' list")
    categories = _categories(data.get("categories", []), json_file)
    by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for index, entry in enumerate(data.get("annotations") or []):
        if not isinstance(entry, dict) or "image_id" not in entry:
            plan.skip(name, f"annotations[{index}]", "malformed", "needs an image_id")
            continue
        by_image[entry["image_id"]].append((index, entry))
    seen: set[Any] = set()
    for index, entry in enumerate(data["images"]):
        where = f"images[{index}]"
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            plan.skip(name, where, "malformed", "an image needs id and file_name")
            continue
        seen.add(entry["id"])
        image = _resolve(json_file, str(entry["file_name"]))
        reference = _resolve(json_file, str(entry["reference"])) if entry.get("reference") else None
        split = entry.get("split") if entry.get("split") in ("train", "val", "test") else None
        try:
            regions = [
                region
                for at, annotation in by_image.get(entry["id"], [])
                for region in _regions(annotation, categories, f"annotations[{at}]")
            ]
        except _Skipped as skipped:
            plan.skip(name, skipped.where, skipped.reason, skipped.detail)
            continue
        verdict: Verdict = "NG" if regions else "OK"
        plan.add(
            image, Annotation(verdict, tuple(regions)), f"{name}:{where}", None, reference, split
        )
    for image_id, entries in by_image.items():
        if image_id not in seen:
            for at, _ in entries:
                plan.skip(name, f"annotations[{at}]", "image file missing", f"no image {image_id}")
    return plan


def coco_json(samples: Sequence[ExportSample], classes: Sequence[str] = ()) -> dict[str, Any]:
    """The COCO object of `samples`: images as `images/<name>`, templates as
    `references/<name>`; category ids from 1 in class order."""
    names = export_classes(samples, classes)
    ids = {name: number for number, name in enumerate(names, 1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for number, sample in enumerate(samples, 1):
        image: dict[str, Any] = {
            "id": number,
            "file_name": f"images/{sample.name}",
            "width": sample.width,
            "height": sample.height,
        }
        if sample.reference is not None:
            image["reference"] = f"references/{sample.name}"
        if sample.split is not None:
            image["split"] = sample.split
        images.append(image)
        for region in sample.annotation.regions:
            x0, y0, x1, y1 = region.box
            annotation: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": number,
                "category_id": ids[region.defect_class],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
            if region.polygon is not None:
                annotation["segmentation"] = [[v for point in region.polygon for v in point]]
            annotations.append(annotation)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": ids[name], "name": name} for name in names],
    }


def write_coco(samples: Sequence[ExportSample], folder: Path, classes: Sequence[str] = ()) -> None:
    """`annotations.json`, `images/` and `references/` in `folder` (images linked)."""
    for sample in samples:
        place(sample.image, folder / "images" / sample.name)
        if sample.reference is not None:
            place(sample.reference, folder / "references" / sample.name)
    text = json.dumps(coco_json(samples, classes), indent=1)
    (folder / FILE_NAME).write_text(text, encoding="utf-8")


class _Skipped(Exception):
    def __init__(self, where: str, reason: SkipReason, detail: str) -> None:
        super().__init__(detail)
        self.where, self.reason, self.detail = where, reason, detail


def _regions(entry: dict[str, Any], categories: dict[Any, str], where: str) -> list[Region]:
    if entry.get("iscrowd") or isinstance(entry.get("segmentation"), dict):
        raise _Skipped(
            where,
            "unsupported",
            "RLE masks are not imported; convert them to polygons, or export them as a "
            "mask folder and import that",
        )
    category = entry.get("category_id")
    if category not in categories:
        raise _Skipped(where, "unknown class", f"category_id {category!r} is not in categories")
    name = categories[category]
    bbox = entry.get("bbox")
    polygons = entry.get("segmentation") or []
    if not isinstance(polygons, list) or not all(
        isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and _numbers(p) for p in polygons
    ):
        raise _Skipped(where, "malformed", "segmentation: expected lists of x, y numbers")
    points = [tuple(zip(p[0::2], p[1::2], strict=True)) for p in polygons]
    if isinstance(bbox, list) and len(bbox) == 4 and _numbers(bbox):
        x, y, w, h = (float(v) for v in bbox)
        box = (x, y, x + w, y + h)
    elif points:
        box = polygon_box(points[0])
    else:
        raise _Skipped(where, "malformed", f"bbox: expected [x, y, width, height], got {bbox!r}")
    if len(points) <= 1:
        return [Region(name, box, points[0] if points else None)]
    return [Region(name, polygon_box(polygon), polygon) for polygon in points]


def _numbers(values: list[Any]) -> bool:
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def _categories(entries: Any, json_file: Path) -> dict[Any, str]:
    if not isinstance(entries, list):
        raise DataError(f"{json_file}: categories: expected a list of {{id, name}}")
    found = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry or not entry.get("name"):
            raise DataError(f"{json_file}: categories[{index}]: needs id and name")
        found[entry["id"]] = str(entry["name"])
    return found


def _json_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) == 1:
            return found[0]
        if (path / FILE_NAME).is_file():
            return path / FILE_NAME
        raise DataError(
            f"{path}: expected one COCO .json file in the folder, found {len(found)}; name the file"
        )
    raise DataError(f"{path}: not found")


def _resolve(json_file: Path, name: str) -> Path:
    direct = json_file.parent / name
    if direct.is_file():
        return direct
    return json_file.parent / "images" / name
