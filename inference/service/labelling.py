"""Labels in and out of the label store, for the CLI, the API and the pages alike: import a
folder in one of the label formats (read in full first, then one transaction), export the
labelled samples, find a sample's image file.

    report = import_labels(store, settings, "coco", Path("batch1/"), author="qa:alice")
    count = export_labels(store, settings, "yolo", Path("out/"), SampleFilter(source="batch1"))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from defectlens.datasets.images import read_header
from defectlens.datasets.labels.export import ExportSample, new_folder
from defectlens.datasets.labels.files import LabelFiles
from defectlens.datasets.labels.formats import read_labels, write_labels
from defectlens.datasets.labels.model import Region
from defectlens.datasets.labels.plan import ImportReport, sha256_of
from defectlens.errors import InputError, NotFound
from defectlens.inference.service.images import find_image
from defectlens.inference.store import Store
from defectlens.inference.store.labels import NewSample, Sample, SampleFilter
from defectlens.settings import Settings

log = logging.getLogger(__name__)


class NothingImported(InputError):
    """An import none of whose images could be used; `report` says why each was skipped."""

    def __init__(self, report: ImportReport) -> None:
        reasons = ", ".join(f"{n} {why}" for why, n in report.skipped_by_reason.items())
        first = f"; first: {report.skipped_lines[0]}" if report.skipped_lines else ""
        super().__init__(
            f"nothing imported from {report.root} ({report.format}): "
            f"{reasons or 'no labelled images found'}{first}"
        )
        self.report = report


def label_files(settings: Settings) -> LabelFiles:
    """The label store's files of this workspace (`<home>/labels/`)."""
    return LabelFiles(settings.labels_dir)


def import_labels(
    store: Store,
    settings: Settings,
    format: str,
    path: Path,
    author: str,
    create_classes: bool = False,
    source: str | None = None,
    mask_values: dict[int, str] | None = None,
) -> ImportReport:
    """Import a labelled folder (or COCO file) into the label store.

    Everything is read and checked first; an image whose label is malformed, reaches outside
    it, names an unknown class (unless `create_classes`) or whose file is missing or
    unreadable is skipped and listed in the report. The accepted images (and templates and
    masks) are copied into `<home>/labels/` by content, then all samples and labels are
    written in one transaction. `NothingImported` (an `InputError`) if no image is usable.
    """
    plan = read_labels(format, path, mask_values)
    if not create_classes:
        plan.keep_known_classes(c.name for c in store.classes())
    report = plan.report()
    if not plan.items:
        raise NothingImported(report)
    files = label_files(settings)
    source = source or path.resolve().name
    new = []
    for item in plan.items:
        digest, relative = files.add_image(item.image)
        reference_sha = reference_path = None
        if item.reference is not None:
            reference_sha, reference_path = files.add_image(item.reference)
        for mask_sha, png in item.masks.items():
            files.add_mask(mask_sha, png)
        new.append(
            NewSample(
                sha256=digest,
                path=relative,
                width=item.width,
                height=item.height,
                annotation=item.annotation,
                reference_sha256=reference_sha,
                reference_path=reference_path,
                split=item.split,
                source=source[:128],
            )
        )
    counts = store.import_samples(new, author, plan.classes() if create_classes else ())
    report.samples_added = counts.samples_added
    report.samples_known = counts.samples_known
    report.labels_added = counts.labels_added
    report.classes_added = list(counts.classes_added)
    log.info(
        "labels imported",
        extra={
            "format": format,
            "source": source,
            "images": report.images,
            "skipped": report.skipped,
        },
    )
    return report


@dataclass(frozen=True)
class SampleFile:
    """A labelled sample's image file, as an export or a freeze sees it."""

    export: ExportSample
    sha256: str


def sample_files(
    store: Store, settings: Settings, samples: Sequence[Sample]
) -> tuple[list[SampleFile], list[str]]:
    """The image files of labelled `samples`, and a line for each one left out (unlabelled,
    or a result whose image retention deleted or never kept). A result's image is read to
    learn its sha256 and size the first time (recorded on the sample)."""
    files = label_files(settings)
    found: list[SampleFile] = []
    left_out: list[str] = []
    seen: set[str] = set()
    for sample in samples:
        if sample.label is None:
            left_out.append(f"sample {sample.id}: not labelled")
            continue
        try:
            image, digest, width, height = _image_of(store, settings, files, sample)
        except NotFound as exc:
            left_out.append(f"sample {sample.id}: {exc}")
            continue
        if digest in seen:
            left_out.append(f"sample {sample.id}: the same image as another sample")
            continue
        seen.add(digest)
        reference = None if sample.reference_path is None else files.path(sample.reference_path)
        export = ExportSample(
            image=image,
            name=f"{digest}{image.suffix.lower()}",
            width=width,
            height=height,
            annotation=sample.label.annotation,
            reference=reference,
            split=sample.split,
            source=sample.source,
        )
        found.append(SampleFile(export, digest))
    return found, left_out


def export_labels(
    store: Store,
    settings: Settings,
    format: str,
    out: Path,
    where: SampleFilter | None = None,
) -> tuple[int, list[str]]:
    """Write the labelled samples `where` selects in `format` to the new folder `out`;
    how many were written, and the lines of those left out."""
    chosen = store.list_samples(replace(where or SampleFilter(), labelled=True))
    found, left_out = sample_files(store, settings, chosen)
    if not found:
        raise InputError("no labelled sample with an image matches; nothing to export")
    classes = [c.name for c in store.classes()]
    with new_folder(out) as folder:
        write_labels(format, [f.export for f in found], folder, classes, label_files(settings).mask)
    return len(found), left_out


def _image_of(
    store: Store, settings: Settings, files: LabelFiles, sample: Sample
) -> tuple[Path, str, int, int]:
    """(file, sha256, width, height) of a sample's image; `NotFound` if the file is gone."""
    if sample.path is not None and sample.sha256 and sample.width and sample.height:
        path = files.path(sample.path)
        if not path.is_file():
            raise NotFound(f"its image {path} is missing")
        return path, sample.sha256, sample.width, sample.height
    result = store.get_result(sample.result_id or "")
    found = (
        None
        if result is None
        else find_image(settings.images_dir, result.result_id, result.received_at)
    )
    if found is None:
        raise NotFound(f"result {sample.result_id}: its image was not retained")
    path = found
    if sample.sha256 and sample.width and sample.height:
        return path, sample.sha256, sample.width, sample.height
    data = path.read_bytes()
    header = read_header(data, str(path))
    digest = sha256_of(data)
    store.record_sample_file(sample.id, digest, header.width, header.height)
    return path, digest, header.width, header.height


def sample_image_file(
    store: Store, settings: Settings, sample: Sample, reference: bool = False
) -> Path:
    """A sample's image file (or, with `reference`, its template); `NotFound` if it has
    none or the file is gone."""
    files = label_files(settings)
    if reference:
        if sample.reference_path is None:
            raise NotFound(f"sample {sample.id} has no reference image")
        path = files.path(sample.reference_path)
    elif sample.path is not None:
        path = files.path(sample.path)
    else:
        result = store.get_result(sample.result_id or "")
        found = (
            None
            if result is None
            else find_image(settings.images_dir, result.result_id, result.received_at)
        )
        if found is None:
            raise NotFound(f"sample {sample.id}: the result's image was not retained")
        path = found
    if not path.is_file():
        raise NotFound(f"sample {sample.id}: its image file is missing")
    return path


def mask_region(settings: Settings, png: bytes, defect_class: str, sample: Sample) -> Region:
    """A region drawn with the brush: a PNG mask of the sample's size (nonzero: the defect),
    kept by content; its box is the mask's extent. `InputError` for a PNG that is not one,
    of another size, or empty."""
    import cv2
    import numpy as np

    header = read_header(png, "mask")
    if header.format != "PNG":
        raise InputError(f"mask: expected a PNG, got {header.format}")
    if sample.width is not None and (header.width, header.height) != (sample.width, sample.height):
        raise InputError(
            f"mask is {header.width}x{header.height}, the image {sample.width}x{sample.height}"
        )
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        raise InputError("mask: the PNG cannot be decoded")
    ys, xs = np.nonzero(decoded)
    if len(xs) == 0:
        raise InputError("mask is empty: paint the defect, or give a box instead")
    binary = np.where(decoded > 0, 255, 0).astype(np.uint8)
    ok, encoded = cv2.imencode(".png", binary)
    if not ok:
        raise InputError("mask: could not be encoded again")
    data = bytes(encoded.tobytes())
    digest = sha256_of(data)
    label_files(settings).add_mask(digest, data)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return Region(defect_class, box, None, digest)


def with_image_size(store: Store, settings: Settings, sample: Sample) -> Sample:
    """`sample` with its image's sha256 and size known, read once from a result's retained
    image (so labels on it are checked against the image); as it is if the image is gone."""
    if sample.width is not None or sample.result_id is None:
        return sample
    try:
        _image_of(store, settings, label_files(settings), sample)
    except NotFound:
        return sample
    return store.sample(sample.id)
