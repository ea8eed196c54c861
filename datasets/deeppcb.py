"""The DeepPCB layout, read by both of its readers: the detector's training data
(`detection.read_deeppcb`, which refuses a bad line) and the label store's import
(`labels.deeppcb.read_deeppcb`, which skips it with the reason).

    root/trainval.txt, root/test.txt     lines `<group>/<n>/<id>.jpg <group>/<n>_not/<id>.txt`
    <group>/<n>/<id>_test.<ext>          the tested board
    <group>/<n>/<id>_temp.<ext>          its defect-free template
    <group>/<n>_not/<id>.txt             one defect a line: x1 y1 x2 y2 type (commas or
                                         spaces), type 1..6 = open, short, mousebite, spur,
                                         copper, pin-hole

The listed extension is not always the file's: the board is the listed one, else whichever
accepted image suffix exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from defectlens.datasets.layout import IMAGE_SUFFIXES

CLASSES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")
LISTS = ("trainval.txt", "test.txt")

Box = tuple[float, float, float, float]


class UnknownType(ValueError):
    """A defect type outside 1..6."""


def list_entry(line: str) -> tuple[str, str]:
    """(listed image, annotation file) of a list line; `ValueError` saying what is wrong."""
    parts = line.split()
    if len(parts) != 2:
        raise ValueError(f"expected '<image> <annotation>', got {line!r}")
    return parts[0], parts[1]


def board_files(root: Path, listed: str) -> tuple[Path, Path]:
    """(tested board, template) of a listed image name."""
    path = root / listed
    return (
        _existing(path.with_name(f"{path.stem}_test{path.suffix}")),
        _existing(path.with_name(f"{path.stem}_temp{path.suffix}")),
    )


def defect(line: str) -> tuple[Box, int]:
    """(box, class index 0..5) of an annotation line; `ValueError` saying what is wrong
    (`UnknownType` for a type outside 1..6)."""
    fields = re.split(r"[,\s]+", line.strip())
    try:
        if len(fields) != 5:
            raise ValueError
        x0, y0, x1, y1 = (float(value) for value in fields[:4])
        kind = int(float(fields[4]))
    except ValueError:
        raise ValueError(f"expected 'x1,y1,x2,y2,type' (five numbers), got {line!r}") from None
    if not 1 <= kind <= len(CLASSES):
        raise UnknownType(f"type {kind} is not 1..{len(CLASSES)}")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the box needs x2 > x1 and y2 > y1, got {line!r}")
    return (x0, y0, x1, y1), kind - 1


def _existing(path: Path) -> Path:
    if path.is_file():
        return path
    for suffix in sorted(IMAGE_SUFFIXES):
        other = path.with_suffix(suffix)
        if other.is_file():
            return other
    return path
