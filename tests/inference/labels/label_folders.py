"""Small labelled folders for the label store's tests, made in the test's own folder."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def image(path: Path, value: int, width: int = 100, height: int = 80) -> Path:
    """A small PNG whose bytes differ with `value`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), value, np.uint8)
    pixels[0, 0] = (value + 1) % 256
    assert cv2.imwrite(str(path), pixels)
    return path


def coco_folder(root: Path, ok: int = 4, ng: int = 4, first: int = 0) -> Path:
    """`ok` OK images and `ng` NG ones (a scratch box; every other one also a dent polygon)
    as COCO; image n has pixel value `first + n`."""
    images, annotations = [], []
    for n in range(ok + ng):
        name = f"{first + n}.png"
        image(root / "images" / name, first + n)
        images.append({"id": n + 1, "file_name": name})
        if n >= ok:
            annotations.append({"image_id": n + 1, "category_id": 1, "bbox": [10, 10, 20, 10]})
            if n % 2:
                polygon = [50, 10, 70, 10, 60, 30]
                annotations.append(
                    {
                        "image_id": n + 1,
                        "category_id": 2,
                        "bbox": [50, 10, 20, 20],
                        "segmentation": [polygon],
                    }
                )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "scratch"}, {"id": 2, "name": "dent"}],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    return root
