"""The review queue and gallery: production parts to label, by value or newest first, with
filters (station, verdict, time, score, labelled or not). The review page shows the same."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from defectlens.inference.api.auth import Caller, Role
from defectlens.inference.api.dependencies import Service, require, scoped_station
from defectlens.inference.store.review import (
    MAX_REVIEW_PAGE,
    Order,
    Reason,
    ReviewFilters,
    review_items,
)
from defectlens.prediction import Verdict

REVIEW: frozenset[Role] = frozenset({"qa", "manager"})
"""Who sees the parts to review (and admin); labelling itself is `qa`'s."""

Reviewer = Annotated[Caller, Depends(require(REVIEW, "review parts"))]

router = APIRouter(prefix="/v1/review", tags=["review"])


class ReviewPart(BaseModel):
    result_id: str
    station: str
    serial: str | None
    verdict: Verdict
    score: float
    threshold: float
    received_at: datetime
    model_version: str
    label: Verdict | None
    label_class: str | None
    labelled_by: str | None
    reason: Reason
    """Why it is in the queue: ng, near_threshold, ok_sample, disagrees (agrees: gallery)."""


class ReviewPage(BaseModel):
    items: list[ReviewPart]
    total: int
    """Parts matching the filters, in all."""


def review_filters(
    caller: Reviewer,
    station: Annotated[str | None, Query(max_length=64)] = None,
    verdict: Verdict | None = None,
    since: Annotated[datetime | None, Query(description="received at or after")] = None,
    until: Annotated[datetime | None, Query(description="received before")] = None,
    min_score: float | None = None,
    max_score: float | None = None,
    labelled: bool | None = None,
) -> ReviewFilters:
    """The filters the route and the page share, within the caller's stations."""
    return ReviewFilters(
        stations=caller.stations,
        station=scoped_station(caller, station or None),
        verdict=verdict,
        since=since,
        until=until,
        min_score=min_score,
        max_score=max_score,
        labelled=labelled,
    )


Filters = Annotated[ReviewFilters, Depends(review_filters)]


@router.get("", response_model=ReviewPage)
def review(
    service: Service,
    filters: Filters,
    order: Order = "queue",
    limit: Annotated[int, Query(ge=1, le=MAX_REVIEW_PAGE)] = 60,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ReviewPage:
    """Parts with a retained image: `order=queue` by value to label (NG, near the threshold,
    a random sample of OK, labels that disagree with the model), `order=newest` for all."""
    items, total = review_items(service.store.db, filters, order, limit, offset)
    return ReviewPage(
        items=[ReviewPart.model_validate(item, from_attributes=True) for item in items],
        total=total,
    )
