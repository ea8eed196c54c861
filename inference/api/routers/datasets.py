"""Dataset versions over HTTP: freeze the label store into an immutable version, list and
show versions, download a version in a label format. `qa` (and admin) freeze; `manager`
reads; `line` neither."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from defectlens.datasets.labels.formats import ExportFormat
from defectlens.datasets.labels.model import Split
from defectlens.datasets.versions import DEFAULT_FRACTIONS
from defectlens.inference.api.dependencies import Service
from defectlens.inference.api.errors import Forbidden
from defectlens.inference.api.routers.labels import Labeller, LabelReader
from defectlens.inference.service.dataset_versions import export_version, freeze_dataset
from defectlens.inference.service.label_archives import packed
from defectlens.inference.store.labels import DatasetVersion, SampleFilter

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

VersionId = Annotated[str, PathParam(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$")]


class FreezeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    source: str | None = Field(default=None, max_length=128, description="one import or station")
    classes: list[str] | None = Field(
        default=None,
        max_length=255,
        description="only samples whose classes are all among these (OK samples always)",
    )
    labelled_since: datetime | None = None
    labelled_until: datetime | None = None
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    fractions: dict[Split, float] = Field(
        default_factory=lambda: dict(DEFAULT_FRACTIONS),
        description="of each class; a sample's split hint wins",
    )


class DatasetVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    path: str
    counts: dict[str, Any]
    created_at: datetime
    created_by: str | None


class FrozenOut(DatasetVersionOut):
    created: bool
    """False: these labels were frozen before, and that version is returned."""
    left_out: list[str]


@router.post("", response_model=FrozenOut, status_code=201)
def freeze(service: Service, caller: Labeller, body: FreezeIn, response: Response) -> FrozenOut:
    """Freeze the labelled samples into an immutable version (201), or return the version
    these same labels were frozen into before (200)."""
    if caller.stations is not None:
        raise Forbidden("this API key is limited to some stations; it may not freeze datasets")
    where = SampleFilter(
        source=body.source,
        labelled=True,
        labelled_since=body.labelled_since,
        labelled_until=body.labelled_until,
    )
    frozen = freeze_dataset(
        service.store,
        service.settings,
        body.name,
        caller.name,
        where=where,
        classes=None if body.classes is None else set(body.classes),
        seed=body.seed,
        fractions=body.fractions,
    )
    if not frozen.created:
        response.status_code = 200
    return FrozenOut(
        **_out(frozen.version).model_dump(), created=frozen.created, left_out=frozen.left_out
    )


@router.get("", response_model=list[DatasetVersionOut])
def list_versions(
    service: Service,
    caller: LabelReader,
    name: Annotated[str | None, Query(max_length=64)] = None,
) -> list[DatasetVersionOut]:
    """Dataset versions, newest first."""
    return [_out(v) for v in service.store.dataset_versions(name)]


@router.get("/{version_id}", response_model=DatasetVersionOut)
def show_version(service: Service, caller: LabelReader, version_id: VersionId) -> DatasetVersionOut:
    """One version (by id or a unique start of it)."""
    return _out(service.store.dataset_version(version_id))


@router.get(
    "/{version_id}/export",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def export(
    service: Service, caller: LabelReader, version_id: VersionId, format: ExportFormat = "coco"
) -> FileResponse:
    """A version in a label format, as a zip."""
    version = service.store.dataset_version(version_id)

    def write(folder: Path) -> int:
        return export_version(service.store, service.settings, version.id, format, folder)

    archive = packed(service.settings, write)
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=f"{version.name}-{version.id}-{format}.zip",
        background=BackgroundTask(archive.unlink, missing_ok=True),
    )


def _out(version: DatasetVersion) -> DatasetVersionOut:
    return DatasetVersionOut.model_validate(version, from_attributes=True)
