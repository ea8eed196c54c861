"""Dataset folders on disk, in the three layouts a QA engineer brings, and which images of
each fit the model, calibrate its threshold and measure it.

**MVTec layout** (`train/good/` present)::

    my-part/train/good/*.png                     good parts, for training
    my-part/test/good/*.png                      good parts, labeled test images
    my-part/test/<defect type>/*.png             defective parts, one folder per type
    my-part/ground_truth/<type>/<stem>_mask.png  optional pixel masks of the defects

    split: train/good minus `threshold.good_holdout` (default 10 %) fits the model, that
    share calibrates; each test type: `threshold.validation_fraction` (default 30 %)
    calibrates, the rest evaluates.

**Test-only MVTec** (`test/` without `train/`): a new batch of labeled parts with masks,
for `defectlens evaluate`. Trained on, it is split as class folders are.

**One folder per class** (subfolders, one of them `good/` or `ok/`)::

    my-part/good/*.png   my-part/scratch/*.png   my-part/dent/*.png

    split: the good images are pooled and 80 % of them are training images, as MVTec's
    train/good (10 % of those calibrate, the rest fit); the other 20 % are held out as
    MVTec's test/good; those and each defect folder: 30 % calibrate, 70 % evaluate. Images
    lying directly in the folder beside the class folders are left out (and said so).

**A flat folder of good images** (images, no subfolders; a plant with no defects
collected yet)::

    my-part/*.png

    split: as the good images of class folders; the evaluation then measures the
    false-reject rate only.

Readers only list files and pair masks with images; decoding happens in `images`, checking
every file in `check`, and the split itself in `defectlens.train.splits`.
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
_ANY_EXPECTED = (
    "expected one of: the MVTec layout (train/good/, test/<type>/, ground_truth/<type>/), "
    "one folder per class (good/ or ok/, and one folder per defect type), or a folder of "
    "good images (.png .jpg .jpeg .bmp .tif .tiff) with no subfolders"
)

Layout = Literal["mvtec", "folders", "flat"]

LAYOUT_NAMES: dict[Layout, str] = {
    "mvtec": "MVTec layout",
    "folders": "one folder per class",
    "flat": "a folder of good images",
}


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
    """The images found under `root`.

    `train` holds the good parts the layout sets aside for training (MVTec's train/good);
    `test` the labeled images. Class folders, a flat folder and a test-only MVTec folder
    have everything in `test` (`pooled`): training takes its good images from there.
    """

    root: Path
    layout: Layout
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What a reader left out or assumed, in words for the person training."""

    @property
    def pooled(self) -> bool:
        """No images are set aside for training: good ones are drawn from `test`."""
        return not self.train

    @property
    def description(self) -> str:
        if self.layout == "mvtec" and self.pooled:
            return "MVTec layout, test only"
        return LAYOUT_NAMES[self.layout]

    def samples(self) -> list[Sample]:
        return [*self.train, *self.test]

    def counts(self) -> dict[str, int]:
        """Images per defect type in `test`, plus "train_good"."""
        counts = {"train_good": len(self.train)}
        counts.update(sorted(Counter(sample.defect_type for sample in self.test).items()))
        return counts

    def without(self, paths: set[Path]) -> Dataset:
        """The same data set less the samples whose image or mask is in `paths`."""

        def keep(sample: Sample) -> bool:
            return sample.path not in paths and sample.mask_path not in paths

        return Dataset(
            root=self.root,
            layout=self.layout,
            train=[s for s in self.train if keep(s)],
            test=[s for s in self.test if keep(s)],
            notes=list(self.notes),
        )


def open_dataset(root: Path) -> Dataset:
    """Read `root` in whichever layout it has (see the module's docstring): MVTec if it has
    train/good/ or test/ without train/, class folders if it has subfolders, else a flat
    folder of good images."""
    _require_folder(root, "dataset folder")
    if (root / "train" / GOOD).is_dir():
        return read_mvtec(root)
    if (root / "train").is_dir():
        raise DataError(f"{root}: has train/ but no train/good/; {_MVTEC_EXPECTED}")
    if (root / "test").is_dir():
        return read_mvtec(root)
    if _subfolders(root):
        return read_class_folders(root)
    if not _image_files(root):
        raise DataError(f"{root}: no images and no folders inside; {_ANY_EXPECTED}")
    return read_flat_folder(root)


def read_mvtec(root: Path) -> Dataset:
    """Read an MVTec AD style folder; masks are paired by name and may be absent. Without
    train/ it is a test-only folder (`train` empty), which needs test/."""
    _require_folder(root, "dataset folder")
    train_folder = root / "train" / GOOD
    train: list[Sample] = []
    if (root / "train").exists() or not (root / "test").is_dir():
        _require_folder(train_folder, f"good training images; {_MVTEC_EXPECTED}")
        train = [Sample(path, GOOD) for path in _images_in(train_folder, _MVTEC_EXPECTED)]

    test: list[Sample] = []
    test_root = root / "test"
    if test_root.is_dir():
        folders = _subfolders(test_root)
        if not train and not folders:
            raise DataError(f"{test_root}: no test/<type>/ folders inside; {_MVTEC_EXPECTED}")
        for folder in folders:
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
    good images are for fitting, so `defectlens.train.splits` draws them from the good ones.
    """
    _require_folder(root, "dataset folder")
    folders = _subfolders(root)
    if not folders:
        raise DataError(f"{root}: no class folders inside; {_FOLDERS_EXPECTED}")
    test: list[Sample] = []
    for folder in folders:
        defect_type = GOOD if folder.name.lower() in GOOD_FOLDER_NAMES else folder.name
        test.extend(Sample(path, defect_type) for path in _images_in(folder, _FOLDERS_EXPECTED))
    loose = _image_files(root)
    if not any(sample.defect_type == GOOD for sample in test):
        found = ", ".join(folder.name for folder in folders)
        beside = (
            f" ({_images_lie(len(loose))} directly in the folder: move good ones into good/)"
            if loose
            else ""
        )
        raise DataError(
            f"{root}: no good/ (or ok/) folder among {found}{beside}; good images are needed "
            f"for training; {_FOLDERS_EXPECTED}"
        )
    test.sort(key=lambda sample: (sample.defect_type != GOOD, sample.defect_type, sample.path))
    notes = []
    if loose:
        notes.append(
            f"{_images_lie(len(loose))} directly in {root}, beside the class folders, and are "
            "left out (move them into good/ or a defect folder to use them)"
        )
    return Dataset(root=root, layout="folders", train=[], test=test, notes=notes)


def read_flat_folder(root: Path) -> Dataset:
    """Read a folder of good images with no subfolders: every image is a good part."""
    _require_folder(root, "dataset folder")
    images = _images_in(root, _ANY_EXPECTED)
    return Dataset(root=root, layout="flat", test=[Sample(path, GOOD) for path in images])


def _images_lie(count: int) -> str:
    return "1 image lies" if count == 1 else f"{count} images lie"


def _require_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise DataError(f"{folder}: not found ({what})")
    if not folder.is_dir():
        raise DataError(f"{folder}: is a file, not a folder ({what})")


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p))


def _image_files(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted; masks and hidden files left out."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not _is_hidden(path)
        and not path.stem.endswith(MASK_SUFFIX)
        and path.is_file()
    )


def _images_in(folder: Path, expected: str) -> list[Path]:
    """`_image_files`, refusing a folder that has none."""
    images = _image_files(folder)
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
