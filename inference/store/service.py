"""The store's operations, as the API and CLI call them: each one transaction, all or nothing.

Results and their traceability, stations, model versions and deployments (promote, rollback),
API keys, labels, image retention and report aggregates. Callers get `InspectionResult`s and
the frozen records of `records.py`, never ORM rows.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, String, Table, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from defectlens.errors import InputError
from defectlens.inference.store import retention
from defectlens.inference.store.database import Database
from defectlens.inference.store.keys import hash_key, hashes_match, key_prefix, new_key
from defectlens.inference.store.records import (
    ApiKey,
    AuditEntry,
    Deployment,
    ModelVersion,
    Station,
    StoredImage,
)
from defectlens.inference.store.tables import (
    IMAGE_KINDS,
    ROLES,
    VERDICTS,
    ApiKeyRow,
    AuditLogRow,
    Base,
    DeploymentRow,
    ImageRow,
    LabelRow,
    ModelVersionRow,
    OutboxRow,
    ResultDefectRow,
    ResultRow,
    StationRow,
    utc_now,
)
from defectlens.prediction import Defect, ModelRef, Timings
from defectlens.result import InspectionResult

log = logging.getLogger(__name__)

MAX_PAGE = 1000
"""The most results one `list_results` call returns."""

_DUMMY_SHA256 = "0" * 64
_INT32 = 2**31 - 1

_RESULTS = Base.metadata.tables[ResultRow.__tablename__]
_DEFECTS = Base.metadata.tables[ResultDefectRow.__tablename__]
_IMAGES = Base.metadata.tables[ImageRow.__tablename__]
_OUTBOX = Base.metadata.tables[OutboxRow.__tablename__]


class ResultExists(InputError):
    """A result with this id is already stored (a retried request); nothing was written."""


class Store:
    """The result store's operations on one `Database`."""

    def __init__(self, database: Database) -> None:
        self.db = database

    # -- results ------------------------------------------------------------------------------

    def save_result(
        self,
        result: InspectionResult,
        images: Iterable[StoredImage | tuple[str, str | Path, int]] = (),
        sinks: Iterable[str] = (),
    ) -> None:
        """Store a result with its defects, image rows and one outbox row per sink, atomically.

        Raises `ResultExists` if the result id is taken, `InputError` for a field the database
        cannot hold; in either case nothing is written.
        """
        rows = _result_rows(result, images, sinks)
        try:
            # The parent first (its children reference it), each child table in one
            # executemany, on the driver: this is the per-part path (`Database.insert_rows`).
            self.db.insert_rows(rows)
        except IntegrityError as error:
            if self.get_result(result.result_id) is not None:
                raise ResultExists(
                    f"result {result.result_id} is already stored; nothing was written"
                ) from error
            raise
        log.debug(
            "stored result",
            extra={
                "result_id": result.result_id,
                "station": result.station,
                "serial": result.serial,
            },
        )

    def get_result(self, result_id: str) -> InspectionResult | None:
        with self.db.read() as session:
            row = session.get(ResultRow, result_id)
            return None if row is None else _inspection_result(row)

    def list_results(
        self,
        station: str | None = None,
        line: str | None = None,
        serial: str | None = None,
        verdict: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[InspectionResult], str | None]:
        """Results newest first, filtered; `since` inclusive, `until` exclusive (received time).

        Returns a page and the cursor for the next one (None on the last page): pass it back
        as `cursor` with the same filters.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise InputError(f"limit {limit}: must be between 1 and {MAX_PAGE}")
        if verdict is not None and verdict not in VERDICTS:
            raise InputError(f"verdict {verdict!r}: expected one of {', '.join(VERDICTS)}")
        query = select(ResultRow).order_by(ResultRow.result_id.desc()).limit(limit + 1)
        for column, value in (
            (ResultRow.station, station),
            (ResultRow.line, line),
            (ResultRow.serial, serial),
            (ResultRow.verdict, verdict),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.where(*_received_between(since, until))
        if cursor is not None:
            if not cursor or len(cursor) > 64:
                raise InputError(f"cursor {cursor!r} is not one this service handed out")
            query = query.where(ResultRow.result_id < cursor)
        with self.db.read() as session:
            rows = list(session.scalars(query))
            page = [_inspection_result(row) for row in rows[:limit]]
        next_cursor = page[-1].result_id if len(rows) > limit else None
        return page, next_cursor

    def verdict_counts(
        self,
        station: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, int]:
        """Parts inspected by verdict (`OK`, `NG`) and in all (`total`), counted by the database."""
        query = (
            select(ResultRow.verdict, func.count())
            .where(*_received_between(since, until))
            .group_by(ResultRow.verdict)
        )
        if station is not None:
            query = query.where(ResultRow.station == station)
        counts = dict.fromkeys(VERDICTS, 0)
        with self.db.read() as session:
            for verdict, count in session.execute(query):
                counts[verdict] = int(count)
        return {**counts, "total": sum(counts.values())}

    # -- labels ------------------------------------------------------------------------------

    def add_label(
        self,
        result_id: str,
        label: str,
        author: str,
        defect_class: str | None = None,
        overrides_label_id: int | None = None,
    ) -> int:
        """Record a QA engineer's label on a result; its images become exempt from retention."""
        if label not in VERDICTS:
            raise InputError(f"label {label!r}: expected one of {', '.join(VERDICTS)}")
        with self.db.write() as session:
            if session.get(ResultRow, result_id) is None:
                raise InputError(f"result {result_id!r} not found; nothing to label")
            if overrides_label_id is not None:
                previous = session.get(LabelRow, overrides_label_id)
                if previous is None or previous.result_id != result_id:
                    raise InputError(
                        f"label {overrides_label_id} is not a label of result {result_id}"
                    )
            row = LabelRow(
                result_id=result_id,
                label=label,
                defect_class=defect_class,
                author=author,
                overrides_label_id=overrides_label_id,
            )
            _check_row(row)
            session.add(row)
            # Mark the images too, so retention's guard holds even while this commits.
            for image in session.scalars(
                select(ImageRow).where(ImageRow.result_id == result_id).with_for_update()
            ):
                image.labeled = True
            session.flush()
            return row.id

    # -- stations ----------------------------------------------------------------------------

    def ensure_station(
        self, station_id: str, line: str | None = None, description: str | None = None
    ) -> Station:
        """The station, created if new; a given `line` or `description` replaces the stored one."""
        with self.db.write() as session:
            row = _ensure_station(session, station_id)
            if line is not None:
                row.line = line
            if description is not None:
                row.description = description
            _check_row(row)
            session.flush()
            return Station.of(row)

    def get_station(self, station_id: str) -> Station | None:
        with self.db.read() as session:
            row = session.get(StationRow, station_id)
            return None if row is None else Station.of(row)

    def list_stations(self) -> list[Station]:
        with self.db.read() as session:
            return [Station.of(row) for row in session.scalars(select(StationRow).order_by("id"))]

    # -- model versions and deployments -------------------------------------------------------

    def register_model_version(
        self,
        name: str,
        version: str,
        family: str,
        path: str | Path,
        sha256: str,
        metrics: dict[str, Any] | None = None,
    ) -> int:
        """The id of the model version, registering it if new. Registering the same name and
        version again returns the same id; with a different sha256 it is an `InputError`
        (a model version never changes)."""
        values = {
            "name": name,
            "version": version,
            "family": family,
            "path": _model_path(path),
            "sha256": sha256,
            "metrics": metrics or {},
            "created_at": utc_now(),
        }
        _check_row(ModelVersionRow(**values))
        with self.db.write() as session:
            session.execute(_insert_ignore(session, ModelVersionRow, values))
            row = session.scalars(
                select(ModelVersionRow).where(
                    ModelVersionRow.name == name, ModelVersionRow.version == version
                )
            ).one()
            if row.sha256 != sha256:
                raise InputError(
                    f"model {name} {version} is already registered with sha256 {row.sha256}, "
                    f"not {sha256}: a model version never changes; train a new version"
                )
            return row.id

    def list_model_versions(self) -> list[ModelVersion]:
        """Every registered model version, newest registration first."""
        with self.db.read() as session:
            rows = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id.desc()))
            return [ModelVersion.of(row) for row in rows]

    def get_model_version(self, model: int | str | Path) -> ModelVersion | None:
        """A model version by id or by its folder's path."""
        with self.db.read() as session:
            row = _find_model_version(session, model)
            return None if row is None else ModelVersion.of(row)

    def promote(self, station_id: str, model: int | str | Path, actor: str) -> Deployment:
        """Deploy a registered model version (by id or folder path) to a station, creating the
        station if new. The previous deployment stays in the history, inactive. Promoting the
        version already active changes nothing."""
        with self.db.write() as session:
            version = _find_model_version(session, model)
            if version is None:
                raise InputError(
                    f"model {model}: not a registered model version; register the folder first "
                    "(`defectlens models promote MODEL_DIR` does both)"
                )
            station = _ensure_station(session, station_id, lock=True)
            current = _active_deployment(session, station.id)
            if current is not None and current.model_version_id == version.id:
                return Deployment.of(current)
            if current is not None:
                current.active = False
                session.flush()  # the one-active-per-station index sees one row at a time
            row = DeploymentRow(
                station_id=station.id,
                model_version=version,
                promoted_by=actor,
                active=True,
                promoted_at=utc_now(),
            )
            session.add(row)
            session.flush()
            _audit(
                session,
                actor,
                "promote",
                f"station:{station.id}",
                {
                    "deployment_id": row.id,
                    "model_version_id": version.id,
                    "model": f"{version.name} {version.version}",
                    "previous_deployment_id": current.id if current else None,
                },
            )
            return Deployment.of(row)

    def rollback(self, station_id: str, actor: str) -> Deployment:
        """Re-activate the deployment that preceded the active one (skipping any that were
        rolled back). `InputError` if there is none."""
        with self.db.write() as session:
            if session.get(StationRow, station_id, with_for_update=True) is None:
                raise InputError(f"station {station_id!r} not found; nothing to roll back")
            current = _active_deployment(session, station_id)
            if current is None:
                raise InputError(f"station {station_id}: no active model, nothing to roll back")
            previous = session.scalars(
                select(DeploymentRow)
                .where(
                    DeploymentRow.station_id == station_id,
                    DeploymentRow.id < current.id,
                    DeploymentRow.rolled_back_at.is_(None),
                )
                .order_by(DeploymentRow.id.desc())
                .limit(1)
            ).first()
            if previous is None:
                model = current.model_version
                raise InputError(
                    f"station {station_id}: nothing to roll back to; {model.name} "
                    f"{model.version} is its first deployment"
                )
            current.active = False
            current.rolled_back_at = utc_now()
            session.flush()
            previous.active = True
            session.flush()
            _audit(
                session,
                actor,
                "rollback",
                f"station:{station_id}",
                {
                    "from_deployment_id": current.id,
                    "to_deployment_id": previous.id,
                    "model_version_id": previous.model_version_id,
                    "model": f"{previous.model_version.name} {previous.model_version.version}",
                },
            )
            return Deployment.of(previous)

    def active_model(self, station_id: str) -> ModelVersion | None:
        deployment = self.active_deployment(station_id)
        return None if deployment is None else deployment.model_version

    def active_deployment(self, station_id: str) -> Deployment | None:
        with self.db.read() as session:
            row = _active_deployment(session, station_id)
            return None if row is None else Deployment.of(row)

    def active_deployments(self) -> list[Deployment]:
        """The active deployment of every station that has one (what to load at start)."""
        with self.db.read() as session:
            rows = session.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.active.is_(True))
                .order_by(DeploymentRow.station_id)
            )
            return [Deployment.of(row) for row in rows]

    def deployment_history(self, station_id: str) -> list[Deployment]:
        """Every deployment of the station, newest first."""
        with self.db.read() as session:
            rows = session.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.station_id == station_id)
                .order_by(DeploymentRow.id.desc())
            )
            return [Deployment.of(row) for row in rows]

    # -- API keys ----------------------------------------------------------------------------

    def create_key(self, role: str, name: str, actor: str = "cli") -> tuple[int, str]:
        """A new key for `role`: its id and the plaintext, which is shown once and not stored."""
        if role not in ROLES:
            raise InputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        for _attempt in range(3):
            prefix, plaintext = new_key()
            row = ApiKeyRow(
                prefix=prefix,
                sha256=hash_key(plaintext),
                role=role,
                name=name,
                created_at=utc_now(),
            )
            _check_row(row)
            try:
                with self.db.write() as session:
                    session.add(row)
                    session.flush()
                    _audit(
                        session,
                        actor,
                        "key.create",
                        f"key:{row.id}",
                        {"role": role, "name": name, "prefix": prefix},
                    )
                    return row.id, plaintext
            except IntegrityError:  # the random prefix was taken: draw another
                log.info("API key prefix %s taken; drawing another", prefix)
        raise RuntimeError("could not draw an unused API key prefix in three tries")

    def verify_key(self, plaintext: str) -> tuple[int, str] | None:
        """(key id, role) for a valid, unrevoked key; None otherwise. The hash comparison
        takes the same time whether or not the prefix exists."""
        prefix = key_prefix(plaintext)
        with self.db.read() as session:
            row = (
                session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).first()
                if prefix is not None
                else None
            )
            stored = row.sha256 if row is not None else _DUMMY_SHA256
            matches = hashes_match(plaintext, stored)
            if row is None or not matches or row.revoked_at is not None:
                return None
            return row.id, row.role

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included (they show their `revoked_at`)."""
        with self.db.read() as session:
            return [ApiKey.of(row) for row in session.scalars(select(ApiKeyRow).order_by("id"))]

    def revoke_key(self, key_id: int, actor: str = "cli") -> ApiKey:
        """Revoke a key at once; revoking it again changes nothing."""
        with self.db.write() as session:
            row = session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None:
                raise InputError(f"API key {key_id} not found; `defectlens keys list` shows them")
            if row.revoked_at is None:
                row.revoked_at = utc_now()
                _audit(session, actor, "key.revoke", f"key:{row.id}", {"prefix": row.prefix})
            session.flush()
            return ApiKey.of(row)

    # -- audit and retention ----------------------------------------------------------------

    def audit_entries(self, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first, optionally for one target (e.g. `station:S1`)."""
        query = select(AuditLogRow).order_by(AuditLogRow.id.desc()).limit(limit)
        if target is not None:
            query = query.where(AuditLogRow.target == target)
        with self.db.read() as session:
            return [AuditEntry.of(row) for row in session.scalars(query)]

    def apply_retention(
        self,
        images_dir: str | Path,
        max_age_days: float | None,
        max_bytes: int | None,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Delete retained images older than `max_age_days`, then the oldest ones until all
        images fit `max_bytes`; never an image whose result is labeled. Returns
        `{"deleted": files, "freed_bytes": bytes}`."""
        return retention.apply_retention(self.db, Path(images_dir), max_age_days, max_bytes, now)


# -- helpers -------------------------------------------------------------------------------------


def _result_rows(
    result: InspectionResult,
    images: Iterable[StoredImage | tuple[str, str | Path, int]],
    sinks: Iterable[str],
) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The rows `save_result` inserts, table by table in insertion order, each checked."""
    result_id = result.result_id
    defects = []
    for defect in result.defects:
        x0, y0, x1, y1 = defect.box
        defects.append(
            {
                "result_id": result_id,
                "class": defect.class_,
                "score": defect.score,
                "x0": x0,
                "y0": y0,
                "x1": x1,
                "y1": y1,
                "area_px": defect.area_px,
            }
        )
    image_rows = []
    for kind, path, size in images:
        if kind not in IMAGE_KINDS:
            raise InputError(f"image kind {kind!r}: expected one of {', '.join(IMAGE_KINDS)}")
        if size < 0:
            raise InputError(f"image {path}: size {size} bytes is negative")
        image_rows.append(
            {
                "result_id": result_id,
                "kind": kind,
                "path": str(path),
                "bytes": size,
                "created_at": result.received_at,
                "labeled": False,
            }
        )
    outbox = []
    sink_names = list(dict.fromkeys(sinks))
    if sink_names:
        payload = result.model_dump(mode="json", by_alias=True)
        now = utc_now()
        outbox = [
            {
                "result_id": result_id,
                "sink": sink,
                "payload": payload,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for sink in sink_names
        ]
    rows: list[tuple[Table, list[dict[str, Any]]]] = [
        (_RESULTS, [_result_values(result)]),
        (_DEFECTS, defects),
        (_IMAGES, image_rows),
        (_OUTBOX, outbox),
    ]
    for table, values in rows:
        for row in values:
            _check_values(table, row)
    return rows


def _result_values(result: InspectionResult) -> dict[str, Any]:
    return {
        "result_id": result.result_id,
        "verdict": result.verdict,
        "score": result.score,
        "threshold": result.threshold,
        "station": result.station,
        "line": result.line,
        "product": result.product,
        "serial": result.serial,
        "camera": result.camera,
        "captured_at": result.captured_at,
        "received_at": result.received_at,
        "model_name": result.model.name,
        "model_version": result.model.version,
        "timings_ms": result.timings_ms.model_dump(),
        "image_url": result.image_url,
        "heatmap_url": result.heatmap_url,
    }


def _inspection_result(row: ResultRow) -> InspectionResult:
    return InspectionResult(
        result_id=row.result_id,
        verdict=row.verdict,  # type: ignore[arg-type]  # the CHECK constraint keeps it OK/NG
        score=row.score,
        threshold=row.threshold,
        defects=[
            Defect.model_validate(
                {
                    "class": d.class_,
                    "score": d.score,
                    "box": (d.x0, d.y0, d.x1, d.y1),
                    "area_px": d.area_px,
                }
            )
            for d in row.defects
        ],
        timings_ms=Timings.model_validate(row.timings_ms),
        model=ModelRef(name=row.model_name, version=row.model_version),
        station=row.station,
        line=row.line,
        product=row.product,
        serial=row.serial,
        camera=row.camera,
        captured_at=row.captured_at,
        received_at=row.received_at,
        image_url=row.image_url,
        heatmap_url=row.heatmap_url,
    )


def _received_between(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    """Conditions on the received time: `since` inclusive, `until` exclusive."""
    if since is not None and until is not None and since >= until:
        raise InputError(f"time range: since {since.isoformat()} is not before until")
    conditions = []
    if since is not None:
        conditions.append(ResultRow.received_at >= since)
    if until is not None:
        conditions.append(ResultRow.received_at < until)
    return conditions


def _check_row(row: Base) -> None:
    """`_check_values` for an ORM row."""
    table = Base.metadata.tables[row.__tablename__]
    mapper = inspect(row).mapper
    _check_values(table, {a.columns[0].name: getattr(row, a.key) for a in mapper.column_attrs})


def _check_values(table: Table, values: dict[str, Any]) -> None:
    """Refuse, on every database alike, values PostgreSQL would reject and SQLite would keep:
    text over the column's length or with NUL characters, integers beyond 32 bits, non-finite
    numbers. `values` maps column names to the values about to be written."""
    lengths = _text_lengths(table)
    for name, value in values.items():
        where = f"{table.name}.{name}"
        if isinstance(value, str):
            if "\x00" in value:
                raise InputError(f"{where}: text contains a NUL character")
            length = lengths.get(name)
            if length is not None and len(value) > length:
                raise InputError(f"{where}: {len(value)} characters, at most {length} allowed")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not -_INT32 <= value <= _INT32:
            raise InputError(f"{where}: {value} is out of range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where}: {value} is not a finite number")
        elif isinstance(value, dict) and not _json_finite(value):
            raise InputError(f"{where}: holds a number that is not finite")


@functools.cache
def _text_lengths(table: Table) -> dict[str, int | None]:
    """Column name → the longest text it holds (None: unlimited), for `_check_values`."""
    return {
        column.name: column.type.length if isinstance(column.type, String) else None
        for column in table.columns
    }


def _json_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_json_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_json_finite(item) for item in value)
    return True


def _insert_ignore(session: Session, table: type[Base], values: dict[str, Any]) -> Any:
    """INSERT that does nothing when a unique key is taken (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).values(**values).on_conflict_do_nothing()


def _ensure_station(session: Session, station_id: str, lock: bool = False) -> StationRow:
    if not station_id or not station_id.strip():
        raise InputError("station id is empty")
    _check_row(StationRow(id=station_id))
    session.execute(
        _insert_ignore(session, StationRow, {"id": station_id, "created_at": utc_now()})
    )
    row = session.get(StationRow, station_id, with_for_update=lock)
    assert row is not None
    return row


def _active_deployment(session: Session, station_id: str) -> DeploymentRow | None:
    return session.scalars(
        select(DeploymentRow).where(
            DeploymentRow.station_id == station_id, DeploymentRow.active.is_(True)
        )
    ).first()


def _model_path(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def _find_model_version(session: Session, model: int | str | Path) -> ModelVersionRow | None:
    if isinstance(model, bool):
        raise InputError(f"model {model!r}: expected a model version id or folder path")
    if isinstance(model, int):
        return session.get(ModelVersionRow, model)
    return session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.path == _model_path(model))
        .order_by(ModelVersionRow.id.desc())
    ).first()


def _audit(session: Session, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    row = AuditLogRow(actor=actor, action=action, target=target, detail=detail, at=utc_now())
    _check_row(row)
    session.add(row)
