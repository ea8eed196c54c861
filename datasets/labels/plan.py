"""An import read in full before anything is written: the images it would add, each with its
label, and what it skips and why (the report a QA engineer reads)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from defectlens.datasets.images import read_header
from defectlens.datasets.labels.model import (
    Annotation,
    OutsideImage,
    Split,
    check_annotation,
)
from defectlens.errors import InputError

SkipReason = Literal[
    "malformed",
    "box outside image",
    "unknown class",
    "image file missing",
    "unreadable image",
    "unsupported",
]
REPORT_LINES = 20
"""Skipped files a report lists one by one; the rest are counted."""


@dataclass(frozen=True)
class Skip:
    """One image (or label file) left out, and why."""

    file: str
    where: str
    """Line or field within the file ('' for the whole file)."""
    reason: SkipReason
    detail: str

    def line(self) -> str:
        at = f"{self.file}:{self.where}" if self.where else self.file
        return f"{at}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class ImportItem:
    """An image to import, its label, its size and where the label came from."""

    image: Path
    width: int
    height: int
    annotation: Annotation
    where: str
    """The label file (and line or field) the label came from, for messages."""
    reference: Path | None = None
    split: Split | None = None
    masks: dict[str, bytes] = field(default_factory=dict)
    """The PNG bytes of the regions' masks, by their sha256."""


@dataclass
class ImportPlan:
    """What an import would add and what it skips; nothing is written while it is built."""

    format: str
    root: Path
    items: list[ImportItem] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def skip(self, file: Path | str, where: str, reason: SkipReason, detail: str) -> None:
        self.skipped.append(Skip(self._name(file), where, reason, detail))

    def add(
        self,
        image: Path,
        annotation: Annotation,
        where: str,
        size: tuple[int, int] | None = None,
        reference: Path | None = None,
        split: Split | None = None,
        masks: dict[str, bytes] | None = None,
    ) -> None:
        """Add an image if its file is a readable image (and its `reference` too) and its
        label fits it; otherwise record why it is skipped. `size` (width, height) saves
        reading a header read already."""
        label_file, _, at = where.partition(":")
        if not self._inside(image, label_file, at):
            return
        if size is None:
            size = self.image_size(image, label_file, at)
            if size is None:
                return
        if reference is not None and self.image_size(reference, label_file, at) is None:
            return
        width, height = size
        try:
            checked = check_annotation(annotation, width, height, self._name(image))
        except OutsideImage as exc:
            self.skip(label_file, at, "box outside image", str(exc))
            return
        except InputError as exc:
            self.skip(label_file, at, "malformed", str(exc))
            return
        self.items.append(
            ImportItem(image, width, height, checked, where, reference, split, masks or {})
        )

    def image_size(self, image: Path, label_file: str, where: str) -> tuple[int, int] | None:
        """(width, height) from the image's header, or None with the image skipped. A file
        outside the import's folder is refused: a label file must not reach other files."""
        if not self._inside(image, label_file, where):
            return None
        if not image.is_file():
            self.skip(label_file, where, "image file missing", f"{self._name(image)} not found")
            return None
        try:
            header = read_header(image.read_bytes(), self._name(image))
        except (InputError, OSError) as exc:
            self.skip(label_file, where, "unreadable image", str(exc))
            return None
        return header.width, header.height

    def classes(self) -> list[str]:
        """Every class the accepted items name, each once, in order of appearance."""
        return list(dict.fromkeys(c for item in self.items for c in item.annotation.classes))

    def keep_known_classes(self, known: Iterable[str]) -> None:
        """Move the items naming a class not in `known` to the skipped ones."""
        allowed = set(known)
        kept = []
        for item in self.items:
            unknown = [c for c in item.annotation.classes if c not in allowed]
            if unknown:
                label_file, _, at = item.where.partition(":")
                self.skip(
                    label_file,
                    at,
                    "unknown class",
                    f"{', '.join(map(repr, unknown))} not in the label store's classes "
                    "(import with --create-classes to add them)",
                )
            else:
                kept.append(item)
        self.items = kept

    def report(self) -> ImportReport:
        return ImportReport(
            format=self.format,
            root=str(self.root),
            images=len(self.items),
            regions=sum(len(item.annotation.regions) for item in self.items),
            skipped=len(self.skipped),
            skipped_by_reason=dict(sorted(Counter(s.reason for s in self.skipped).items())),
            skipped_lines=[s.line() for s in self.skipped[:REPORT_LINES]],
        )

    def _inside(self, image: Path, label_file: str, where: str) -> bool:
        if image.resolve().is_relative_to(self.root.resolve()):
            return True
        self.skip(label_file, where, "malformed", f"{image} is outside {self.root}")
        return False

    def _name(self, file: Path | str) -> str:
        path = Path(file)
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(file)


@dataclass
class ImportReport:
    """What an import did: counts, and the skipped files with their reasons (first
    `REPORT_LINES`)."""

    format: str
    root: str
    images: int
    regions: int
    skipped: int
    skipped_by_reason: dict[str, int]
    skipped_lines: list[str]
    samples_added: int = 0
    samples_known: int = 0
    labels_added: int = 0
    classes_added: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report in words, for the command line."""
        out = [
            f"imported {self.images} images ({self.regions} regions) from {self.root} "
            f"({self.format}): {self.samples_added} new, {self.samples_known} known already, "
            f"{self.labels_added} labels added"
        ]
        if self.classes_added:
            out.append(f"classes added: {', '.join(self.classes_added)}")
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped_by_reason.items())
            out.append(f"skipped {self.skipped}: {reasons}")
            out += [f"  {line}" for line in self.skipped_lines]
            if self.skipped > len(self.skipped_lines):
                out.append(f"  ... and {self.skipped - len(self.skipped_lines)} more")
        return out


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
