"""The review queue: production parts with a retained image, in the order a QA engineer gains
most by labelling them, chosen and ordered by the database.

Order: parts the model called NG (closest to the threshold first), then OK parts near the
threshold, then a random sample of the other OK parts (the service keeps only a share of OK
images; they come in the order of their ids' random bits), then labelled parts whose latest
label disagrees with the model. Parts whose latest label agrees with the model have nothing
left to learn from and are not in the queue (the gallery shows every part, newest first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, select

from defectlens.errors import InputError
from defectlens.inference.store.database import Database
from defectlens.inference.store.results import received_between
from defectlens.inference.store.tables import VERDICTS, ImageRow, LabelRow, ResultRow

Reason = Literal["ng", "near_threshold", "ok_sample", "disagrees", "agrees"]
Order = Literal["queue", "newest"]

NEAR_THRESHOLD = 0.15
"""An OK part whose score is within this of the threshold is `near_threshold` (scores are
normalised so that the threshold is about 0.5)."""
MAX_REVIEW_PAGE = 500


@dataclass(frozen=True)
class ReviewFilters:
    """What the reviewer narrows the parts to (None: any)."""

    stations: tuple[str, ...] | None = None
    """The stations the caller may see (a key's scope), None: all."""
    station: str | None = None
    verdict: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None
    max_score: float | None = None
    labelled: bool | None = None


@dataclass(frozen=True)
class ReviewItem:
    """A part in the queue or gallery: the model's answer, the latest label, why it is there."""

    result_id: str
    station: str
    serial: str | None
    verdict: str
    score: float
    threshold: float
    received_at: datetime
    model_version: str
    label: str | None
    label_class: str | None
    labelled_by: str | None
    reason: Reason


def review_items(
    db: Database,
    filters: ReviewFilters,
    order: Order = "queue",
    limit: int = 60,
    offset: int = 0,
) -> tuple[list[ReviewItem], int]:
    """A page of parts and how many match in all (`order`: `queue` by value to label,
    `newest` for the gallery)."""
    if not 1 <= limit <= MAX_REVIEW_PAGE:
        raise InputError(f"limit {limit}: must be between 1 and {MAX_REVIEW_PAGE}")
    if offset < 0:
        raise InputError(f"offset {offset}: must be 0 or more")
    if filters.verdict is not None and filters.verdict not in VERDICTS:
        raise InputError(f"verdict {filters.verdict!r}: expected one of {', '.join(VERDICTS)}")
    latest = (
        select(LabelRow.result_id, func.max(LabelRow.id).label("label_id"))
        .where(LabelRow.result_id.is_not(None))
        .group_by(LabelRow.result_id)
        .subquery()
    )
    label = LabelRow.__table__.alias("latest_label")
    near = ResultRow.score >= ResultRow.threshold - NEAR_THRESHOLD
    reason = case(
        (and_(label.c.label.is_not(None), label.c.label != ResultRow.verdict), "disagrees"),
        (label.c.label.is_not(None), "agrees"),
        (ResultRow.verdict == "NG", "ng"),
        (near, "near_threshold"),
        else_="ok_sample",
    )
    rank = case(
        (and_(label.c.label.is_not(None), label.c.label != ResultRow.verdict), 3),
        (label.c.label.is_not(None), 4),
        (ResultRow.verdict == "NG", 0),
        (near, 1),
        else_=2,
    )
    has_image = exists().where(ImageRow.result_id == ResultRow.result_id, ImageRow.kind == "image")
    query = (
        select(
            ResultRow.result_id,
            ResultRow.station,
            ResultRow.serial,
            ResultRow.verdict,
            ResultRow.score,
            ResultRow.threshold,
            ResultRow.received_at,
            ResultRow.model_version,
            label.c.label,
            label.c.defect_class,
            label.c.author,
            reason.label("reason"),
        )
        .outerjoin(latest, latest.c.result_id == ResultRow.result_id)
        .outerjoin(label, label.c.id == latest.c.label_id)
        .where(has_image, *_conditions(filters, label.c.label))
    )
    if order == "queue":
        query = query.where(rank != 4)
        random_bits = func.substr(ResultRow.result_id, 11)  # the id's 80 random bits
        query = query.order_by(
            rank,
            case((rank == 2, random_bits), else_=literal("")),
            func.abs(ResultRow.score - ResultRow.threshold),
            ResultRow.result_id.desc(),
        )
    else:
        query = query.order_by(ResultRow.result_id.desc())
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    with db.read() as session:
        total = int(session.scalar(counted) or 0)
        rows = session.execute(query.limit(limit).offset(offset)).all()
    return [ReviewItem(*row) for row in rows], total


def _conditions(filters: ReviewFilters, label: ColumnElement[str]) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if filters.stations is not None:
        found.append(ResultRow.station.in_(filters.stations))
    for column, value in (
        (ResultRow.station, filters.station),
        (ResultRow.verdict, filters.verdict),
    ):
        if value is not None:
            found.append(column == value)
    found.extend(received_between(filters.since, filters.until))
    if filters.min_score is not None:
        found.append(ResultRow.score >= filters.min_score)
    if filters.max_score is not None:
        found.append(ResultRow.score <= filters.max_score)
    if filters.labelled is True:
        found.append(label.is_not(None))
    elif filters.labelled is False:
        found.append(label.is_(None))
    return found
