"""Mask folders, in and out: one PNG per image, its class by pixel value or by folder.

Layouts read::

    by value:   root/images/<name>.<ext>   root/masks/<name>.png (pixel value v = class v)
                root/classes.txt           line v names class v (line 1 = value 1; 0 is
                                           background), or a value map given to the reader
    by folder:  root/images/<name>.<ext>   root/masks/<class>/<name>.png (nonzero: defect)

Each connected patch of a class is one region: its box, and its own mask (a PNG of the
image's size, 255 on the patch) kept by sha256. An image without a mask, or with an empty
one, is an OK part. Written: the by-value layout (a box-only region is filled as its
polygon or box).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from defectlens.datasets.images import read_image
from defectlens.datasets.labels.export import ExportSample, export_classes, place, stem
from defectlens.datasets.labels.model import Annotation, Region
from defectlens.datasets.labels.plan import ImportPlan, SkipReason, sha256_of
from defectlens.datasets.layout import IMAGE_SUFFIXES
from defectlens.errors import DataError, InputError

MAX_CLASSES = 255


def read_mask_folder(root: Path, values: dict[int, str] | None = None) -> ImportPlan:
    """The import plan of a mask folder (module docstring). `values` maps pixel values to
    classes for the by-value layout (default: `classes.txt`). `DataError` without images/
    and masks/, or a by-value folder without a value map."""
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DataError(f"{root}: expected images/ and masks/ folders (mask folder layout)")
    class_folders = sorted(p for p in masks_dir.iterdir() if p.is_dir())
    plan = ImportPlan("masks", root)
    if class_folders:
        masks = {folder.name: {p.stem: p for p in folder.glob("*.png")} for folder in class_folders}
    else:
        value_map = values if values is not None else _value_map(root)
        masks = {"": {p.stem: p for p in masks_dir.glob("*.png")}}
    images = {
        p.stem: p
        for p in sorted(images_dir.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    }
    for folder_masks in masks.values():
        for name, orphan in sorted(folder_masks.items()):
            if name not in images:
                plan.skip(orphan, "", "image file missing", f"no image images/{name}.*")
    for name, image in images.items():
        where = f"images/{image.name}"
        size = plan.image_size(image, where, "")
        if size is None:
            continue
        regions: list[Region] = []
        found: dict[str, bytes] = {}
        try:
            for folder_name, folder_masks in masks.items():
                mask_file = folder_masks.get(name)
                if mask_file is None:
                    continue
                where = str(mask_file.relative_to(root))
                mask = _read_mask(mask_file, size)
                if folder_name:
                    regions += _patches(mask > 0, folder_name, found)
                else:
                    regions += _by_value(mask, value_map, found)
        except (InputError, _Unknown) as exc:
            reason: SkipReason = "unknown class" if isinstance(exc, _Unknown) else "malformed"
            plan.skip(where, "", reason, str(exc))
            continue
        annotation = Annotation("NG" if regions else "OK", tuple(regions))
        plan.add(image, annotation, where, size, masks=found)
    return plan


def value_mask(
    sample: ExportSample, classes: Sequence[str], read_mask: Callable[[str], bytes]
) -> npt.NDArray[np.uint8]:
    """One image's regions as a value mask (class `classes[v - 1]` where the value is v)."""
    out = np.zeros((sample.height, sample.width), np.uint8)
    for region in sample.annotation.regions:
        value = classes.index(region.defect_class) + 1
        out[_region_mask(region, sample, read_mask)] = value
    return out


def write_mask_folder(
    samples: Sequence[ExportSample],
    folder: Path,
    classes: Sequence[str],
    read_mask: Callable[[str], bytes],
) -> None:
    """The by-value layout of `samples` in `folder`: images linked, a mask per NG image,
    `classes.txt`. `InputError` beyond 255 classes."""
    names = export_classes(samples, classes)
    if len(names) > MAX_CLASSES:
        raise InputError(f"a mask folder holds at most {MAX_CLASSES} classes, not {len(names)}")
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for sample in samples:
        place(sample.image, folder / "images" / sample.name)
        if sample.annotation.regions:
            png = _png(value_mask(sample, names, read_mask))
            (folder / "masks" / f"{stem(sample.name)}.png").write_bytes(png)
    (folder / "classes.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


class _Unknown(ValueError):
    pass


def _value_map(root: Path) -> dict[int, str]:
    listing = root / "classes.txt"
    if not listing.is_file():
        raise DataError(
            f"{root}: masks/ holds PNGs by pixel value but there is no classes.txt (line v "
            "names the class of value v); add it, or give the value map"
        )
    names = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines()]
    return {value: name for value, name in enumerate(names, 1) if name}


def _read_mask(path: Path, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    mask = read_image(path)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    width, height = size
    if mask.shape != (height, width):
        raise DataError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its image {width}x{height}"
        )
    return mask


def _by_value(
    mask: npt.NDArray[np.uint8], values: dict[int, str], found: dict[str, bytes]
) -> list[Region]:
    present = [int(v) for v in np.unique(mask) if v != 0]
    unknown = [v for v in present if v not in values]
    if unknown:
        raise _Unknown(f"pixel values {unknown} have no class in the value map")
    return [r for v in present for r in _patches(mask == v, values[v], found)]


def _patches(mask: npt.NDArray[np.bool_], name: str, found: dict[str, bytes]) -> list[Region]:
    """One region per connected patch (8-connected), in scan order."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    regions = []
    for k in range(1, count):
        x, y, w, h = (int(v) for v in stats[k, :4])
        png = _png(np.where(labels == k, 255, 0).astype(np.uint8))
        digest = sha256_of(png)
        found[digest] = png
        regions.append(Region(name, (float(x), float(y), float(x + w), float(y + h)), None, digest))
    return regions


def _region_mask(
    region: Region, sample: ExportSample, read_mask: Callable[[str], bytes]
) -> npt.NDArray[np.bool_]:
    if region.mask_sha256 is not None:
        data = np.frombuffer(read_mask(region.mask_sha256), np.uint8)
        decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        if decoded is not None and decoded.shape == (sample.height, sample.width):
            result: npt.NDArray[np.bool_] = decoded > 0
            return result
    canvas = np.zeros((sample.height, sample.width), np.uint8)
    if region.polygon is not None:
        points = np.round(np.array(region.polygon)).astype(np.int32)
        cv2.fillPoly(canvas, [points], 1)
    else:
        x0, y0, x1, y1 = (round(v) for v in region.box)
        canvas[y0:y1, x0:x1] = 1
    filled: npt.NDArray[np.bool_] = canvas > 0
    return filled


def _png(mask: npt.NDArray[np.uint8]) -> bytes:
    ok, encoded = cv2.imencode(".png", mask)
    if not ok:
        raise DataError("could not encode a mask as PNG")
    return bytes(encoded.tobytes())
