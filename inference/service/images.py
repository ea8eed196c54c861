"""Retained images and heat maps on disk: which to keep, where they go, how they are written.

Layout: `<home>/images/YYYY/MM/DD/<result_id>.<ext>` (the bytes the line sent, unchanged)
and `<result_id>_heatmap.png` beside it. Files are written to a temporary name and renamed,
so a reader never sees half an image, and synced to the disk with their folders
(`sync_folders`) before the result naming them is stored.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from defectlens.datasets.images import image_format
from defectlens.prediction import Verdict

SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}
"""The file extension of each accepted image format."""
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".bmp": "image/bmp", ".tif": "image/tiff"}
HEATMAP_SUFFIX = "_heatmap.png"


def keep_image(verdict: Verdict, keep_ok_fraction: float, draw: float) -> bool:
    """Every NG image is kept; an OK image when `draw` (uniform in [0, 1)) falls under the
    fraction, so about that share of OK parts is kept as a reference sample."""
    return verdict == "NG" or draw < keep_ok_fraction


def image_suffix(data: bytes) -> str:
    """The file extension for encoded image bytes, from their magic number."""
    return SUFFIXES.get(image_format(data) or "", ".img")


def day_folder(images_dir: Path, received_at: datetime) -> Path:
    """`<images>/YYYY/MM/DD` of the day a part was received (UTC)."""
    return images_dir / f"{received_at:%Y}" / f"{received_at:%m}" / f"{received_at:%d}"


def image_path(images_dir: Path, result_id: str, received_at: datetime, suffix: str) -> Path:
    """Where a result's image with `suffix` (`.png`, `_heatmap.png`, ...) is kept."""
    return day_folder(images_dir, received_at) / f"{result_id}{suffix}"


def find_image(images_dir: Path, result_id: str, received_at: datetime) -> Path | None:
    """The retained original image of a result, whatever its format, or None."""
    folder = day_folder(images_dir, received_at)
    for suffix in (*SUFFIXES.values(), ".img"):
        path = folder / f"{result_id}{suffix}"
        if path.is_file():
            return path
    return None


def write_atomically(path: Path, data: bytes) -> list[Path]:
    """Write `data` to `path` through a temporary file in the same folder and a rename. The
    file's bytes reach the disk before the rename; the new entries do once the returned
    folders (the file's, and the parent of each folder made for it) are passed to
    `sync_folders`, which the caller does once for all the files it writes, before it stores
    a result naming them: a power cut then never leaves a result whose image is lost or
    empty."""
    made = _make_folders(path.parent)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view) :]
            os.fdatasync(handle)
        finally:
            os.close(handle)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return [path.parent, *(folder.parent for folder in made)]


def sync_folders(folders: Iterable[Path]) -> None:
    """Make the entries of each folder (new or renamed files) last, each folder once."""
    for folder in dict.fromkeys(folders):
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the ones this call made, deepest first."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
    return missing


def encode_png(bgr: np.ndarray) -> bytes:
    """PNG bytes of a BGR (or gray) uint8 picture; fast compression, it is a preview."""
    ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 picture
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()
