"""DeepPCB's layout (`datasets/deeppcb.py`), read into the label store: the aligned-inspection
data a PCB plant has. Each board's template is the sample's reference; boards in test.txt get
the split hint `test`; a line that cannot be read is skipped with its reason.
"""

from __future__ import annotations

from pathlib import Path

from defectlens.datasets import deeppcb
from defectlens.datasets.labels.model import Annotation, Region, Split
from defectlens.datasets.labels.plan import ImportPlan
from defectlens.errors import DataError

SPLITS: dict[str, Split | None] = {"trainval.txt": None, "test.txt": "test"}


def read_deeppcb(root: Path) -> ImportPlan:
    """The import plan of a DeepPCB folder; `DataError` if it has neither list."""
    lists = [(root / name, SPLITS[name]) for name in deeppcb.LISTS if (root / name).is_file()]
    if not lists:
        raise DataError(f"{root}: expected trainval.txt or test.txt (DeepPCB layout)")
    plan = ImportPlan("deeppcb", root)
    for listing, split in lists:
        for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{listing.name}:{number}"
            try:
                listed, annotation_file = deeppcb.list_entry(line)
            except ValueError as error:
                plan.skip(listing.name, str(number), "malformed", str(error))
                continue
            image, reference = deeppcb.board_files(root, listed)
            regions = _defects(plan, root / annotation_file, where)
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
        try:
            box, kind = deeppcb.defect(line)
        except deeppcb.UnknownType as error:
            plan.skip(name, "", "unknown class", str(error))
            return None
        except ValueError as error:
            plan.skip(name, "", "malformed", str(error))
            return None
        regions.append(Region(deeppcb.CLASSES[kind], box))
    return regions
