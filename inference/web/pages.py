"""The pages' routes: each reads what it shows through the same service and store functions
as the API, and renders it; the actions on a page call API routes from its script."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from importlib.resources import files
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from defectlens.errors import NotFound
from defectlens.inference.api.auth import READ, Caller, Role
from defectlens.inference.api.dependencies import Service, require
from defectlens.inference.api.routers.review import Filters, Reviewer
from defectlens.inference.service import InspectionService, deployments
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
AUDIT_PAGE = 100
RECIPES = files("defectlens.configs")
"""The shipped training recipes (YAML files)."""


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
    stations = _stations(service, caller)
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


@router.get("/review/{result_id}", response_class=HTMLResponse)
def label_page(
    request: Request, service: Service, caller: Reviewer, result_id: str
) -> HTMLResponse:
    """Label one part: verdict, class, boxes and a mask over its image, the model's heat map
    and boxes as an overlay."""
    result = service.store.get_result(result_id)
    if result is None or not caller.may_use_station(result.station):
        raise NotFound(f"result {result_id!r} not found")
    standing = service.store.sample(service.store.sample_for_result(result_id)).label
    classes = dict.fromkeys(
        [c.name for c in service.store.classes()] + [d.class_ for d in result.defects]
    )
    part = {
        "result_id": result.result_id,
        "model_defects": [
            {"class": d.class_, "score": d.score, "box": list(d.box)} for d in result.defects
        ],
        "label": None
        if standing is None
        else {
            "verdict": standing.annotation.verdict,
            "defect_class": standing.annotation.main_class,
            "regions": [
                {"class": r.defect_class, "box": list(r.box), "mask": r.mask_sha256 is not None}
                for r in standing.annotation.regions
            ],
        },
    }
    return page(
        request,
        "label.html",
        "label.title",
        result=result,
        standing=standing,
        classes=list(classes),
        part=part,
        filters_query=filters_query(request),
    )


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, service: Service, caller: QaReader) -> HTMLResponse:
    """Frozen dataset versions with their counts; freeze the label store; export a version."""
    classes = [c.name for c in service.store.classes()]
    return page(
        request,
        "datasets.html",
        "datasets.title",
        versions=service.store.dataset_versions(),
        classes=classes,
        stations=_stations(service, caller),
    )


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, service: Service, caller: QaReader) -> HTMLResponse:
    """Training jobs, live: start a retrain, follow its progress and log, cancel it."""
    return page(
        request,
        "jobs.html",
        "jobs.title",
        recipes=sorted(
            p.name.removesuffix(".yaml") for p in RECIPES.iterdir() if p.name.endswith(".yaml")
        ),
        versions=service.store.dataset_versions(),
        stations=_stations(service, caller),
    )


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, service: Service, caller: QaReader) -> HTMLResponse:
    """A candidate against a station's production model (held-out parts, or live parts in
    shadow), then promote it or drop it."""
    return page(
        request,
        "compare.html",
        "compare.title",
        stations=[s for s in deployments.station_states(service) if caller.may_use_station(s.id)],
        versions=deployments.deployed_versions(service.store),
        versions_data=service.store.dataset_versions(),
    )


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, service: Service, caller: Reader) -> HTMLResponse:
    """Each station's model and its history; promote a version or roll back (role qa)."""
    stations = [s for s in deployments.station_states(service) if caller.may_use_station(s.id)]
    history = {s.id: service.store.deployment_history(s.id)[:10] for s in stations}
    return page(
        request,
        "models.html",
        "models.title",
        stations=stations,
        history=history,
        versions=deployments.deployed_versions(service.store),
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    service: Service,
    caller: QaReader,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """Who did what and when: promotions, rollbacks, jobs, shadow runs, keys, labels."""
    entries = service.store.audit_entries(
        None, AUDIT_PAGE, actor=actor, action=action, since=since, until=until, before_id=before_id
    )
    form = {k: request.query_params.get(k, "") for k in ("actor", "action", "since", "until")}
    kept = urlencode([(k, v) for k, v in form.items() if v])
    key_names = {f"key:{key.id}": key.name for key in service.store.list_keys()}
    return page(
        request,
        "audit.html",
        "audit.title",
        entries=entries,
        key_names=key_names,
        form=form,
        more=f"{kept}&before_id={entries[-1].id}" if len(entries) == AUDIT_PAGE else None,
    )


def _stations(service: InspectionService, caller: Caller) -> list[str]:
    return [s.id for s in service.store.list_stations() if caller.may_use_station(s.id)]
