"""Pascal VOC XML, in and out: boxes only.

Layout read and written::

    root/Annotations/<name>.xml          <filename>, <size>, one <object> a box:
                                         <name>, <bndbox><xmin ymin xmax ymax> (1-based)
    root/JPEGImages/<filename>           the image (any accepted format, despite the name)
    root/ImageSets/Main/<split>.txt      optional: the names in each split

An XML with no object is an OK part. VOC counts pixels from 1, so a box [x0, y0, x1, y1]
in pixels is written xmin = x0 + 1, xmax = x1 and read back the same way.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from defectlens.datasets.labels.export import ExportSample, place, stem
from defectlens.datasets.labels.model import SPLITS, Annotation, Region, Split
from defectlens.datasets.labels.plan import ImportPlan
from defectlens.errors import DataError


def read_voc(root: Path) -> ImportPlan:
    """The import plan of a VOC folder (module docstring); `DataError` without
    Annotations/."""
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise DataError(f"{root}: expected Annotations/*.xml and JPEGImages/ (Pascal VOC layout)")
    splits = _splits(root)
    plan = ImportPlan("voc", root)
    for xml_file in sorted(annotations.glob("*.xml")):
        where = str(xml_file.relative_to(root))
        try:
            tree = ElementTree.parse(xml_file)
        except (ElementTree.ParseError, OSError) as exc:
            plan.skip(where, "", "malformed", f"not readable XML ({exc})")
            continue
        top = tree.getroot()
        file_name = (top.findtext("filename") or "").strip()
        if not file_name:
            plan.skip(where, "filename", "malformed", "no <filename>")
            continue
        image = root / "JPEGImages" / file_name
        regions = []
        try:
            for number, obj in enumerate(top.iter("object"), 1):
                regions.append(_region(obj, f"object {number}"))
        except _Malformed as exc:
            plan.skip(where, exc.where, "malformed", str(exc))
            continue
        annotation = Annotation("NG" if regions else "OK", tuple(regions))
        plan.add(image, annotation, where, split=splits.get(Path(file_name).stem))
    return plan


def voc_xml(sample: ExportSample) -> str:
    """The VOC annotation of one sample."""
    top = ElementTree.Element("annotation")
    ElementTree.SubElement(top, "folder").text = "JPEGImages"
    ElementTree.SubElement(top, "filename").text = sample.name
    size = ElementTree.SubElement(top, "size")
    channels = "3"
    for tag, value in (("width", sample.width), ("height", sample.height), ("depth", channels)):
        ElementTree.SubElement(size, tag).text = str(value)
    for region in sample.annotation.regions:
        obj = ElementTree.SubElement(top, "object")
        ElementTree.SubElement(obj, "name").text = region.defect_class
        ElementTree.SubElement(obj, "difficult").text = "0"
        box = ElementTree.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = region.box
        for tag, coordinate in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ElementTree.SubElement(box, tag).text = _number(coordinate)
    ElementTree.indent(top)
    return ElementTree.tostring(top, encoding="unicode") + "\n"


def write_voc(samples: Sequence[ExportSample], folder: Path, classes: Sequence[str] = ()) -> None:
    """The VOC layout of `samples` in `folder` (images linked); polygons and masks go as
    boxes. `classes` is unused: VOC names classes in each file."""
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[str]] = {}
    for sample in samples:
        place(sample.image, folder / "JPEGImages" / sample.name)
        xml_file = folder / "Annotations" / f"{stem(sample.name)}.xml"
        xml_file.write_text(voc_xml(sample), encoding="utf-8")
        if sample.split is not None:
            by_split.setdefault(sample.split, []).append(stem(sample.name))
    for split, names in by_split.items():
        listing = folder / "ImageSets" / "Main" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


class _Malformed(ValueError):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where


def _region(obj: ElementTree.Element, where: str) -> Region:
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise _Malformed(where, "an <object> needs a <name>")
    box = obj.find("bndbox")
    if box is None:
        raise _Malformed(where, f"object {name!r} has no <bndbox>")
    try:
        xmin, ymin, xmax, ymax = (float(box.findtext(tag) or "") for tag in _BOX_TAGS)
    except ValueError:
        raise _Malformed(where, f"object {name!r}: <bndbox> needs numbers {_BOX_TAGS}") from None
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        raise _Malformed(where, f"object {name!r}: <bndbox> holds a number that is not finite")
    return Region(name, (xmin - 1, ymin - 1, xmax, ymax))


_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def _splits(root: Path) -> dict[str, Split]:
    found: dict[str, Split] = {}
    for split in SPLITS:
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            for line in listing.read_text(encoding="utf-8").split():
                found[line] = cast(Split, split)
    return found


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
