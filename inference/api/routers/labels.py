"""The label store over HTTP: samples and their labels (verdict, class, boxes, polygons,
brush masks), classes, imports (a zip upload or a folder inside the workspace) and exports
(a zip). `qa` (and admin) label and import; `manager` reads; `line` neither. A key limited
to stations sees only those stations' production samples."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from defectlens.datasets.labels.formats import ExportFormat, ImportFormat, parse_mask_values
from defectlens.datasets.labels.model import Annotation, Region, Split, polygon_box
from defectlens.errors import InputError, NotFound
from defectlens.inference.api.auth import Caller, Role
from defectlens.inference.api.dependencies import Service, require
from defectlens.inference.api.errors import Forbidden
from defectlens.inference.service import InspectionService
from defectlens.inference.service.images import MEDIA_TYPES
from defectlens.inference.service.label_archives import packed, unpacked, workspace_path
from defectlens.inference.service.labelling import (
    export_labels,
    import_labels,
    mask_region,
    sample_image_file,
    with_image_size,
)
from defectlens.inference.store.labels import (
    MAX_SAMPLE_PAGE,
    Label,
    Sample,
    SampleFilter,
)
from defectlens.prediction import Verdict

LABEL: frozenset[Role] = frozenset({"qa"})
"""Who labels, imports and freezes datasets (and admin)."""
READ_LABELS: frozenset[Role] = frozenset({"qa", "manager"})
"""Who reads samples, labels and dataset versions (and admin)."""
MAX_REGIONS = 1000
MAX_POINTS = 10_000

Labeller = Annotated[
    Caller, Depends(require(LABEL, "label images, import labels or freeze datasets"))
]
LabelReader = Annotated[Caller, Depends(require(READ_LABELS, "read labels and datasets"))]
SampleId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

router = APIRouter(prefix="/v1/labels", tags=["labels"])


Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RegionIn(_Body):
    defect_class: str = Field(alias="class", min_length=1, max_length=64)
    box: list[float] | None = Field(
        default=None, min_length=4, max_length=4, description="x0, y0, x1, y1 in pixels"
    )
    polygon: list[Point] | None = Field(
        default=None, max_length=MAX_POINTS, description="[[x, y], ...] in pixels"
    )
    mask_png: str | None = Field(
        default=None,
        description="A brush mask: base64 PNG of the image's size, nonzero on the defect; "
        "the region's box is its extent",
    )


class LabelIn(_Body):
    verdict: Verdict
    defect_class: str | None = Field(default=None, min_length=1, max_length=64)
    regions: list[RegionIn] = Field(default_factory=list, max_length=MAX_REGIONS)
    replaces: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="The standing label this one corrects (409 if another replaced it since)",
    )


class RegionOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    defect_class: str = Field(alias="class")
    box: tuple[float, float, float, float]
    polygon: list[tuple[float, float]] | None = None
    mask_sha256: str | None = None


class LabelOut(BaseModel):
    id: int
    sample_id: int | None
    result_id: str | None
    verdict: Verdict
    defect_class: str | None
    regions: list[RegionOut]
    author: str
    created_at: datetime
    overrides_label_id: int | None
    overrides_model: bool
    """The label disagrees with the model's verdict or classes on the result (reports count
    these as the model's mistakes)."""

    @classmethod
    def of(cls, label: Label) -> LabelOut:
        annotation = label.annotation
        return cls(
            id=label.id,
            sample_id=label.sample_id,
            result_id=label.result_id,
            verdict=annotation.verdict,
            defect_class=annotation.main_class,
            regions=[
                RegionOut.model_validate(
                    {
                        "class": r.defect_class,
                        "box": r.box,
                        "polygon": None if r.polygon is None else list(r.polygon),
                        "mask_sha256": r.mask_sha256,
                    }
                )
                for r in annotation.regions
            ],
            author=label.author,
            created_at=label.created_at,
            overrides_label_id=label.overrides_label_id,
            overrides_model=label.overrides_model,
        )


class SampleOut(BaseModel):
    id: int
    sha256: str | None
    width: int | None
    height: int | None
    result_id: str | None
    source: str | None
    split: Split | None
    created_at: datetime
    image_url: str
    reference_url: str | None
    label: LabelOut | None

    @classmethod
    def of(cls, sample: Sample) -> SampleOut:
        return cls(
            id=sample.id,
            sha256=sample.sha256,
            width=sample.width,
            height=sample.height,
            result_id=sample.result_id,
            source=sample.source,
            split=sample.split,
            created_at=sample.created_at,
            image_url=f"/v1/labels/samples/{sample.id}/image",
            reference_url=(
                None
                if sample.reference_path is None
                else f"/v1/labels/samples/{sample.id}/reference"
            ),
            label=None if sample.label is None else LabelOut.of(sample.label),
        )


class SamplePage(BaseModel):
    items: list[SampleOut]
    next_after: int | None
    """Pass as `after` for the next page (null on the last)."""


class SampleDetail(SampleOut):
    history: list[LabelOut]
    """Every label of the sample, oldest first (the last is the standing one)."""


class ClassIn(_Body):
    name: str = Field(min_length=1, max_length=64)
    plc_code: int | None = Field(default=None, ge=0, le=2**31 - 1)


class ClassOut(BaseModel):
    name: str
    plc_code: int | None


class ImportIn(_Body):
    format: ImportFormat
    path: str = Field(
        min_length=1,
        max_length=1024,
        description="A folder (or COCO file) inside the workspace, relative to it, e.g. "
        "labels/incoming/batch1",
    )
    create_classes: bool = False
    source: str | None = Field(default=None, min_length=1, max_length=128)
    mask_values: dict[int, str] | None = None


class ImportOut(BaseModel):
    format: str
    images: int
    regions: int
    skipped: int
    skipped_by_reason: dict[str, int]
    skipped_lines: list[str]
    samples_added: int
    samples_known: int
    labels_added: int
    classes_added: list[str]


def _filters(
    caller: LabelReader,
    source: Annotated[str | None, Query(max_length=128)] = None,
    labelled: bool | None = None,
    verdict: Verdict | None = None,
    defect_class: Annotated[str | None, Query(alias="class", max_length=64)] = None,
    split: Split | None = None,
    imported: bool | None = None,
    labelled_since: datetime | None = None,
    labelled_until: datetime | None = None,
) -> SampleFilter:
    """The listing and export filters; a key limited to stations gets their production
    samples only (it must name one of its stations as `source`)."""
    if caller.stations is not None:
        if source is None or source not in caller.stations:
            raise Forbidden(
                "this API key is limited to some stations: name one of them as source=..."
            )
        imported = False
    return SampleFilter(
        source=source,
        labelled=labelled,
        verdict=verdict,
        defect_class=defect_class,
        labelled_since=labelled_since,
        labelled_until=labelled_until,
        split=split,
        imported=imported,
    )


Filters = Annotated[SampleFilter, Depends(_filters)]


def _sample(service: InspectionService, caller: Caller, sample_id: int) -> Sample:
    sample = service.store.sample(sample_id)
    if caller.stations is not None and (
        sample.result_id is None or not caller.may_use_station(sample.source or "")
    ):
        raise NotFound(f"sample {sample_id} not found")  # not even whether it exists
    return sample


@router.get("/samples", response_model=SamplePage)
def list_samples(
    service: Service,
    where: Filters,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_SAMPLE_PAGE)] = 100,
) -> SamplePage:
    """Samples by id with their standing labels; `after` = the page's `next_after`."""
    items = service.store.list_samples(where, limit=limit + 1, after_id=after)
    more = len(items) > limit
    items = items[:limit]
    return SamplePage(
        items=[SampleOut.of(s) for s in items], next_after=items[-1].id if more else None
    )


@router.get("/samples/{sample_id}", response_model=SampleDetail)
def get_sample(service: Service, caller: LabelReader, sample_id: SampleId) -> SampleDetail:
    """A sample, its standing label and its label history."""
    sample = _sample(service, caller, sample_id)
    history = [LabelOut.of(label) for label in service.store.label_history(sample_id)]
    return SampleDetail(**SampleOut.of(sample).model_dump(), history=history)


@router.get(
    "/samples/{sample_id}/image",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}},
)
def get_sample_image(service: Service, caller: LabelReader, sample_id: SampleId) -> FileResponse:
    """The sample's image file."""
    path = sample_image_file(service.store, service.settings, _sample(service, caller, sample_id))
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"))


@router.get(
    "/samples/{sample_id}/reference",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}},
)
def get_sample_reference(
    service: Service, caller: LabelReader, sample_id: SampleId
) -> FileResponse:
    """The sample's reference (golden template) image."""
    sample = _sample(service, caller, sample_id)
    path = sample_image_file(service.store, service.settings, sample, reference=True)
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"))


@router.post("/samples/{sample_id}/labels", response_model=LabelOut, status_code=201)
def label_sample(
    service: Service, caller: Labeller, sample_id: SampleId, body: LabelIn
) -> LabelOut:
    """Label a sample: it replaces the standing label (kept in the history)."""
    sample = with_image_size(service.store, service.settings, _sample(service, caller, sample_id))
    annotation = _annotation(service, body, sample)
    label = service.store.label_sample(sample.id, annotation, caller.name, body.replaces)
    return LabelOut.of(label)


@router.post("/results/{result_id}", response_model=LabelOut, status_code=201)
def label_result(
    service: Service,
    caller: Labeller,
    result_id: Annotated[str, PathParam(min_length=1, max_length=64)],
    body: LabelIn,
) -> LabelOut:
    """Label a production result's image (its sample is made on first use)."""
    result = service.store.get_result(result_id)
    if result is None or not caller.may_use_station(result.station):
        raise NotFound(f"result {result_id!r} not found")
    sample = service.store.sample(service.store.sample_for_result(result_id))
    sample = with_image_size(service.store, service.settings, sample)
    annotation = _annotation(service, body, sample)
    label = service.store.label_sample(sample.id, annotation, caller.name, body.replaces)
    return LabelOut.of(label)


def _annotation(service: InspectionService, body: LabelIn, sample: Sample) -> Annotation:
    regions = []
    for index, region in enumerate(body.regions):
        where = f"regions[{index}]"
        if region.mask_png is not None:
            try:
                png = base64.b64decode(region.mask_png, validate=True)
            except (binascii.Error, ValueError):
                raise InputError(f"{where}.mask_png: not base64") from None
            regions.append(mask_region(service.settings, png, region.defect_class, sample))
            continue
        polygon = None if region.polygon is None else tuple((p[0], p[1]) for p in region.polygon)
        if region.box is not None:
            box = (region.box[0], region.box[1], region.box[2], region.box[3])
        elif polygon:
            box = polygon_box(polygon)
        else:
            raise InputError(f"{where}: give a box (x0, y0, x1, y1), a polygon or a mask_png")
        regions.append(Region(region.defect_class, box, polygon))
    return Annotation(body.verdict, tuple(regions), body.defect_class)


@router.get("/samples/{sample_id}/history", response_model=list[LabelOut])
def label_history(service: Service, caller: LabelReader, sample_id: SampleId) -> list[LabelOut]:
    """Every label of a sample, oldest first."""
    _sample(service, caller, sample_id)
    return [LabelOut.of(label) for label in service.store.label_history(sample_id)]


@router.get("/classes", response_model=list[ClassOut])
def list_classes(service: Service, caller: LabelReader) -> list[ClassOut]:
    """The defect classes, by name."""
    return [ClassOut(name=c.name, plc_code=c.plc_code) for c in service.store.classes()]


@router.post("/classes", response_model=ClassOut, status_code=201)
def add_class(service: Service, caller: Labeller, body: ClassIn) -> ClassOut:
    """Add a defect class (409 if the name is taken)."""
    from defectlens.datasets.labels.model import check_class_name

    added = service.store.add_class(check_class_name(body.name, "name"), body.plc_code)
    return ClassOut(name=added.name, plc_code=added.plc_code)


def _unscoped(caller: Caller, action: str) -> None:
    if caller.stations is not None:
        raise Forbidden(f"this API key is limited to some stations; it may not {action}")


@router.post("/import", response_model=ImportOut)
def import_path(service: Service, caller: Labeller, body: ImportIn) -> ImportOut:
    """Import a labelled folder inside the workspace (never elsewhere on the server). Every
    file is checked first; skipped images are listed with the reason; nothing is half
    imported. 422 with the reasons if nothing could be imported."""
    _unscoped(caller, "import labels")
    path = workspace_path(service.settings, body.path)
    report = import_labels(
        service.store,
        service.settings,
        body.format,
        path,
        caller.name,
        create_classes=body.create_classes,
        source=body.source,
        mask_values=body.mask_values,
    )
    return ImportOut.model_validate(report, from_attributes=True)


@router.post("/import/upload", response_model=ImportOut)
def import_upload(
    service: Service,
    caller: Labeller,
    file: Annotated[UploadFile, File(description="the labelled folder as a .zip")],
    format: Annotated[ImportFormat, Form()],
    create_classes: Annotated[bool, Form()] = False,
    source: Annotated[str | None, Form(max_length=128)] = None,
    mask_values: Annotated[str | None, Form(max_length=4096, description="1=scratch,...")] = None,
) -> ImportOut:
    """Import a labelled folder uploaded as a zip (up to DEFECTLENS_MAX_ARCHIVE_BYTES; the
    upload goes to a temporary file as it arrives)."""
    _unscoped(caller, "import labels")
    values = parse_mask_values(mask_values) if mask_values else None
    with unpacked(service.settings, file.file) as root:
        report = import_labels(
            service.store,
            service.settings,
            format,
            root,
            caller.name,
            create_classes=create_classes,
            source=source or Path(file.filename or "upload").stem,
            mask_values=values,
        )
    report.root = source or file.filename or "upload"
    return ImportOut.model_validate(report, from_attributes=True)


@router.get(
    "/export",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def export(service: Service, where: Filters, format: ExportFormat = "coco") -> FileResponse:
    """The labelled samples the filters select, in a label format, as a zip."""

    def write(folder: Path) -> Any:
        return export_labels(service.store, service.settings, format, folder, where)

    archive = packed(service.settings, write)
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=f"labels-{format}.zip",
        background=BackgroundTask(archive.unlink, missing_ok=True),
    )
