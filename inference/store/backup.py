"""Backup and restore of a workspace: the database, the retained images, the model version
folders, the label store's files and the dataset versions together (`defectlens backup DEST`,
`defectlens restore SRC`).

The image, model, sample, region and dataset version rows are read from the very snapshot the
database copy holds (SQLite's online backup, or the snapshot PostgreSQL exports to pg_dump),
so every file in a backup belongs to a row in it; a row whose file was already gone is listed
in the manifest. Files that are one file in the workspace (a dataset version's hard links to
the label store's images) are one file in the backup and again after a restore.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

from alembic.runtime.migration import MigrationContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Connection, create_engine, func, inspect, select, text, update
from sqlalchemy.engine import URL
from tqdm import tqdm

from defectlens import __version__
from defectlens.datasets.labels.files import mask_file
from defectlens.errors import DefectLensError, InputError
from defectlens.inference.store.connect import parse_url, safe_url
from defectlens.inference.store.database import open_database
from defectlens.inference.store.tables import (
    DatasetVersionRow,
    ImageRow,
    LabelRegionRow,
    ModelVersionRow,
    ResultRow,
    SampleRow,
    utc_now,
)
from defectlens.settings import Settings

log = logging.getLogger(__name__)

FORMAT: Final = "defectlens-backup"
FORMAT_VERSION: Final = 2
"""2: the label store's files and the dataset versions too. Version 1 backups (without them)
still restore; a defectlens that reads only version 1 refuses a version 2 backup by name
rather than restoring it without its labels."""
MANIFEST = "manifest.json"
SQLITE_FILE = "defectlens.db"
POSTGRES_DUMP = "defectlens.dump"
IMAGES = "images"
MODELS = "models"
LABELS = "labels"
"""`<home>/labels/`, the label store's files (as `inference/service/labelling.py` has it)."""
DATASETS = "datasets"
"""`<home>/datasets/`, the dataset versions (as `inference/service/dataset_versions.py`)."""

_CHUNK = 1 << 20
_SQLITE_BUSY_S = 10.0
_LIBPQ_QUERY_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
}
"""URL query parameters libpq also takes from the environment."""


# -- the manifest ------------------------------------------------------------------------------


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseCopy(_Entry):
    dialect: Literal["sqlite", "postgresql"]
    file: str
    """The database file in the backup: a SQLite file or a pg_dump custom-format archive."""
    schema_revision: str | None
    """The Alembic revision of the copied schema; a restore migrates it to this version's."""
    consistency: str
    """How the files were matched to the database copy."""

    @field_validator("file")
    @classmethod
    def _inside(cls, name: str) -> str:
        return _member_name(name)


class Counts(_Entry):
    results: int = Field(ge=0)
    images: int = Field(ge=0)
    """Image rows in the database copy."""
    model_versions: int = Field(ge=0)
    """Model version rows in the database copy."""
    image_files: int = Field(ge=0)
    model_files: int = Field(ge=0)
    samples: int = Field(default=0, ge=0)
    """Label store sample rows in the database copy (0 in a version 1 backup)."""
    label_files: int = Field(default=0, ge=0)
    """Files under `labels/`: imported images, their templates and region masks."""
    dataset_versions: int = Field(default=0, ge=0)
    """Dataset version rows in the database copy."""
    dataset_files: int = Field(default=0, ge=0)


class Relocated(_Entry):
    """A row whose file or folder the backup holds at `stored_as`; a restore points the row at
    the restored copy."""

    id: int | str
    """The row's id (a dataset version's is its content hash)."""
    original: str
    stored_as: str

    @field_validator("stored_as")
    @classmethod
    def _inside(cls, name: str) -> str:
        return _member_name(name)


class Omitted(_Entry):
    """A row whose file or folder is not in the backup, and why."""

    what: Literal["image", "model", "sample", "reference", "mask", "dataset"]
    """The row: an image, a model version, a sample's image or its reference (the sample's
    id), a region's mask (the region's id), a dataset version."""
    id: int | str
    path: str
    reason: str


class BackupManifest(_Entry):
    """`manifest.json`: what a backup holds and the sha256 of every file in it."""

    format: Literal["defectlens-backup"]
    format_version: Literal[1, 2]
    created_at: datetime
    defectlens_version: str
    database: DatabaseCopy
    counts: Counts
    models: list[Relocated]
    """Model version rows whose folder is in the backup (stored relative to `models/`)."""
    absolute_images: list[Relocated]
    """Image rows that named their file by an absolute path inside the images folder; a
    restore rewrites them relative to the new one."""
    datasets: list[Relocated] = []
    """Dataset version rows whose folder is in the backup (stored relative to `datasets/`);
    a restore points them at the new datasets folder."""
    not_included: list[Omitted]
    files: dict[str, str]
    """Every file of the backup (path inside it, `/`-separated) and its sha256."""

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data: Any) -> Any:
        version = data.get("format_version") if isinstance(data, dict) else None
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ValueError(
                f"format_version {version} is newer than this defectlens ({__version__}) reads "
                f"({FORMAT_VERSION}); restore it with the version that wrote it "
                f"({data.get('defectlens_version')})"
            )
        return data

    @field_validator("files")
    @classmethod
    def _checksums(cls, files: dict[str, str]) -> dict[str, str]:
        for name, digest in files.items():
            _member_name(name)
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{name}: {digest!r} is not a sha256 hex digest")
        return files

    @model_validator(mode="after")
    def _database_listed(self) -> BackupManifest:
        if self.database.file not in self.files:
            raise ValueError(f"the database file {self.database.file} has no checksum in files")
        return self

    @property
    def carries_labels(self) -> bool:
        """Whether the backup holds the label store and the dataset versions (version 2 on):
        a restore then replaces `labels/` and `datasets/`, and leaves them alone otherwise."""
        return self.format_version >= 2


def _member_name(name: str) -> str:
    """`name` if it is a plain relative path inside the backup (no `..`, not absolute)."""
    path = PurePosixPath(name)
    if not name or "\\" in name or path.is_absolute() or ".." in path.parts or "." in path.parts:
        raise ValueError(f"{name!r} is not a relative path inside the backup")
    return name


def read_manifest(folder: Path) -> BackupManifest:
    """The manifest of the backup in `folder`; `InputError` if it is missing or invalid."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(f"{folder}: no such backup folder")
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"{path}: missing; {folder} is not a folder `defectlens backup` wrote "
            "(or that backup did not finish)"
        ) from None
    try:
        return BackupManifest.model_validate_json(content)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise InputError(
            f"{path}: not a valid defectlens backup manifest "
            f"({where + ': ' if where else ''}{problem['msg']}); the backup is damaged"
        ) from None


# -- backup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Folders:
    """The workspace's folders a backup copies from and a restore puts back, resolved."""

    images: Path
    models: Path
    labels: Path
    datasets: Path

    @classmethod
    def of(cls, settings: Settings) -> _Folders:
        return cls(
            images=settings.images_dir.resolve(),
            models=settings.models_dir.resolve(),
            labels=settings.labels_dir.resolve(),
            datasets=settings.datasets_dir.resolve(),
        )


@dataclass(frozen=True)
class _Snapshot:
    """The rows the copied database holds, read from the copy's own snapshot."""

    schema_revision: str | None
    results: int
    images: list[tuple[int, str]]
    models: list[tuple[int, str]]
    samples: int = 0
    label_files: list[tuple[Literal["sample", "reference", "mask"], int, str]] = field(
        default_factory=list
    )
    """Each label file a row names: (what, the sample's or region's id, path under labels/)."""
    datasets: list[tuple[str, str]] = field(default_factory=list)


def backup_workspace(settings: Settings, dest: Path) -> BackupManifest:
    """Back up the workspace's database, the image files its image rows name, the model
    folders under its models folder, the label files its sample and region rows name and the
    dataset version folders under its datasets folder into the new folder `dest`.

    Safe while the service runs and writes. Written into a hidden folder beside `dest` and
    renamed at the end, so an interrupted backup leaves nothing at `dest`. `InputError` if
    `dest` exists, if there is no database, or (PostgreSQL) if pg_dump is not on PATH.
    """
    dest = Path(dest).expanduser().absolute()
    if dest.exists() or dest.is_symlink():
        raise InputError(
            f"{dest}: already exists; a backup goes into a new folder (choose another DEST)"
        )
    url = parse_url(settings.resolved_database_url)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise InputError(f"{safe_url(url)}: backup supports SQLite and PostgreSQL databases")
    postgres = url.get_backend_name() == "postgresql"
    pg_dump = _postgres_tool("pg_dump", _pg_dump_guidance(url, dest)) if postgres else ""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _staging(dest.parent, f".{dest.name}.") as staging:
        if postgres:
            file = POSTGRES_DUMP
            snapshot = _postgres_snapshot(url, pg_dump, staging / file)
            consistency = (
                "pg_dump --snapshot; image, model, label and dataset rows read in that same "
                "REPEATABLE READ snapshot"
            )
        else:
            file = SQLITE_FILE
            snapshot = _sqlite_snapshot(_sqlite_file(url), staging / file)
            consistency = (
                "SQLite online backup; image, model, label and dataset rows read from the copy "
                "itself"
            )
        database = DatabaseCopy(
            dialect="postgresql" if postgres else "sqlite",
            file=file,
            schema_revision=snapshot.schema_revision,
            consistency=consistency,
        )
        manifest = _copy_files(settings, snapshot, database, staging)
        (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", "utf-8")
        _sync()
        if dest.exists():
            raise InputError(f"{dest}: appeared while the backup was written; nothing was kept")
        staging.rename(dest)
    _sync()
    log.info(
        "backup written",
        extra={"dest": str(dest), "results": manifest.counts.results, "files": len(manifest.files)},
    )
    return manifest


def _sqlite_file(url: URL) -> Path:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        raise InputError(
            f"database URL {safe_url(url)}: backup and restore need a SQLite database file "
            "(sqlite:///path/defectlens.db)"
        )
    return Path(database).expanduser().absolute()


def _sqlite_snapshot(source: Path, copy: Path) -> _Snapshot:
    if not source.is_file():
        raise InputError(
            f"{source}: no database file to back up; check DEFECTLENS_HOME and "
            "DEFECTLENS_DATABASE_URL"
        )
    with (
        closing(sqlite3.connect(source, timeout=_SQLITE_BUSY_S)) as live,
        closing(sqlite3.connect(copy)) as target,
    ):
        # One step: the whole copy comes from one read transaction, while writers carry on
        # (WAL). Copied in several steps, every write in between would restart it.
        live.backup(target)
        # The backup is one self-contained file; the restored store switches back to WAL.
        target.execute("PRAGMA journal_mode=DELETE")
    engine = create_engine(URL.create("sqlite", database=str(copy)))
    try:
        with engine.connect() as connection:
            return _read_snapshot(connection, str(source))
    finally:
        engine.dispose()


def _postgres_snapshot(url: URL, pg_dump: str, dump: Path) -> _Snapshot:
    database = open_database(url, migrate=False)
    try:
        connect = database.engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with connect as connection, connection.begin():
            # pg_dump imports this transaction's snapshot: the dump and the rows read here are
            # the same state of the database, whatever is written meanwhile.
            snapshot_id = str(connection.scalar(text("SELECT pg_export_snapshot()")))
            snapshot = _read_snapshot(connection, safe_url(url))
            _run_postgres_tool(
                [pg_dump, "--format=custom", f"--snapshot={snapshot_id}", f"--file={dump}"], url
            )
    finally:
        database.close()
    return snapshot


def _read_snapshot(connection: Connection, where: str) -> _Snapshot:
    tables = inspect(connection)
    if not tables.has_table(ResultRow.__tablename__):
        raise InputError(f"{where}: holds no defectlens result store; nothing to back up")
    revision = MigrationContext.configure(connection).get_current_revision()
    results = connection.scalar(select(func.count()).select_from(ResultRow)) or 0
    images = connection.execute(select(ImageRow.id, ImageRow.path).order_by(ImageRow.id))
    models = connection.execute(
        select(ModelVersionRow.id, ModelVersionRow.path).order_by(ModelVersionRow.id)
    )
    snapshot = _Snapshot(
        schema_revision=revision,
        results=int(results),
        images=[(int(row.id), str(row.path)) for row in images],
        models=[(int(row.id), str(row.path)) for row in models],
    )
    if not tables.has_table(SampleRow.__tablename__):
        return snapshot  # a database from before the label store (revision 0005)
    samples = connection.scalar(select(func.count()).select_from(SampleRow)) or 0
    label_files: list[tuple[Literal["sample", "reference", "mask"], int, str]] = []
    for row in connection.execute(
        select(SampleRow.id, SampleRow.path, SampleRow.reference_path).order_by(SampleRow.id)
    ):
        if row.path is not None:
            label_files.append(("sample", int(row.id), str(row.path)))
        if row.reference_path is not None:
            label_files.append(("reference", int(row.id), str(row.reference_path)))
    masks = connection.execute(
        select(LabelRegionRow.id, LabelRegionRow.mask_sha256)
        .where(LabelRegionRow.mask_sha256.is_not(None))
        .order_by(LabelRegionRow.id)
    )
    label_files += [("mask", int(row.id), mask_file(str(row.mask_sha256))) for row in masks]
    datasets = connection.execute(
        select(DatasetVersionRow.id, DatasetVersionRow.path).order_by(DatasetVersionRow.id)
    )
    return replace(
        snapshot,
        samples=int(samples),
        label_files=label_files,
        datasets=[(str(row.id), str(row.path)) for row in datasets],
    )


def _copy_files(
    settings: Settings, snapshot: _Snapshot, database: DatabaseCopy, staging: Path
) -> BackupManifest:
    """Copy the files the snapshot's rows name into `staging`; the manifest of it all."""
    folders = _Folders.of(settings)
    copier = _Copier(staging)
    omitted: list[Omitted] = []

    absolute: list[Relocated] = []
    images: dict[str, list[tuple[Literal["image"], int, str]]] = {}
    for image_id, path in snapshot.images:
        member = _member_under(folders.images, path)
        if member is None:
            omitted.append(
                Omitted(what="image", id=image_id, path=path, reason=f"outside {folders.images}")
            )
            continue
        name = f"{IMAGES}/{member}"
        if Path(path).is_absolute():
            absolute.append(Relocated(id=image_id, original=path, stored_as=name))
        images.setdefault(name, []).append(("image", image_id, path))
    image_files = _copy_named(
        copier, folders.images, IMAGES, images, omitted, "images", _MISSING_IMAGE
    )

    label_files: dict[str, list[tuple[Literal["sample", "reference", "mask"], int, str]]] = {}
    for what, row_id, path in snapshot.label_files:
        member = None if Path(path).is_absolute() else _member_under(folders.labels, path)
        if member is None:
            reason = f"not a path inside {folders.labels}"
            omitted.append(Omitted(what=what, id=row_id, path=path, reason=reason))
            continue
        label_files.setdefault(f"{LABELS}/{member}", []).append((what, row_id, path))
    label_count = _copy_named(
        copier, folders.labels, LABELS, label_files, omitted, "labels", "file missing (lost)"
    )

    models, model_files = _copy_folders(
        copier,
        folders.models,
        MODELS,
        "model",
        [(model_id, path, path) for model_id, path in snapshot.models],
        omitted,
    )
    # A relative dataset path is relative to the folder the freeze ran in, as it is read.
    datasets, dataset_files = _copy_folders(
        copier,
        folders.datasets,
        DATASETS,
        "dataset",
        [(version, path, str(Path(path).absolute())) for version, path in snapshot.datasets],
        omitted,
    )

    copier.files[database.file] = _sha256(staging / database.file)
    return BackupManifest(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        created_at=utc_now(),
        defectlens_version=__version__,
        database=database,
        counts=Counts(
            results=snapshot.results,
            images=len(snapshot.images),
            model_versions=len(snapshot.models),
            image_files=image_files,
            model_files=model_files,
            samples=snapshot.samples,
            label_files=label_count,
            dataset_versions=len(snapshot.datasets),
            dataset_files=dataset_files,
        ),
        models=models,
        absolute_images=absolute,
        datasets=datasets,
        not_included=omitted,
        files=copier.files,
    )


_MISSING_IMAGE: Final = "file missing (deleted after the snapshot, e.g. by retention, or lost)"


class _Copier:
    """Copies the workspace's files into the backup and keeps their sha256. A file that is
    the same file (inode) as one copied before, as a dataset version's hard links to the
    label store's images are, is linked to that copy rather than copied again."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.files: dict[str, str] = {}
        self._linked: dict[tuple[int, int, int, int], str] = {}

    def copy(self, source: Path, name: str) -> None:
        status = source.stat()
        if status.st_nlink == 1:
            self.files[name] = _copy(source, self.staging / name)
            return
        # Size and time too: an inode number freed by a deletion meanwhile may be reused.
        same = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
        earlier = self._linked.get(same)
        if earlier is None:
            self.files[name] = _copy(source, self.staging / name)
            self._linked[same] = name
        else:
            _link(self.staging / earlier, self.staging / name)
            self.files[name] = self.files[earlier]


def _copy_named(
    copier: _Copier,
    root: Path,
    prefix: str,
    rows_of: dict[str, list[tuple[Any, int, str]]],
    omitted: list[Omitted],
    desc: str,
    missing: str,
) -> int:
    """Copy the files under `root` that rows name (`prefix/member` -> the rows naming it);
    a missing file is reported for each of its rows. How many were copied."""
    copied = 0
    for name in tqdm(rows_of, desc=desc, unit="file", leave=False, disable=None):
        try:
            copier.copy(root / name.removeprefix(f"{prefix}/"), name)
            copied += 1
        except FileNotFoundError:
            omitted.extend(
                Omitted(what=what, id=row_id, path=path, reason=missing)
                for what, row_id, path in rows_of[name]
            )
    return copied


def _copy_folders(
    copier: _Copier,
    root: Path,
    prefix: str,
    what: Literal["model", "dataset"],
    rows: list[tuple[Any, str, str]],
    omitted: list[Omitted],
) -> tuple[list[Relocated], int]:
    """Copy the folders under `root` that rows name (model or dataset versions: id, path as
    stored, path to look up); the rows whose folder is in the backup, and how many files."""
    relocated: list[Relocated] = []
    files = 0
    for row_id, original, path in tqdm(
        rows, desc=f"{what}s", unit="version", leave=False, disable=None
    ):
        member = _member_under(root, path)
        folder = root / member if member is not None else Path(path)
        if member is None or not folder.is_dir():
            reason = f"outside {root}" if member is None else "folder missing"
            omitted.append(Omitted(what=what, id=row_id, path=original, reason=reason))
            continue
        name = f"{prefix}/{member}"
        if all(entry.stored_as != name for entry in relocated):
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                copier.copy(file, f"{name}/{file.relative_to(folder).as_posix()}")
                files += 1
        relocated.append(Relocated(id=row_id, original=original, stored_as=name))
    return relocated, files


def _member_under(root: Path, path: str) -> str | None:
    """`path` (absolute, or relative to `root`) relative to `root`, `/`-separated; None if it
    is not inside `root`."""
    full = (root / path).resolve()  # an absolute `path` replaces `root`
    if full == root or not full.is_relative_to(root):
        return None
    return full.relative_to(root).as_posix()


# -- restore -----------------------------------------------------------------------------------


def restore_workspace(settings: Settings, source: Path, force: bool = False) -> BackupManifest:
    """Restore the backup in `source` into the configured workspace and database.

    Every file's sha256 is checked against the manifest before anything is written. Refused
    when the target database holds results, the images, labels or datasets folder holds
    files or a model folder of the backup already exists, unless `force` (which replaces
    them). Model and dataset version rows are pointed at the new folders. A version 1 backup
    (before the label store was backed up) leaves `labels/` and `datasets/` as they are.
    Stop the service before restoring.
    """
    source = Path(source).expanduser().absolute()
    manifest = read_manifest(source)
    url = parse_url(settings.resolved_database_url)
    dialect = url.get_backend_name()
    if dialect != manifest.database.dialect:
        raise InputError(
            f"{source}: a {manifest.database.dialect} backup cannot be restored into the "
            f"{dialect} database {safe_url(url)}; point DEFECTLENS_DATABASE_URL at a "
            f"{manifest.database.dialect} database"
        )
    pg_restore = (
        _postgres_tool("pg_restore", _pg_restore_guidance(url, source))
        if dialect != "sqlite"
        else ""
    )
    verify_backup(source, manifest)
    home = settings.home.resolve()
    folders = _Folders.of(settings)
    if not force:
        _refuse_occupied(url, folders, manifest)

    home.mkdir(parents=True, exist_ok=True)
    with _staging(home, ".restore.") as staging:
        _stage_files(source, manifest, staging)
        if dialect == "postgresql":
            _sync()
            # One transaction: the database is restored whole or not at all.
            _run_postgres_tool(
                [
                    pg_restore,
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--no-privileges",
                    "--single-transaction",
                    f"--dbname={url.database or ''}",
                    str(source / manifest.database.file),
                ],
                url,
            )
            _move_in(manifest, staging, folders)
        else:
            database_file = _sqlite_file(url)
            with _staged_sqlite(source, manifest, database_file, folders) as database_temp:
                _sync()
                _move_in(manifest, staging, folders)
                # A WAL left by the replaced database must never be applied to the new file.
                for suffix in ("-wal", "-shm", "-journal"):
                    database_file.with_name(database_file.name + suffix).unlink(missing_ok=True)
                database_temp.replace(database_file)
        _sync()

    restored = open_database(url)  # migrates an older backup to this version's schema
    try:
        if dialect != "sqlite":
            with restored.engine.begin() as connection:
                _relocate(connection, manifest, folders)
    finally:
        restored.close()
    log.info("backup restored", extra={"source": str(source), "home": str(home)})
    return manifest


def verify_backup(source: Path, manifest: BackupManifest) -> None:
    """Check every file of the backup against its sha256 in the manifest (`InputError`
    naming the first that is missing or differs)."""
    for name, expected in tqdm(
        manifest.files.items(), desc="verify", unit="file", leave=False, disable=None
    ):
        path = source / name
        try:
            actual = _sha256(path)
        except FileNotFoundError:
            raise InputError(
                f"{path}: listed in {source / MANIFEST} but missing; the backup is incomplete, "
                "nothing was restored"
            ) from None
        if actual != expected:
            raise InputError(_mismatch(path, actual, expected))


def _mismatch(path: Path, actual: str, expected: str) -> str:
    return (
        f"{path}: sha256 {actual[:16]}… differs from the manifest's {expected[:16]}…; the "
        "backup is damaged or was altered, nothing was restored"
    )


def _refuse_occupied(url: URL, folders: _Folders, manifest: BackupManifest) -> None:
    held = []
    results = _stored_results(url)
    if results:
        held.append(f"{results} results in {safe_url(url)}")
    replaced = [folders.images]
    if manifest.carries_labels:
        replaced += [folders.labels, folders.datasets]
    held += [f"files in {root}" for root in replaced if root.is_dir() and any(root.iterdir())]
    existing = [
        folders.models / entry.stored_as.removeprefix(f"{MODELS}/")
        for entry in manifest.models
        if (folders.models / entry.stored_as.removeprefix(f"{MODELS}/")).exists()
    ]
    if existing:
        held.append(f"{len(existing)} of the backup's model folders, e.g. {existing[0]}")
    if held:
        raise InputError(
            f"the target workspace already holds {'; '.join(held)}; restore into an empty "
            "DEFECTLENS_HOME (and database), or pass --force to replace them"
        )


def _stored_results(url: URL) -> int:
    if url.get_backend_name() == "sqlite" and not _sqlite_file(url).exists():
        return 0  # connecting would create it
    database = open_database(url, migrate=False)
    try:
        with database.engine.connect() as connection:
            if not inspect(connection).has_table(ResultRow.__tablename__):
                return 0
            return int(connection.scalar(select(func.count()).select_from(ResultRow)) or 0)
    finally:
        database.close()


def _copy_checked(source: Path, name: str, manifest: BackupManifest, target: Path) -> None:
    """Copy the backup's file `name` to `target`, checking its sha256 again as it is read."""
    actual = _copy(source / name, target)
    if actual != manifest.files[name]:
        raise InputError(_mismatch(source / name, actual, manifest.files[name]))


def _relocate_sqlite(database: Path, manifest: BackupManifest, folders: _Folders) -> None:
    engine = create_engine(URL.create("sqlite", database=str(database)))
    try:
        with engine.begin() as connection:
            _relocate(connection, manifest, folders)
    finally:
        engine.dispose()


def _relocate(connection: Connection, manifest: BackupManifest, folders: _Folders) -> None:
    """Point the restored rows at the restored files: model and dataset versions at the new
    models and datasets folders (stored absolute, as registration and freezing do), absolute
    image paths relative. Label store paths are relative to `labels/` already."""
    for entry in manifest.models:
        path = folders.models / entry.stored_as.removeprefix(f"{MODELS}/")
        connection.execute(
            update(ModelVersionRow).where(ModelVersionRow.id == entry.id).values(path=str(path))
        )
    for entry in manifest.datasets:
        path = folders.datasets / entry.stored_as.removeprefix(f"{DATASETS}/")
        connection.execute(
            update(DatasetVersionRow)
            .where(DatasetVersionRow.id == str(entry.id))
            .values(path=str(path))
        )
    for entry in manifest.absolute_images:
        connection.execute(
            update(ImageRow)
            .where(ImageRow.id == entry.id)
            .values(path=entry.stored_as.removeprefix(f"{IMAGES}/"))
        )


def _stage_files(source: Path, manifest: BackupManifest, staging: Path) -> None:
    """Copy the backup's images, model folders, label files and dataset versions into
    `staging` (`images/`, and `labels/` and `datasets/` from version 2, even if empty).
    Files that are one file in the backup (hard links) are one file again."""
    folders = [IMAGES, LABELS, DATASETS] if manifest.carries_labels else [IMAGES]
    for folder in folders:
        (staging / folder).mkdir()
    prefixes = tuple(f"{folder}/" for folder in [*folders, MODELS])
    members = [n for n in manifest.files if n.startswith(prefixes)]
    staged: dict[tuple[int, int], str] = {}
    for name in tqdm(members, desc="restore", unit="file", leave=False, disable=None):
        status = (source / name).stat()
        same = (status.st_dev, status.st_ino)
        earlier = staged.get(same) if status.st_nlink > 1 else None
        if earlier is None:
            _copy_checked(source, name, manifest, staging / name)
            staged[same] = name
        else:  # the same file as one staged and checked already
            _link(staging / earlier, staging / name)


@contextmanager
def _staged_sqlite(
    source: Path, manifest: BackupManifest, database_file: Path, folders: _Folders
) -> Iterator[Path]:
    """The backup's database copied beside `database_file` under a temporary name, its rows
    pointed at the restored files; deleted at the end unless renamed away."""
    database_file.parent.mkdir(parents=True, exist_ok=True)
    temp = database_file.with_name(f".{database_file.name}.restoring")
    try:
        _copy_checked(source, manifest.database.file, manifest, temp)
        _relocate_sqlite(temp, manifest, folders)
        yield temp
    finally:
        temp.unlink(missing_ok=True)


def _move_in(manifest: BackupManifest, staging: Path, folders: _Folders) -> None:
    """Rename the staged model folders and the images (and labels and datasets) folders into
    place; what they replace goes into `staging`, deleted with it."""
    for folder in sorted({entry.stored_as for entry in manifest.models}):
        _swap_in(staging / folder, folders.models / folder.removeprefix(f"{MODELS}/"), staging)
    _swap_in(staging / IMAGES, folders.images, staging)
    if manifest.carries_labels:
        _swap_in(staging / LABELS, folders.labels, staging)
        _swap_in(staging / DATASETS, folders.datasets, staging)


def _swap_in(new: Path, target: Path, attic: Path) -> None:
    """Rename `new` to `target`; whatever was at `target` goes into `attic` (deleted with it)."""
    if target.exists() or target.is_symlink():
        target.rename(Path(tempfile.mkdtemp(prefix="replaced.", dir=attic)) / target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    new.rename(target)


# -- PostgreSQL tools --------------------------------------------------------------------------


def _postgres_tool(name: str, guidance: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise InputError(guidance)
    return found


def _pg_dump_guidance(url: URL, dest: Path) -> str:
    return (
        f"pg_dump is not on PATH: install the PostgreSQL client tools of the server's major "
        f"version (e.g. apt-get install postgresql-client) and run this again, or dump the "
        f"database yourself with `pg_dump --format=custom {_connection_options(url)} "
        f"--file={dest}/{POSTGRES_DUMP}` (password in PGPASSWORD); that dump alone holds no "
        f"images or model folders"
    )


def _pg_restore_guidance(url: URL, source: Path) -> str:
    return (
        f"pg_restore is not on PATH: install the PostgreSQL client tools of the server's major "
        f"version (e.g. apt-get install postgresql-client) and run this again, or restore the "
        f"database yourself with `pg_restore --clean --if-exists --no-owner --no-privileges "
        f"--single-transaction {_connection_options(url)} {source}/{POSTGRES_DUMP}` "
        f"(password in PGPASSWORD)"
    )


def _connection_options(url: URL) -> str:
    options = [f"--host={url.host}" if url.host else "", f"--port={url.port}" if url.port else ""]
    options += [f"--username={url.username}" if url.username else ""]
    options += [f"--dbname={url.database}" if url.database else ""]
    return " ".join(option for option in options if option)


def _run_postgres_tool(command: list[str], url: URL) -> None:
    """Run pg_dump or pg_restore against `url`; the connection (password included) goes in
    the environment, never on the command line."""
    tool = Path(command[0]).name
    log.info("running %s", " ".join([tool, *command[1:]]))
    done = subprocess.run(
        [*command, "--no-password"],
        env=_libpq_environment(url),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise DefectLensError(f"{tool} failed for {safe_url(url)}: {reason}; nothing was kept")


def _libpq_environment(url: URL) -> dict[str, str]:
    environment = dict(os.environ)
    values: dict[str, object] = {
        "PGHOST": url.host,
        "PGPORT": url.port,
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
    }
    for key, variable in _LIBPQ_QUERY_ENV.items():
        value = url.query.get(key)
        if isinstance(value, str):
            values[variable] = value
    environment.update({name: str(value) for name, value in values.items() if value})
    return environment


# -- files -------------------------------------------------------------------------------------


@contextmanager
def _staging(parent: Path, prefix: str) -> Iterator[Path]:
    """A hidden temporary folder in `parent`, deleted at the end unless renamed away."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy(source: Path, target: Path) -> str:
    """Copy one file; its sha256."""
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as reader, target.open("wb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    shutil.copystat(source, target)
    return digest.hexdigest()


def _link(existing: Path, target: Path) -> None:
    """`target` becomes the same file as `existing`: a hard link, or a copy where the disk
    has none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(existing, target)
    except OSError:
        shutil.copy2(existing, target)


def _sha256(path: Path) -> str:
    with path.open("rb") as reader:
        return hashlib.file_digest(reader, "sha256").hexdigest()


def _sync() -> None:
    """Everything written so far on disk before a rename makes it count (one sync, rather
    than one per file)."""
    if hasattr(os, "sync"):
        os.sync()


def not_included_lines(manifest: BackupManifest, folder: Path, limit: int = 10) -> list[str]:
    """What the backup in `folder` leaves out, one line each (the rest counted)."""
    lines = [
        f"not included: {entry.what} {entry.id} {entry.path}: {entry.reason}"
        for entry in manifest.not_included[:limit]
    ]
    if len(manifest.not_included) > limit:
        lines.append(
            f"not included: {len(manifest.not_included) - limit} more, "
            f"listed in {folder / MANIFEST}"
        )
    return lines
