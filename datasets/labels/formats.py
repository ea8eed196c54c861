"""The label formats by name: the readers an import chooses from and the writers an export
chooses from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

from defectlens.datasets.labels.coco import read_coco, write_coco
from defectlens.datasets.labels.deeppcb import read_deeppcb
from defectlens.datasets.labels.export import ExportSample, MaskReader
from defectlens.datasets.labels.masks import read_mask_folder, write_mask_folder
from defectlens.datasets.labels.plan import ImportPlan
from defectlens.datasets.labels.voc import read_voc, write_voc
from defectlens.datasets.labels.yolo import read_yolo, write_yolo
from defectlens.errors import InputError

ImportFormat = Literal["coco", "yolo", "voc", "masks", "deeppcb"]
ExportFormat = Literal["coco", "yolo", "voc", "masks"]
IMPORT_FORMATS: tuple[ImportFormat, ...] = get_args(ImportFormat)
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)


def read_labels(format: str, path: Path, mask_values: dict[int, str] | None = None) -> ImportPlan:
    """The import plan of `path` in `format` (nothing is written). `mask_values`: the pixel
    value → class map of a by-value mask folder (default: its classes.txt)."""
    if not path.exists():
        raise InputError(f"{path}: not found; give the folder (or COCO file) to import")
    if format == "coco":
        return read_coco(path)
    if format == "yolo":
        return read_yolo(path)
    if format == "voc":
        return read_voc(path)
    if format == "masks":
        return read_mask_folder(path, mask_values)
    if format == "deeppcb":
        return read_deeppcb(path)
    raise InputError(f"label format {format!r}: expected one of {', '.join(IMPORT_FORMATS)}")


def write_labels(
    format: str,
    samples: Sequence[ExportSample],
    folder: Path,
    classes: Sequence[str],
    read_mask: MaskReader,
) -> None:
    """Write `samples` in `format` into the (empty) `folder`, images linked or copied."""
    if format == "coco":
        write_coco(samples, folder, classes)
    elif format == "yolo":
        write_yolo(samples, folder, classes)
    elif format == "voc":
        write_voc(samples, folder, classes)
    elif format == "masks":
        write_mask_folder(samples, folder, classes, read_mask)
    else:
        raise InputError(f"export format {format!r}: expected one of {', '.join(EXPORT_FORMATS)}")


def parse_mask_values(text: str) -> dict[int, str]:
    """`1=scratch,2=dent` as {1: 'scratch', 2: 'dent'}; `InputError` naming the bad part."""
    found: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        value, sep, name = part.partition("=")
        if not sep or not value.strip().isdigit() or not 1 <= int(value) <= 255 or not name:
            raise InputError(
                f"mask value map: {part!r}: expected VALUE=CLASS with VALUE 1..255, "
                "e.g. 1=scratch,2=dent"
            )
        found[int(value)] = name.strip()
    return found
