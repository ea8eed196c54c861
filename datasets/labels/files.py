"""The label store's files under `<home>/labels/`: imported images and their templates in
`images/<sha256>.<ext>`, region masks in `masks/<sha256>.png`. Content-addressed: a file
imported twice is kept once, and a file left by an import that failed is harmless (the next
import of it finds it)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from defectlens.errors import DataError, NotFound


def mask_file(digest: str) -> str:
    """A region mask's path under the label store's folder, by its sha256."""
    return f"masks/{digest}.png"


class LabelFiles:
    """The files of one label store; paths given and returned are relative to `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add_image(self, source: Path) -> tuple[str, str]:
        """Copy an image in; its (sha256, relative path)."""
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise DataError(f"{source}: cannot read it ({exc.strerror or exc})") from None
        digest = hashlib.sha256(data).hexdigest()
        relative = f"images/{digest}{source.suffix.lower()}"
        self._write(relative, data)
        return digest, relative

    def add_mask(self, digest: str, png: bytes) -> str:
        relative = mask_file(digest)
        self._write(relative, png)
        return relative

    def mask(self, digest: str) -> bytes:
        """A region's mask PNG by its sha256; `NotFound` if the file is gone."""
        path = self.root / mask_file(digest)
        try:
            return path.read_bytes()
        except OSError:
            raise NotFound(f"mask {digest} is missing from {path.parent}") from None

    def path(self, relative: str) -> Path:
        """The file a stored relative path names, refused if it leaves the folder."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise DataError(f"label file path {relative!r} leaves {self.root}")
        return path

    def _write(self, relative: str, data: bytes) -> None:
        target = self.root / relative
        if target.is_file() and target.stat().st_size == len(data):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
