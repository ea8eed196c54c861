"""Dataset folders on disk: the MVTec AD layout and one folder per class.

Readers only list files and pair masks with images; decoding happens in `images`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from defectlens.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
GOOD = "good"
GOOD_FOLDER_NAMES = frozenset({"good", "ok"})
"""Folder names (compared case-insensitively) that hold good parts in the class-folder layout."""
MASK_SUFFIX = "_mask"

_MVTEC_EXPECTED = (
    "expected the MVTec layout: train/good/<images>, test/<good|defect type>/<images>, "
    "optional ground_truth/<defect type>/<name>_mask.png"
)
_FOLDERS_EXPECTED = (
    "expected one folder per class: good/ (or ok/) and one folder per defect type, "
    "each holding images"
)

Layout = Literal["mvtec", "folders"]


@dataclass(frozen=True)
class Sample:
    """One image of a part, its class ("good" for good parts) and its mask, if any."""

    path: Path
    defect_type: str
    mask_path: Path | None = None

    @property
    def is_defective(self) -> bool:
        return self.defect_type != GOOD


@dataclass
class Dataset:
    """The images found under `root`; `train` holds good parts only."""

    root: Path
    layout: Layout
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Images per defect type in `test`, plus "train_good"."""
        counts = {"train_good": len(self.train)}
        counts.update(sorted(Counter(sample.defect_type for sample in self.test).items()))
        return counts


def open_dataset(root: Path) -> Dataset:
    """Read `root` in whichever layout it has: MVTec if it has train/good/, else class folders."""
    _require_folder(root, "dataset folder")
    if (root / "train" / GOOD).is_dir():
        return read_mvtec(root)
    if (root / "train").is_dir():
        raise DataError(f"{root}: has train/ but no train/good/; {_MVTEC_EXPECTED}")
    return read_class_folders(root)


def read_mvtec(root: Path) -> Dataset:
    """Read an MVTec AD style folder; masks are paired by name and may be absent."""
    _require_folder(root, "dataset folder")
    train_folder = root / "train" / GOOD
    _require_folder(train_folder, f"good training images; {_MVTEC_EXPECTED}")
    train = [Sample(path, GOOD) for path in _images_in(train_folder, _MVTEC_EXPECTED)]

    test: list[Sample] = []
    test_root = root / "test"
    if test_root.is_dir():
        for folder in _subfolders(test_root):
            images = _images_in(folder, _MVTEC_EXPECTED)
            defect_type = folder.name
            if defect_type == GOOD:
                test.extend(Sample(path, GOOD) for path in images)
                continue
            masks = root / "ground_truth" / defect_type
            test.extend(Sample(path, defect_type, _find_mask(masks, path.stem)) for path in images)
    return Dataset(root=root, layout="mvtec", train=train, test=test)


def read_class_folders(root: Path) -> Dataset:
    """Read one folder per class: good/ (or ok/, OK/) and one per defect type.

    Every image goes to `test` and `train` stays empty: the layout says nothing about which
    good images are for fitting, so training code splits the good ones itself.
    """
    _require_folder(root, "dataset folder")
    folders = _subfolders(root)
    if not folders:
        raise DataError(f"{root}: no class folders inside; {_FOLDERS_EXPECTED}")
    test: list[Sample] = []
    for folder in folders:
        defect_type = GOOD if folder.name.lower() in GOOD_FOLDER_NAMES else folder.name
        test.extend(Sample(path, defect_type) for path in _images_in(folder, _FOLDERS_EXPECTED))
    if not any(sample.defect_type == GOOD for sample in test):
        found = ", ".join(folder.name for folder in folders)
        raise DataError(
            f"{root}: no good/ (or ok/) folder among {found}; good images are needed for "
            f"training; {_FOLDERS_EXPECTED}"
        )
    test.sort(key=lambda sample: (sample.defect_type != GOOD, sample.defect_type, sample.path))
    return Dataset(root=root, layout="folders", train=[], test=test)


def _require_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise DataError(f"{folder}: not found ({what})")
    if not folder.is_dir():
        raise DataError(f"{folder}: is a file, not a folder ({what})")


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p))


def _images_in(folder: Path, expected: str) -> list[Path]:
    """Image files directly in `folder`, sorted; masks and hidden files left out."""
    images = sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not _is_hidden(path)
        and not path.stem.endswith(MASK_SUFFIX)
        and path.is_file()
    )
    if not images:
        raise DataError(
            f"{folder}: no images (.png .jpg .jpeg .bmp .tif .tiff) in this folder; {expected}"
        )
    return images


def _find_mask(mask_folder: Path, stem: str) -> Path | None:
    preferred = mask_folder / f"{stem}{MASK_SUFFIX}.png"
    if preferred.is_file():
        return preferred
    if not mask_folder.is_dir():
        return None
    for suffix in sorted(IMAGE_SUFFIXES):
        for candidate in (suffix, suffix.upper()):
            path = mask_folder / f"{stem}{MASK_SUFFIX}{candidate}"
            if path.is_file():
                return path
    return None
