"""Detection data sets: images with labelled boxes, each with an optional aligned reference
(a defect-free template of the same part), read from one of two layouts.

**DeepPCB** (a folder holding `trainval.txt` or `test.txt`, or one of those list files
itself; the layout is described in `datasets/deeppcb.py`): the tested board, its template as
the reference, and its boxes of classes open, short, mousebite, spur, copper, pin-hole.

**COCO** (a `.json` file; what the label store's dataset export writes). Fields read:

- `categories[]`: `id`, `name`; the classes are the categories sorted by `id`;
- `images[]`: `id`, `file_name` (relative to the JSON file's folder, or to its `images/`
  subfolder), and optionally `reference` (the aligned template, resolved the same way) and
  `split` (`train`, `val` or `test`: when every image has one, training uses them instead
  of its seeded split);
- `annotations[]`: `image_id`, `category_id`, `bbox` `[x, y, width, height]` in pixels.
  Annotations with `iscrowd: 1` are skipped; everything else in the file is ignored.

Images without annotations are defect-free examples. Box coordinates are
`[x0, y0, x1, y1]` floats in the image's pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from defectlens.datasets import deeppcb
from defectlens.errors import DataError


@dataclass(frozen=True)
class DetectionSample:
    image: Path
    reference: Path | None
    boxes: npt.NDArray[np.float32]
    """[n, 4] x0, y0, x1, y1 in pixels."""
    labels: npt.NDArray[np.int64]
    """[n] class index into the data set's `classes`."""
    split: Literal["train", "val", "test"] | None = None
    """The split a dataset version assigned (COCO `split`), if any."""

    @property
    def name(self) -> str:
        return self.image.name


@dataclass(frozen=True)
class DetectionDataset:
    root: Path
    layout: Literal["deeppcb", "coco"]
    classes: tuple[str, ...]
    samples: list[DetectionSample] = field(default_factory=list)

    @property
    def has_references(self) -> bool:
        return bool(self.samples) and all(s.reference is not None for s in self.samples)

    def counts(self) -> dict[str, int]:
        """Images, and boxes per class."""
        per_class = np.zeros(len(self.classes), np.int64)
        for sample in self.samples:
            np.add.at(per_class, sample.labels, 1)
        return {"images": len(self.samples)} | {
            name: int(n) for name, n in zip(self.classes, per_class, strict=True)
        }

    def subset(self, indices: list[int]) -> DetectionDataset:
        return DetectionDataset(
            self.root, self.layout, self.classes, [self.samples[i] for i in indices]
        )


def is_detection_data(path: Path) -> bool:
    """Whether `path` is laid out as one of the detection layouts."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in (".json", ".txt")
    return any((path / name).is_file() for name in deeppcb.LISTS)


def open_detection_dataset(path: Path) -> DetectionDataset:
    """Read a DeepPCB folder or a COCO JSON file (module docstring); `DataError` names the
    file and line or field of anything unusable."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return read_coco(path)
    if path.is_file() and path.suffix.lower() == ".txt":
        return read_deeppcb(path.parent, path.name)
    if path.is_dir():
        for name in deeppcb.LISTS:
            if (path / name).is_file():
                return read_deeppcb(path, name)
    raise DataError(
        f"{path}: not a detection data set; give a DeepPCB folder (with trainval.txt or "
        "test.txt), a DeepPCB list file or a COCO annotation file (.json)"
    )


def read_deeppcb(root: Path, list_name: str = "trainval.txt") -> DetectionDataset:
    listing = root / list_name
    samples = []
    for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            listed, annotation = deeppcb.list_entry(line)
        except ValueError as error:
            raise DataError(f"{listing}:{number}: {error}") from None
        image, reference = deeppcb.board_files(root, listed)
        for needed in (image, reference):
            if not needed.is_file():
                raise DataError(f"{listing}:{number}: {needed} not found")
        boxes, labels = _deeppcb_boxes(root / annotation)
        samples.append(DetectionSample(image, reference, boxes, labels))
    if not samples:
        raise DataError(f"{listing}: lists no images")
    return DetectionDataset(root, "deeppcb", deeppcb.CLASSES, samples)


def _deeppcb_boxes(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            box, kind = deeppcb.defect(line)
        except ValueError as error:
            raise DataError(f"{path}:{number}: {error}") from None
        boxes.append(box)
        labels.append(kind)
    return _arrays(boxes, labels)


def _arrays(
    boxes: list[tuple[float, float, float, float]], labels: list[int]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    return (
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64).reshape(-1),
    )


def read_coco(path: Path) -> DetectionDataset:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a COCO file is a JSON object with images and annotations")
    categories = sorted(_entries(raw, "categories", path), key=lambda c: int(c["id"]))
    if not categories:
        raise DataError(f"{path}: 'categories' is empty; a detector needs at least one class")
    index_of = {int(c["id"]): i for i, c in enumerate(categories)}
    classes = tuple(str(c["name"]) for c in categories)
    per_image: dict[int, tuple[list[tuple[float, float, float, float]], list[int]]] = {}
    for number, note in enumerate(_entries(raw, "annotations", path)):
        if note.get("iscrowd", 0):
            continue
        where = f"{path}: annotations[{number}]"
        try:
            image_id, category = int(note["image_id"]), int(note["category_id"])
            x, y, w, h = (float(v) for v in note["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{where}: needs image_id, category_id and bbox [x, y, width, height]"
            ) from None
        if category not in index_of:
            raise DataError(f"{where}: category_id {category} is not in 'categories'")
        if w <= 0 or h <= 0:
            raise DataError(f"{where}: bbox {note['bbox']} has no area")
        boxes, labels = per_image.setdefault(image_id, ([], []))
        boxes.append((x, y, x + w, y + h))
        labels.append(index_of[category])
    samples = []
    for number, entry in enumerate(_entries(raw, "images", path)):
        where = f"{path}: images[{number}]"
        if "id" not in entry or "file_name" not in entry:
            raise DataError(f"{where}: needs id and file_name")
        image = _resolve(path, str(entry["file_name"]), where)
        reference = entry.get("reference")
        boxes, labels = per_image.pop(int(entry["id"]), ([], []))
        split = entry.get("split")
        samples.append(
            DetectionSample(
                image,
                _resolve(path, str(reference), where) if reference else None,
                *_arrays(boxes, labels),
                split=split if split in ("train", "val", "test") else None,
            )
        )
    if per_image:
        raise DataError(f"{path}: annotations name image ids {sorted(per_image)[:5]} not in images")
    if not samples:
        raise DataError(f"{path}: 'images' is empty")
    return DetectionDataset(path.parent, "coco", classes, samples)


def _entries(raw: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    entries = raw.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DataError(f"{path}: '{key}' must be a list of objects")
    return entries


def _resolve(json_path: Path, name: str, where: str) -> Path:
    for folder in (json_path.parent, json_path.parent / "images"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{where}: {name} not found beside {json_path} or in its images/ folder")


def seeded_split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of a seeded random split: (the `fraction` part, the rest), each sorted."""
    order = np.random.default_rng(seed).permutation(count)
    cut = round(count * fraction)
    return sorted(order[:cut].tolist()), sorted(order[cut:].tolist())
