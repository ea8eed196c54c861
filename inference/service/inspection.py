"""One part through the service: the station's engine, image retention, the stored result.

`inspect_part` runs on the caller's thread (an inspection thread of `InspectionService`, a
line source, the CLI). A result is stored, with its image rows, in one transaction after
its files are written; on any error, or when the caller gave up first, the files are
removed and nothing is stored.
"""

from __future__ import annotations

import errno
import logging
import random
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from defectlens.datasets.images import decode_image
from defectlens.errors import InspectionTimeout, NotFound, StorageFull
from defectlens.inference.delivery.payload import payload_of
from defectlens.inference.engine import Engine
from defectlens.inference.engine_registry import StationNotServed
from defectlens.inference.overlay import render_overlay
from defectlens.inference.service.deliveries import sink_names
from defectlens.inference.service.images import (
    HEATMAP_SUFFIX,
    encode_png,
    find_image,
    image_path,
    image_suffix,
    keep_image,
    sync_folders,
    write_atomically,
)
from defectlens.inference.store import DuplicatePart, StoredImage, new_result_id
from defectlens.result import InspectionResult

if TYPE_CHECKING:
    from defectlens.inference.service.core import InspectionService

log = logging.getLogger(__name__)

STATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Letters, digits, `.`, `_`, `-`; 1 to 64 characters, starting with a letter or digit."""

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class PartMetadata(BaseModel):
    """Where and when a part was photographed; `station` picks the model. Every entry point
    (HTTP, hot folder, camera, PLC) describes its part with this."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    station: str = Field(pattern=STATION_ID_PATTERN, description="station id")
    line: str | None = Field(default=None, max_length=64)
    product: str | None = Field(default=None, max_length=128)
    serial: str | None = Field(default=None, max_length=128, description="the part's serial")
    camera: str | None = Field(default=None, max_length=64)
    captured_at: datetime | None = Field(
        default=None, description="ISO 8601; a time without a zone is taken as UTC"
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="the client's key for this part: a retry with the same key and station "
        "gets the stored result back instead of a second one",
    )

    def result_fields(self) -> dict[str, Any]:
        """The fields of an `InspectionResult` that describe the part."""
        return self.model_dump(
            include={"station", "line", "product", "serial", "camera", "captured_at"}
        )

    @field_validator("captured_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Inspected:
    """What an inspection request gets: the stored result, and whether it was stored by an
    earlier request with the same idempotency key (then nothing was inspected now)."""

    result: InspectionResult
    replayed: bool = False


class Attempt:
    """An inspection its caller may give up on (a request timeout). Giving up never waits
    for the store: before the result is being stored it cancels the store, after that the
    caller waits for the outcome, which the database's own timeout bounds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held only to flip the state, never during I/O
        self._state = "inspecting"

    def begin_store(self) -> None:
        """Called before storing; raises `InspectionTimeout` if the caller gave up."""
        with self._lock:
            if self._state == "abandoned":
                raise InspectionTimeout("abandoned after the request timeout; nothing stored")
            self._state = "storing"

    def abandon(self) -> bool:
        """Give up; False if storing has begun (then wait for the outcome instead)."""
        with self._lock:
            if self._state == "inspecting":
                self._state = "abandoned"
                return True
            return False


def station_engine(service: InspectionService, station: str) -> Engine:
    """The engine serving `station`: `NotFound` for an unknown station, `StationNotServed`
    (409) for a known one without a loaded model."""
    try:
        return service.registry.get(station)
    except StationNotServed:
        if service.store.get_station(station) is None:
            raise NotFound(
                f"station {station!r} is not known; create it (POST /v1/stations) and promote "
                "a model to it first"
            ) from None
        raise


def inspect_part(
    service: InspectionService,
    data: bytes,
    metadata: PartMetadata,
    overlay: bool = False,
    attempt: Attempt | None = None,
) -> Inspected:
    """Inspect one part and store the result; the engine is taken once, so a model swap
    during the call does not affect it. A part whose idempotency key is already stored for
    its station gets that result back."""
    key = metadata.idempotency_key
    if key is not None:
        existing = service.store.find_result_by_idempotency_key(metadata.station, key)
        if existing is not None:
            return Inspected(existing, replayed=True)
    engine = station_engine(service, metadata.station)
    with service.part_in_progress():
        return _inspect(service, engine, data, metadata, overlay, attempt)


def _inspect(
    service: InspectionService,
    engine: Engine,
    data: bytes,
    metadata: PartMetadata,
    overlay: bool,
    attempt: Attempt | None,
) -> Inspected:
    settings = service.settings
    started = time.perf_counter()
    received_at = datetime.now(UTC)
    result_id = new_result_id(received_at)
    source = f"image of station {metadata.station} ({len(data)} bytes)"
    decoded = decode_image(data, source, max_pixels=settings.max_pixels)
    decode_ms = (time.perf_counter() - started) * 1000.0
    prediction = engine.predict(
        decoded,
        source=source,
        with_map=overlay,
        single_thread=service.others_in_progress(),
    )
    prediction.timings_ms.decode = decode_ms
    prediction.timings_ms.total += decode_ms

    keep = overlay or keep_image(prediction.verdict, settings.keep_ok_fraction, random.random())
    written: list[Path] = []
    images: list[StoredImage] = []
    try:
        if keep:
            _check_free_disk(service)
            folders: list[Path] = []
            path = image_path(settings.images_dir, result_id, received_at, image_suffix(data))
            folders += _write(path, data, "image", settings.images_dir, written, images)
            if overlay:
                png = encode_png(render_overlay(decoded, prediction))
                path = image_path(settings.images_dir, result_id, received_at, HEATMAP_SUFFIX)
                folders += _write(path, png, "heatmap", settings.images_dir, written, images)
            sync_folders(folders)
        result = InspectionResult(
            result_id=result_id,
            verdict=prediction.verdict,
            score=prediction.score,
            threshold=prediction.threshold,
            defects=prediction.defects,
            timings_ms=prediction.timings_ms,
            model=prediction.model,
            received_at=received_at,
            **metadata.result_fields(),
            image_url=f"/v1/results/{result_id}/image" if keep else None,
            heatmap_url=f"/v1/results/{result_id}/heatmap" if keep else None,
        )
        if attempt is not None:
            attempt.begin_store()
        store_result(service, result, images, metadata.idempotency_key)
        shadow = service.shadow
        if shadow is not None:  # a dict look-up unless the station has a shadow run
            shadow.offer(result, decoded, data)
    except DuplicatePart as duplicate:  # a retry with the same key was stored meanwhile
        _remove(written)
        return Inspected(duplicate.existing, replayed=True)
    except OSError as error:
        _remove(written)
        if error.errno in _DISK_FULL:
            raise StorageFull(
                f"cannot keep the image of station {metadata.station} under "
                f"{settings.images_dir}: {error.strerror}; nothing was stored. Free disk "
                "space or fix the folder's permissions"
            ) from error
        raise
    except BaseException:
        _remove(written)
        raise
    metrics = service.metrics
    metrics.model_time.labels(metadata.station).observe(prediction.timings_ms.model / 1e3)
    metrics.inspection_time.labels(metadata.station).observe(time.perf_counter() - started)
    log.debug(
        "inspected %s: %s %.3f",
        metadata.serial or "(no serial)",
        result.verdict,
        result.score,
        extra={"station": metadata.station, "serial": metadata.serial, "result_id": result_id},
    )
    return Inspected(result)


def store_result(
    service: InspectionService,
    result: InspectionResult,
    images: list[StoredImage] | tuple[()] = (),
    idempotency_key: str | None = None,
) -> None:
    """Store a result with its image rows and one outbox row per sink of its station, in
    one transaction, then wake the delivery worker and count the verdict. Raises
    `DuplicatePart` (with the stored result) when the idempotency key is taken."""
    sinks = sink_names(service.settings, result.station)
    service.store.save_result(
        result,
        images,
        sinks=sinks,
        idempotency_key=idempotency_key,
        payload=payload_of(result) if sinks else None,
    )
    if service.delivery is not None:
        service.delivery.notify()
    service.metrics.verdicts.labels(result.station, result.verdict).inc()


def free_disk_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    path = folder.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _check_free_disk(service: InspectionService) -> None:
    settings = service.settings
    free = free_disk_bytes(settings.images_dir)
    service.metrics.free_disk.set(free)
    if free < settings.min_free_disk_bytes:
        raise StorageFull(
            f"the disk of {settings.images_dir} has {free} bytes free, under "
            f"DEFECTLENS_MIN_FREE_DISK_BYTES ({settings.min_free_disk_bytes}); the image "
            "cannot be kept, so nothing was stored. Free disk space or lower the retention "
            "budget (DEFECTLENS_RETENTION_MAX_BYTES)"
        )


def heatmap_png(service: InspectionService, result: InspectionResult) -> bytes:
    """The heat-map overlay of a stored result: the file if one was written, else rendered
    from the retained image with the model version that inspected it."""
    images_dir = service.settings.images_dir
    stored = image_path(images_dir, result.result_id, result.received_at, HEATMAP_SUFFIX)
    if stored.is_file():
        return stored.read_bytes()
    original = retained_image(service, result)
    version = next(
        (
            v
            for v in service.store.list_model_versions()
            if (v.name, v.version) == (result.model.name, result.model.version)
        ),
        None,
    )
    if version is None:
        raise NotFound(
            f"result {result.result_id}: model {result.model.name} {result.model.version} is "
            "no longer registered, so its heat map cannot be rendered"
        )
    folder = Path(version.path)
    # A version no station serves any more is loaded for this one picture, not kept: a
    # reader must not be able to make the service hold every version it ever ran.
    engine = service.registry.loaded(folder) or Engine(folder, threads=1, warmup=False)
    decoded = decode_image(original.read_bytes(), str(original))
    prediction = engine.predict(decoded, source=str(original), with_map=True)
    return encode_png(render_overlay(decoded, prediction))


def retained_image(service: InspectionService, result: InspectionResult) -> Path:
    """The retained image file of a result; `NotFound` if it was not kept or was deleted."""
    path = find_image(service.settings.images_dir, result.result_id, result.received_at)
    if path is None:
        raise NotFound(
            f"result {result.result_id}: its image was not retained (only NG parts and a "
            "sample of OK parts are kept) or retention has deleted it"
        )
    return path


def _write(
    path: Path,
    data: bytes,
    kind: str,
    images_dir: Path,
    written: list[Path],
    images: list[StoredImage],
) -> list[Path]:
    """Write one kept file and list it; the folders to sync before the result is stored."""
    folders = write_atomically(path, data)
    written.append(path)
    images.append(StoredImage(kind, path.relative_to(images_dir).as_posix(), len(data)))
    return folders


def _remove(written: list[Path]) -> None:
    for path in written:
        path.unlink(missing_ok=True)
