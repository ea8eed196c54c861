"""Where a station's images come from: a hot folder, a simulated camera, an OpenCV camera.

A triggered source (`FrameSource`) gives one frame per `grab`; the hot folder hands over the
complete files it finds. Each raises `SourceError` when the device or folder is gone; the
station's runner then reports it and retries with back-off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import cv2

from defectlens.errors import DefectLensError
from defectlens.inference.line.stations import (
    CameraSource,
    HotFolderSource,
    SimulatedCameraSource,
    SourceConfig,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
INCOMPLETE_SUFFIXES = {".part", ".tmp", ".filepart", ".crdownload"}


class SourceError(DefectLensError):
    """A source cannot deliver: camera unplugged, stream ended, folder gone."""


@dataclass(frozen=True)
class Frame:
    """One image from a source, with what the source knows about the part."""

    data: bytes
    captured_at: datetime
    serial: str | None = None
    camera: str | None = None


class FrameSource(Protocol):
    """A source that gives one frame per trigger."""

    def open(self) -> None: ...
    def grab(self) -> Frame: ...
    def close(self) -> None: ...


class SimulatedCamera:
    """Replays the images of a folder in name order, again from the start at the end."""

    def __init__(self, config: SimulatedCameraSource) -> None:
        self.config = config
        self._images: list[Path] = []
        self._next = 0

    def open(self) -> None:
        folder = self.config.folder
        if not folder.is_dir():
            raise SourceError(f"simulated camera: folder {folder} does not exist")
        self._images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._images:
            raise SourceError(f"simulated camera: no images in {folder}")

    def grab(self) -> Frame:
        if not self._images:
            raise SourceError("simulated camera: not open")
        path = self._images[self._next % len(self._images)]
        self._next += 1
        try:
            data = path.read_bytes()
        except OSError as error:
            raise SourceError(f"simulated camera: cannot read {path}: {error.strerror}") from None
        return Frame(data, datetime.now(UTC), camera=f"sim:{self.config.folder.name}")

    def close(self) -> None:
        self._images = []


class VideoCamera:
    """An OpenCV `VideoCapture` (device index, video file or RTSP URL); each grab encodes the
    newest frame as BMP (no compression to pay for, and the service decodes it as any
    upload)."""

    def __init__(self, config: CameraSource) -> None:
        self.config = config
        self._capture: Any = None
        self.warnings: list[str] = []

    def open(self) -> None:
        config = self.config
        capture = cv2.VideoCapture(config.device)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"camera {config.device!r}: cannot open it")
        self.warnings = []
        for name, prop, value in (
            ("exposure", cv2.CAP_PROP_EXPOSURE, config.exposure),
            ("gain", cv2.CAP_PROP_GAIN, config.gain),
            ("width", cv2.CAP_PROP_FRAME_WIDTH, config.width),
            ("height", cv2.CAP_PROP_FRAME_HEIGHT, config.height),
        ):
            if value is not None and not capture.set(prop, float(value)):
                warning = f"camera {config.device!r}: its backend does not support {name}"
                self.warnings.append(warning)
                log.warning(warning)
        self._capture = capture

    def grab(self) -> Frame:
        capture = self._capture
        if capture is None:
            raise SourceError(f"camera {self.config.device!r}: not open")
        ok, image = capture.read()
        if not ok and self.config.loop and isinstance(self.config.device, str):
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)  # a video file: start again
            ok, image = capture.read()
        if not ok or image is None:
            raise SourceError(f"camera {self.config.device!r}: no frame (unplugged or ended)")
        encoded, data = cv2.imencode(".bmp", image)
        if not encoded:
            raise SourceError(f"camera {self.config.device!r}: cannot encode the frame")
        return Frame(data.tobytes(), datetime.now(UTC), camera=str(self.config.device))

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def frame_source(config: SourceConfig) -> FrameSource:
    """The triggered source for a station's `source:` (not for a hot folder)."""
    if isinstance(config, SimulatedCameraSource):
        return SimulatedCamera(config)
    if isinstance(config, CameraSource):
        return VideoCamera(config)
    raise TypeError(f"{config.kind} is not a triggered source")


@dataclass(frozen=True)
class FolderPart:
    """A complete file in a hot folder."""

    path: Path
    size: int
    mtime_ns: int
    serial: str | None
    captured_at: datetime
    sidecar: Path | None

    @property
    def idempotency_key(self) -> str:
        """Name, size and modification time: the same file after a restart is the same part
        (its stored result is answered back), a new file of the same name is a new one."""
        digest = hashlib.sha256(f"{self.path.name}\0{self.size}\0{self.mtime_ns}".encode())
        return f"hotfolder:{digest.hexdigest()[:48]}"


class HotFolder:
    """A folder cameras write parts into. `poll` returns the files complete since the last
    poll; `finish` moves a file (and its sidecar) to `done/` or `failed/` (with a
    `<name>.reason.txt`)."""

    def __init__(self, config: HotFolderSource) -> None:
        self.config = config
        self.folder = config.path
        self._seen: dict[str, tuple[int, int, int]] = {}
        """name -> (size, mtime_ns, polls it stayed so)."""
        self._pattern = re.compile(config.serial_pattern) if config.serial_pattern else None

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"hot folder {self.folder} does not exist (unmounted?)")
        for name in ("done", "failed"):
            (self.folder / name).mkdir(exist_ok=True)

    def close(self) -> None:
        self._seen.clear()

    def poll(self) -> list[FolderPart]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError as error:
            raise SourceError(f"hot folder {self.folder}: {error.strerror}") from None
        ready: list[FolderPart] = []
        present: set[str] = set()
        for entry in sorted(entries, key=lambda e: e.name):
            path = Path(entry.path)
            if not _is_candidate(path) or not entry.is_file():
                continue
            present.add(entry.name)
            stat = entry.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
            before = self._seen.get(entry.name)
            polls = before[2] + 1 if before is not None and before[:2] == (size, mtime) else 1
            self._seen[entry.name] = (size, mtime, polls)
            if polls >= self.config.stable_checks and size > 0:
                ready.append(self._part(path, size, mtime))
        for name in set(self._seen) - present:
            del self._seen[name]
        return ready

    def _part(self, path: Path, size: int, mtime_ns: int) -> FolderPart:
        sidecar = path.with_suffix(".json")
        serial: str | None = path.stem
        captured = datetime.fromtimestamp(mtime_ns / 1e9, UTC)
        if self._pattern is not None:
            match = self._pattern.search(path.name)
            serial = match.group("serial") if match else None
        found = sidecar if sidecar.is_file() else None
        if found is not None:
            try:
                meta = json.loads(found.read_text(encoding="utf-8"))
                serial = str(meta.get("serial", serial)) if meta.get("serial") else serial
                if meta.get("captured_at"):
                    captured = datetime.fromisoformat(meta["captured_at"])
            except (OSError, ValueError, AttributeError) as error:
                log.warning("hot folder: sidecar %s unreadable (%s); using the name", found, error)
        return FolderPart(path, size, mtime_ns, serial, captured, found)

    def finish(self, part: FolderPart, outcome: str, reason: str | None = None) -> Path:
        """Move the part's file (and sidecar) to `done/` or `failed/`; a reason file beside a
        failed one. Returns the new path."""
        target_dir = self.folder / outcome
        target = _free_name(target_dir / part.path.name)
        if reason is not None:
            (target_dir / f"{target.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
        if part.sidecar is not None and part.sidecar.exists():
            os.replace(part.sidecar, target.with_suffix(".json"))
        os.replace(part.path, target)
        self._seen.pop(part.path.name, None)
        return target


def _is_candidate(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or path.suffix.lower() in INCOMPLETE_SUFFIXES:
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


def _free_name(target: Path) -> Path:
    """`target`, or `stem-1.suffix`, `stem-2.suffix`... if a file of that name is there."""
    candidate, n = target, 0
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
    return candidate
