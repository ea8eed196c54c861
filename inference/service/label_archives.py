"""Label folders as zip archives, for the API: an uploaded zip unpacked safely for an import,
a workspace folder named for an import checked to be inside the workspace, and an export or
a dataset version packed into a zip to download."""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from defectlens.errors import InputError, NotFound, TooLarge
from defectlens.settings import Settings

MAX_MEMBERS = 100_000
UNPACK_RATIO = 50
"""An uploaded zip may unpack to at most this many times its own size (a zip bomb is
refused before it fills the disk)."""


def upload_folder(settings: Settings) -> Path:
    """Where uploads are unpacked and exports packed, inside the workspace (same disk)."""
    return settings.home / "labels" / ".transfer"


@contextmanager
def unpacked(settings: Settings, upload: BinaryIO) -> Iterator[Path]:
    """An uploaded zip (a seekable file) unpacked into a temporary folder (removed
    afterwards). `InputError` for a file that is no zip, a member with an absolute path,
    `..`, or a link, and `TooLarge` for more than `UNPACK_RATIO` times the upload once
    unpacked."""
    parent = upload_folder(settings)
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=parent))
    try:
        _unzip(upload, folder)
        entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        # A zip of one folder: the folder is the import's root.
        yield entries[0] if len(entries) == 1 and entries[0].is_dir() else folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _unzip(upload: BinaryIO, folder: Path) -> None:
    size = upload.seek(0, 2)
    upload.seek(0)
    try:
        archive = zipfile.ZipFile(upload)
    except zipfile.BadZipFile:
        raise InputError(
            "the upload is not a zip file; send the labelled folder as a .zip"
        ) from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise TooLarge(f"the zip holds {len(members)} files, at most {MAX_MEMBERS}")
        budget = max(size, 1) * UNPACK_RATIO
        total = sum(member.file_size for member in members)
        if total > budget:
            raise TooLarge(
                f"the zip unpacks to {total} bytes, over {UNPACK_RATIO} times its size; "
                "put large imports in the workspace and import them by path"
            )
        for member in members:
            name = PurePosixPath(member.filename)
            mode = member.external_attr >> 16
            if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                raise InputError(f"zip member {member.filename!r}: paths must stay in the zip")
            if stat.S_ISLNK(mode):
                raise InputError(f"zip member {member.filename!r}: links are not accepted")
            target = folder / Path(*name.parts) if name.parts else folder
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with archive.open(member) as source, target.open("wb") as out:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > member.file_size:  # the header lied about the size
                        raise TooLarge(f"zip member {member.filename!r} is larger than declared")
                    out.write(chunk)


def workspace_path(settings: Settings, relative: str) -> Path:
    """A folder or file the API may import from: inside the workspace, never elsewhere on
    the server. `InputError` otherwise, `NotFound` if it does not exist."""
    home = settings.home.resolve()
    try:
        candidate = (home / relative).resolve()
        exists = candidate.exists()
    except (ValueError, OSError) as exc:  # a NUL character, a name too long for the disk
        raise InputError(f"path {relative[:80]!r} is not usable: {exc}") from None
    if not candidate.is_relative_to(home) or candidate == home:
        raise InputError(
            f"path {relative!r}: give a folder inside the workspace ({home}), e.g. "
            "labels/incoming/batch1; the API imports nothing from elsewhere on the server"
        )
    if not exists:
        raise NotFound(f"{relative!r} not found in the workspace ({home})")
    return candidate


def packed(settings: Settings, write: Callable[[Path], object]) -> Path:
    """A zip of the folder `write` fills (the folder is removed); the caller deletes the
    zip once it is sent."""
    parent = upload_folder(settings)
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-", dir=parent))
    try:
        folder = work / "export"
        write(folder)
        archive = shutil.make_archive(str(work) + "-zip", "zip", root_dir=folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Path(archive)
