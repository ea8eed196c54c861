"""Inspection results: a part's result with its defects, image rows and outbox rows, written
in one transaction; traceability queries and verdict counts, done by the database."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from defectlens.errors import Conflict, InputError
from defectlens.inference.store.checks import check_image_path, check_values
from defectlens.inference.store.database import Database
from defectlens.inference.store.records import StoredImage
from defectlens.inference.store.tables import (
    IMAGE_KINDS,
    VERDICTS,
    Base,
    ImageRow,
    OutboxRow,
    ResultDefectRow,
    ResultRow,
    utc_now,
)
from defectlens.prediction import Defect, ModelRef, Timings
from defectlens.result import InspectionResult

log = logging.getLogger(__name__)

MAX_PAGE = 1000
"""The most results one `list_results` call returns."""

_RESULTS = Base.metadata.tables[ResultRow.__tablename__]
_DEFECTS = Base.metadata.tables[ResultDefectRow.__tablename__]
_IMAGES = Base.metadata.tables[ImageRow.__tablename__]
_OUTBOX = Base.metadata.tables[OutboxRow.__tablename__]


class ResultExists(InputError):
    """A result with this id is already stored (a retried request); nothing was written."""


class DuplicatePart(Conflict):
    """The station already has a result stored under this idempotency key: the client
    retried a part whose answer it lost. Nothing was written; `existing` is the stored
    result, the answer the client should get again."""

    def __init__(self, message: str, existing: InspectionResult) -> None:
        super().__init__(message)
        self.existing = existing


class ResultStore:
    """Saving and reading inspection results."""

    db: Database
    instance: str

    def save_result(
        self,
        result: InspectionResult,
        images: Iterable[StoredImage | tuple[str, str | Path, int]] = (),
        sinks: Iterable[str] = (),
        idempotency_key: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Store a result with its defects, image rows and one outbox row per sink, atomically.

        `payload` is what the sinks send (built once, e.g. `delivery.payload_of(result)`);
        by default the result as JSON.

        `idempotency_key`, the client's key for the part, makes a retry safe: if the station
        already has a result under it, `DuplicatePart` carries that result, also when two
        retries race (the database's unique index decides which is first). Raises
        `ResultExists` if the result id is taken, `InputError` for a field the database
        cannot hold; in each case nothing is written.
        """
        if idempotency_key is not None and not idempotency_key.strip():
            raise InputError("idempotency key is empty; send a non-empty key or none")
        rows = result_rows(result, images, sinks, self.instance, idempotency_key, payload)
        try:
            with self.db.write() as session:
                insert_rows(session, rows)
        except IntegrityError as error:
            if idempotency_key is not None:
                existing = self.find_result_by_idempotency_key(result.station, idempotency_key)
                if existing is not None:
                    raise DuplicatePart(
                        f"station {result.station}: idempotency key {idempotency_key!r} is "
                        f"already stored as result {existing.result_id}; nothing was written",
                        existing,
                    ) from error
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

    def find_result_by_idempotency_key(self, station: str, key: str) -> InspectionResult | None:
        """The result the station stored under the client's idempotency key, if any."""
        with self.db.read() as session:
            row = session.scalars(
                select(ResultRow).where(
                    ResultRow.station == station, ResultRow.idempotency_key == key
                )
            ).first()
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
        query = query.where(*received_between(since, until))
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
            .where(*received_between(since, until))
            .group_by(ResultRow.verdict)
        )
        if station is not None:
            query = query.where(ResultRow.station == station)
        counts = dict.fromkeys(VERDICTS, 0)
        with self.db.read() as session:
            for verdict, count in session.execute(query):
                counts[verdict] = int(count)
        return {**counts, "total": sum(counts.values())}


def insert_rows(session: Session, rows: list[tuple[Table, list[dict[str, Any]]]]) -> None:
    """Insert `result_rows`' rows in the transaction of `session`: the parent first (its
    children reference it), each child table in one executemany."""
    for table, values in rows:
        if values:
            session.execute(insert(table), values)


def result_rows(
    result: InspectionResult,
    images: Iterable[StoredImage | tuple[str, str | Path, int]],
    sinks: Iterable[str],
    instance: str,
    idempotency_key: str | None = None,
    payload: dict[str, Any] | None = None,
) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The rows `save_result` inserts, table by table in insertion order, each checked; the
    image rows carry the service `instance`."""
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
        check_image_path(str(path))
        image_rows.append(
            {
                "result_id": result_id,
                "kind": kind,
                "path": str(path),
                "bytes": size,
                "created_at": result.received_at,
                "labeled": False,
                "instance": instance,
            }
        )
    outbox = []
    sink_names = list(dict.fromkeys(sinks))
    if sink_names:
        if payload is None:
            payload = result.model_dump(mode="json", by_alias=True)
        now = utc_now()
        outbox = [
            {
                "result_id": result_id,
                "sink": sink,
                "station": result.station,
                "payload": payload,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for sink in sink_names
        ]
    rows: list[tuple[Table, list[dict[str, Any]]]] = [
        (_RESULTS, [{**_result_values(result), "idempotency_key": idempotency_key}]),
        (_DEFECTS, defects),
        (_IMAGES, image_rows),
        (_OUTBOX, outbox),
    ]
    for table, values in rows:
        for row in values:
            check_values(table, row)
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


def received_between(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    """Conditions on the received time: `since` inclusive, `until` exclusive."""
    if since is not None and until is not None and since >= until:
        raise InputError(f"time range: since {since.isoformat()} is not before until")
    conditions = []
    if since is not None:
        conditions.append(ResultRow.received_at >= since)
    if until is not None:
        conditions.append(ResultRow.received_at < until)
    return conditions
