"""YOLO detection labels, in and out: boxes only.

Layout read and written::

    root/images/[train|val|test/]<name>.<ext>
    root/labels/[train|val|test/]<name>.txt     one box a line: class cx cy w h (0..1)
    root/classes.txt                            one class name a line (line 1 = class 0)
    root/data.yaml                              or: names: [...] or {0: ..., 1: ...}

An image without a label file, or with an empty one, is an OK part; a subfolder named
train, val or test is the images' split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import yaml

from defectlens.datasets.labels.export import ExportSample, export_classes, place, stem
from defectlens.datasets.labels.model import SPLITS, Annotation, Region, Split
from defectlens.datasets.labels.plan import ImportPlan
from defectlens.datasets.layout import IMAGE_SUFFIXES
from defectlens.errors import DataError


def read_yolo(root: Path) -> ImportPlan:
    """The import plan of a YOLO folder (module docstring); `DataError` without images/ or
    a class list."""
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise DataError(f"{root}: expected images/ and labels/ folders (YOLO layout)")
    names = _class_names(root)
    plan = ImportPlan("yolo", root)
    images = {
        path.relative_to(images_dir).with_suffix(""): path
        for path in sorted(images_dir.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    }
    label_files = sorted(labels_dir.rglob("*.txt")) if labels_dir.is_dir() else []
    labelled = {path.relative_to(labels_dir).with_suffix(""): path for path in label_files}
    for key, orphan in labelled.items():
        if key not in images:
            plan.skip(orphan, "", "image file missing", f"no image images/{key}.*")
    for key, image in images.items():
        label_file = labelled.get(key)
        split = cast(Split, key.parts[0]) if key.parts[0] in SPLITS else None
        where = str(label_file.relative_to(root)) if label_file else f"images/{key}"
        size = plan.image_size(image, where, "")
        if size is None:
            continue
        regions = [] if label_file is None else _boxes(plan, label_file, names, size, where)
        if regions is None:
            continue
        annotation = Annotation("NG" if regions else "OK", tuple(regions))
        plan.add(image, annotation, where, size, split=split)
    return plan


def _boxes(
    plan: ImportPlan,
    label_file: Path,
    names: list[str],
    size: tuple[int, int],
    where: str,
) -> list[Region] | None:
    """The boxes of a label file in pixels, or None with the image skipped."""
    width, height = size
    regions = []
    try:
        lines = label_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        plan.skip(where, "", "malformed", f"cannot read it ({exc})")
        return None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            index = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except (ValueError, IndexError):
            plan.skip(where, str(number), "malformed", f"expected 'class cx cy w h', got {line!r}")
            return None
        if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            plan.skip(where, str(number), "malformed", f"not a box: {line!r}")
            return None
        if not 0 <= index < len(names):
            plan.skip(
                where,
                str(number),
                "unknown class",
                f"class {index} is not in the class list (0..{len(names) - 1})",
            )
            return None
        x0, y0 = (cx - w / 2) * width, (cy - h / 2) * height
        x1, y1 = (cx + w / 2) * width, (cy + h / 2) * height
        # Normalised coordinates come rounded; a box within half a pixel of the edge is in.
        if x0 < -0.5 or y0 < -0.5 or x1 > width + 0.5 or y1 > height + 0.5:
            plan.skip(
                where,
                str(number),
                "box outside image",
                f"{line!r} reaches outside the {width}x{height} image",
            )
            return None
        # Rounded to a millionth of a pixel: 0.55 * 100 is 55.00000000000001 in floats.
        box = (
            round(max(0.0, x0), 6),
            round(max(0.0, y0), 6),
            round(min(float(width), x1), 6),
            round(min(float(height), y1), 6),
        )
        regions.append(Region(names[index], box))
    return regions


def write_yolo(samples: Sequence[ExportSample], folder: Path, classes: Sequence[str] = ()) -> None:
    """The YOLO layout of `samples` in `folder`: images linked, a label file per image
    (empty for OK parts), `classes.txt` and `data.yaml`. Polygons and masks go as boxes."""
    names = export_classes(samples, classes)
    index = {name: number for number, name in enumerate(names)}
    for sample in samples:
        sub = f"{sample.split}/" if sample.split else ""
        place(sample.image, folder / "images" / f"{sub}{sample.name}")
        lines = []
        for region in sample.annotation.regions:
            x0, y0, x1, y1 = region.box
            values = (
                (x0 + x1) / 2 / sample.width,
                (y0 + y1) / 2 / sample.height,
                (x1 - x0) / sample.width,
                (y1 - y0) / sample.height,
            )
            lines.append(
                " ".join([str(index[region.defect_class]), *(f"{v:.10g}" for v in values)])
            )
        label = folder / "labels" / f"{sub}{stem(sample.name)}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    (folder / "classes.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    data: dict[str, Any] = {"path": ".", "names": dict(enumerate(names))}
    for split in SPLITS:
        if (folder / "images" / split).is_dir():
            data[split] = f"images/{split}"
    (folder / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _class_names(root: Path) -> list[str]:
    for name in ("classes.txt", "obj.names"):
        if (root / name).is_file():
            lines = (root / name).read_text(encoding="utf-8").splitlines()
            return [line.strip() for line in lines if line.strip()]
    data_file = root / "data.yaml"
    if data_file.is_file():
        try:
            data = yaml.safe_load(data_file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DataError(f"{data_file}: not readable YAML ({exc})") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, list):
            return [str(n) for n in names]
        if isinstance(names, dict) and all(isinstance(k, int) for k in names):
            if sorted(names) != list(range(len(names))):
                raise DataError(f"{data_file}: names: expected ids 0..{len(names) - 1}")
            return [str(names[k]) for k in sorted(names)]
        raise DataError(f"{data_file}: names: expected a list or a map of id to name")
    raise DataError(f"{root}: no class list: expected classes.txt, obj.names or data.yaml")
