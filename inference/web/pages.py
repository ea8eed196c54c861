"""The pages' routes: each reads what it shows through the same service and store functions
as the API, and renders it; the actions on a page call API routes from its script."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from defectlens.inference.api.auth import READ, Caller, Role
from defectlens.inference.api.dependencies import Service, require
from defectlens.inference.api.routers.review import Filters, Reviewer
from defectlens.inference.store.review import Order, review_items
from defectlens.inference.web.render import page

router = APIRouter(include_in_schema=False)

QA_PAGES: frozenset[Role] = frozenset({"qa", "manager"})
"""Who may open the QA pages (and admin); what each may do on them is the API's to say."""

QaReader = Annotated[Caller, Depends(require(QA_PAGES, "open the QA pages"))]
Reader = Annotated[Caller, Depends(require(READ, "read results, stations and models"))]

FILTER_FIELDS = (
    "order",
    "station",
    "verdict",
    "labelled",
    "since",
    "until",
    "min_score",
    "max_score",
)
PAGE_SIZE = 48


def filters_query(request: Request) -> str:
    """The review filters of the request, as a query string (for links that keep them)."""
    kept = [(k, request.query_params[k]) for k in FILTER_FIELDS if request.query_params.get(k)]
    return urlencode(kept)


@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/review", status_code=303)


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    service: Service,
    caller: Reviewer,
    filters: Filters,
    order: Order = "queue",
    offset: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    """The review queue (by value to label) or the gallery (newest first), filtered."""
    items, total = review_items(service.store.db, filters, order, PAGE_SIZE, offset)
    stations = [s.id for s in service.store.list_stations() if caller.may_use_station(s.id)]
    form = {k: request.query_params.get(k, "") for k in FILTER_FIELDS}
    return page(
        request,
        "review.html",
        "review.title",
        items=items,
        total=total,
        order=order,
        offset=offset,
        limit=PAGE_SIZE,
        stations=stations,
        form=form,
        filters_query=filters_query(request),
    )


@router.get("/review/next", response_class=HTMLResponse)
def next_part(
    request: Request, service: Service, caller: Reviewer, filters: Filters, after: str = ""
) -> RedirectResponse:
    """The first unlabelled part of the queue other than `after` (the part just saved): the
    labelling page's "save and next"; the queue when none is left."""
    unlabelled = replace(filters, labelled=False)
    items, _ = review_items(service.store.db, unlabelled, "queue", 2, 0)
    query = filters_query(request)
    for item in items:
        if item.result_id != after:
            return RedirectResponse(f"/review/{item.result_id}?{query}", status_code=303)
    return RedirectResponse(f"/review?{query}", status_code=303)
