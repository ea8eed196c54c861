"""Labels going out: a sample as an export sees it, and the folder an export is written to
(a temporary folder renamed into place, so a stopped export leaves nothing half-written)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from defectlens.datasets.labels.model import Annotation, Split
from defectlens.errors import InputError


@dataclass(frozen=True)
class ExportSample:
    """One labelled image to write out."""

    image: Path
    """Its file now."""
    name: str
    """Its file name in the export (unique within it), e.g. `<sha256>.png`."""
    width: int
    height: int
    annotation: Annotation
    reference: Path | None = None
    split: Split | None = None
    source: str | None = None


MaskReader = Callable[[str], bytes]
"""The PNG bytes of a region's mask, by its sha256."""


def stem(name: str) -> str:
    return Path(name).stem


def export_classes(samples: Sequence[ExportSample], classes: Sequence[str] = ()) -> list[str]:
    """The class list an export numbers: `classes` first (the store's order), then any other
    class the samples name."""
    found = dict.fromkeys(classes)
    for sample in samples:
        found.update(dict.fromkeys(sample.annotation.classes))
    return list(found)


def place(source: Path, target: Path) -> None:
    """`target` becomes the same file as `source`: a hard link where the disk allows it (an
    export of a thousand images costs no space), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed to `out` when the block ends normally and
    removed otherwise. `InputError` if `out` exists and is not an empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not empty; choose a new folder to export to")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield temporary
        if out.exists():
            out.rmdir()
        temporary.rename(out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
