"""Synthetic PCB-like boards with labelled defects, for the detector's tests and demo.

One golden board per data set (the template): random copper traces and pads, white on
black, as DeepPCB's binarised scans. Each tested board is the template with a few defects
drawn on it, each with its box: `open` (a gap cut in copper), `short` (a copper bar across
the gap), `copper` (a spurious copper blob). Written as a COCO file (`annotations.json`,
images in `images/`, the template as every image's `reference`), which
`defectlens.datasets.detection` reads. Seeded and fast.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

PCB_CLASSES = ("open", "short", "copper")
TEMPLATE_NAME = "template.png"
Box = tuple[int, int, int, int]


def make_template(rng: np.random.Generator, size: int = 128) -> npt.NDArray[np.uint8]:
    """A board: horizontal and vertical traces with round pads at their ends."""
    board = np.zeros((size, size), np.uint8)
    step = max(16, size // 6)
    for offset in range(step // 2, size - 4, step):
        start = int(rng.integers(0, size // 4))
        end = int(rng.integers(size * 3 // 4, size))
        width = int(rng.integers(3, 5))
        if rng.random() < 0.5:
            cv2.line(board, (start, offset), (end, offset), 255, width)
            ends = [(start, offset), (end, offset)]
        else:
            cv2.line(board, (offset, start), (offset, end), 255, width)
            ends = [(offset, start), (offset, end)]
        for centre in ends:
            cv2.circle(board, centre, width + 2, 255, -1)
    return board


def _place(
    rng: np.random.Generator, board: npt.NDArray[np.uint8], want: int, half: int
) -> tuple[int, int] | None:
    """A centre whose (2*half+1)-square is all `want` at its middle row or column mixes
    (for open: copper under the centre; for short/copper: free space around)."""
    size = board.shape[0]
    for _ in range(200):
        x, y = (int(v) for v in rng.integers(half + 2, size - half - 2, 2))
        window = board[y - half : y + half + 1, x - half : x + half + 1]
        if want == 255 and board[y, x] == 255:
            return x, y
        if want == 0 and not window.any():
            return x, y
    return None


def draw_defect(rng: np.random.Generator, board: npt.NDArray[np.uint8], kind: str) -> Box | None:
    """Draw one defect of `kind` on `board` in place; its box, or None where none fits."""
    if kind == "open":
        spot = _place(rng, board, 255, 4)
        if spot is None:
            return None
        x, y = spot
        half = int(rng.integers(3, 5))
        box = (x - half, y - half, x + half + 1, y + half + 1)
        board[box[1] : box[3], box[0] : box[2]] = 0
        return box
    if kind == "short":
        spot = _place(rng, board, 0, 8)
        if spot is None:
            return None
        x, y = spot
        length, width = int(rng.integers(6, 9)), int(rng.integers(1, 3))
        if rng.random() < 0.5:
            box = (x - length, y - width, x + length + 1, y + width + 1)
        else:
            box = (x - width, y - length, x + width + 1, y + length + 1)
        board[box[1] : box[3], box[0] : box[2]] = 255
        return box
    if kind == "copper":
        spot = _place(rng, board, 0, 7)
        if spot is None:
            return None
        x, y = spot
        radius = int(rng.integers(3, 6))
        cv2.circle(board, (x, y), radius, 255, -1)
        return (x - radius, y - radius, x + radius + 1, y + radius + 1)
    raise ValueError(f"unknown defect kind {kind!r}; choose one of {', '.join(PCB_CLASSES)}")


def make_board(
    rng: np.random.Generator, template: npt.NDArray[np.uint8], defects: int
) -> tuple[npt.NDArray[np.uint8], list[Box], list[int]]:
    """The template with `defects` defects of random kinds: (image, boxes, class indices)."""
    board = template.copy()
    boxes, labels = [], []
    for _ in range(defects):
        kind = int(rng.integers(len(PCB_CLASSES)))
        box = draw_defect(rng, board, PCB_CLASSES[kind])
        if box is not None:
            boxes.append(box)
            labels.append(kind)
    return board, boxes, labels


def write_pcb_dataset(
    folder: Path, count: int = 48, *, size: int = 128, seed: int = 0, good: int = 0
) -> Path:
    """Write `count` defective boards (1-3 defects each) and `good` defect-free ones as a
    COCO data set in `folder` (new or empty); returns the annotation file. Written to a
    temporary folder, then renamed."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        (staging / "images").mkdir()
        template = make_template(rng, size)
        cv2.imwrite(str(staging / "images" / TEMPLATE_NAME), template)
        images: list[dict[str, object]] = []
        annotations: list[dict[str, object]] = []
        for index in range(count + good):
            defects = int(rng.integers(1, 4)) if index < count else 0
            board, boxes, labels = make_board(rng, template, defects)
            name = f"board_{index:04d}.png"
            cv2.imwrite(str(staging / "images" / name), board)
            images.append(
                {
                    "id": index + 1,
                    "file_name": name,
                    "width": size,
                    "height": size,
                    "reference": TEMPLATE_NAME,
                }
            )
            for (x0, y0, x1, y1), label in zip(boxes, labels, strict=True):
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": index + 1,
                        "category_id": label + 1,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": (x1 - x0) * (y1 - y0),
                        "iscrowd": 0,
                    }
                )
        coco = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(PCB_CLASSES)],
        }
        (staging / "annotations.json").write_text(json.dumps(coco, indent=1), encoding="utf-8")
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder / "annotations.json"
