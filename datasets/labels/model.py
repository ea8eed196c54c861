"""What a label is, the same for every format and for the label store: a verdict on an image
and the defect regions on it (class, box, optional polygon or mask)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from defectlens.errors import InputError

Verdict = Literal["OK", "NG"]
Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in image pixels; x0 < x1, y0 < y1."""
Point = tuple[float, float]
MAX_CLASS_NAME = 64


class OutsideImage(InputError):
    """A box or polygon reaches outside its image."""


@dataclass(frozen=True)
class Region:
    """One defect on an image."""

    defect_class: str
    box: Box
    polygon: tuple[Point, ...] | None = None
    mask_sha256: str | None = None
    """The region's mask, a PNG (nonzero: the defect) kept by its sha256 in the label store."""


@dataclass(frozen=True)
class Annotation:
    """A verdict on an image and its regions. An NG image may have no region (the defect is
    not outlined); an OK image has none."""

    verdict: Verdict
    regions: tuple[Region, ...] = ()
    defect_class: str | None = None
    """The image's main defect class; None: the first region's, if any."""

    @property
    def main_class(self) -> str | None:
        if self.defect_class is not None:
            return self.defect_class
        return self.regions[0].defect_class if self.regions else None

    @property
    def classes(self) -> tuple[str, ...]:
        """The defect classes on the image, each once, in order."""
        found = [r.defect_class for r in self.regions]
        if self.defect_class is not None:
            found.insert(0, self.defect_class)
        return tuple(dict.fromkeys(found))


def check_class_name(name: str, where: str) -> str:
    """A usable class name (stripped): not empty, at most 64 characters, no NUL."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_CLASS_NAME or "\x00" in cleaned:
        raise InputError(
            f"{where}: class name {name[:80]!r} is not usable: give 1 to {MAX_CLASS_NAME} "
            "characters"
        )
    return cleaned


def check_box(box: Sequence[float], width: int | None, height: int | None, where: str) -> Box:
    """`box` as a `Box`, or `InputError` if it is not four finite numbers with x0 < x1 and
    y0 < y1 inside a `width` x `height` image (not checked where the size is unknown)."""
    if len(box) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
        raise InputError(f"{where}: a box is four numbers x0, y0, x1, y1; got {list(box)!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x0 < x1 and y0 < y1):
        raise InputError(f"{where}: box {[x0, y0, x1, y1]} is empty (need x0 < x1, y0 < y1)")
    if (
        x0 < 0
        or y0 < 0
        or (width is not None and x1 > width)
        or (height is not None and y1 > height)
    ):
        raise OutsideImage(
            f"{where}: box outside the image: {[x0, y0, x1, y1]} in a {width}x{height} image"
        )
    return (x0, y0, x1, y1)


def polygon_box(points: Sequence[Point]) -> Box:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def check_polygon(
    points: Sequence[Sequence[float]], width: int | None, height: int | None, where: str
) -> tuple[Point, ...]:
    """At least three finite points, each inside the image."""
    if len(points) < 3:
        raise InputError(f"{where}: a polygon needs at least 3 points, got {len(points)}")
    cleaned: list[Point] = []
    for point in points:
        if len(point) != 2 or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in point
        ):
            raise InputError(f"{where}: polygon point {list(point)!r} is not two numbers")
        x, y = float(point[0]), float(point[1])
        if (
            x < 0
            or y < 0
            or (width is not None and x > width)
            or (height is not None and y > height)
        ):
            raise OutsideImage(
                f"{where}: polygon point {[x, y]} outside the image ({width}x{height})"
            )
        cleaned.append((x, y))
    return tuple(cleaned)


def check_annotation(
    annotation: Annotation, width: int | None, height: int | None, where: str
) -> Annotation:
    """`annotation` with its class names stripped and its boxes and polygons checked against
    the image size; `InputError` naming `where` otherwise. An OK verdict with regions is
    refused: an OK part has no defect to outline."""
    if annotation.verdict not in ("OK", "NG"):
        raise InputError(f"{where}: verdict {annotation.verdict!r}: expected OK or NG")
    if annotation.verdict == "OK" and (annotation.regions or annotation.defect_class):
        raise InputError(f"{where}: an OK label has no defect class or regions; label it NG")
    regions = []
    for index, region in enumerate(annotation.regions):
        at = f"{where}, region {index + 1}"
        polygon = (
            None if region.polygon is None else check_polygon(region.polygon, width, height, at)
        )
        regions.append(
            Region(
                defect_class=check_class_name(region.defect_class, at),
                box=check_box(region.box, width, height, at),
                polygon=polygon,
                mask_sha256=region.mask_sha256,
            )
        )
    main = (
        None
        if annotation.defect_class is None
        else check_class_name(annotation.defect_class, where)
    )
    return Annotation(annotation.verdict, tuple(regions), main)
