"""DeepPCB's layout, read into the label store (the aligned-inspection data a PCB plant has).

    root/trainval.txt, root/test.txt     lines `<group>/<n>/<id>.jpg <group>/<n>_not/<id>.txt`
    <group>/<n>/<id>_test.<ext>          the tested board
    <group>/<n>/<id>_temp.<ext>          its defect-free template: the sample's reference
    <group>/<n>_not/<id>.txt             one defect a line: x1 y1 x2 y2 type (commas or
                                         spaces), type 1..6 = open, short, mousebite, spur,
                                         copper, pin-hole

The listed extension is not always the file's: the reader takes the listed one, else
whichever accepted image suffix exists. Boards in test.txt get the split hint `test`.
"""

from __future__ import annotations

import re
from pathlib import Path

from defectlens.datasets.labels.model import Annotation, Region, Split
from defectlens.datasets.labels.plan import ImportPlan
from defectlens.datasets.layout import IMAGE_SUFFIXES
from defectlens.errors import DataError

DEEPPCB_CLASSES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")
LISTS: dict[str, Split | None] = {"trainval.txt": None, "test.txt": "test"}


def read_deeppcb(root: Path) -> ImportPlan:
    """The import plan of a DeepPCB folder; `DataError` if it has neither list."""
    lists = [(root / name, split) for name, split in LISTS.items() if (root / name).is_file()]
    if not lists:
        raise DataError(f"{root}: expected trainval.txt or test.txt (DeepPCB layout)")
    plan = ImportPlan("deeppcb", root)
    for listing, split in lists:
        for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{listing.name}:{number}"
            parts = line.split()
            if len(parts) != 2:
                plan.skip(listing.name, str(number), "malformed", f"expected 2 paths: {line!r}")
                continue
            listed = root / parts[0]
            image = _existing(listed.with_name(f"{listed.stem}_test{listed.suffix}"))
            reference = _existing(listed.with_name(f"{listed.stem}_temp{listed.suffix}"))
            regions = _defects(plan, root / parts[1], where)
            if regions is None:
                continue
            annotation = Annotation("NG" if regions else "OK", tuple(regions))
            plan.add(image, annotation, where, reference=reference, split=split)
    return plan


def _defects(plan: ImportPlan, path: Path, where: str) -> list[Region] | None:
    file, _, line_number = where.partition(":")
    if not path.is_file():
        plan.skip(file, line_number, "malformed", f"annotation file {path.name} not found")
        return None
    regions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        name = f"{path.relative_to(plan.root)}:{number}"
        fields = re.split(r"[,\s]+", line.strip())
        try:
            x0, y0, x1, y1 = (float(v) for v in fields[:4])
            kind = int(fields[4])
            if len(fields) != 5:
                raise ValueError
        except (ValueError, IndexError):
            plan.skip(name, "", "malformed", f"expected 'x1 y1 x2 y2 type', got {line!r}")
            return None
        if not 1 <= kind <= len(DEEPPCB_CLASSES):
            plan.skip(name, "", "unknown class", f"type {kind} is not 1..{len(DEEPPCB_CLASSES)}")
            return None
        regions.append(Region(DEEPPCB_CLASSES[kind - 1], (x0, y0, x1, y1)))
    return regions


def _existing(path: Path) -> Path:
    if path.is_file():
        return path
    for suffix in sorted(IMAGE_SUFFIXES):
        other = path.with_suffix(suffix)
        if other.is_file():
            return other
    return path
