"""Defect-rate reports: the page managers read (`GET /reports`, HTML with inline charts, in
English or Simplified Chinese) and its figures as JSON (`GET /v1/reports`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from defectlens.inference.api.auth import Caller, Role
from defectlens.inference.api.dependencies import Service, require
from defectlens.inference.api.errors import Forbidden
from defectlens.inference.reports.calendar import Grain
from defectlens.inference.reports.render import (
    Lang,
    filter_form,
    html_report,
    traced_section,
    trend_sentence,
)
from defectlens.inference.reports.report import ReportRequest, build_report, last_days
from defectlens.inference.reports.traceability import parts_by_serial

REPORTS: frozenset[Role] = frozenset({"manager", "qa"})
"""Who reads reports (and admin)."""

Manager = Annotated[Caller, Depends(require(REPORTS, "read reports"))]

router = APIRouter(tags=["reports"])


From = Annotated[date | None, Query(alias="from", description="first day (plant time)")]
To = Annotated[date | None, Query(alias="to", description="last day, included")]


def report_request(
    service: Service,
    caller: Manager,
    first: From = None,
    last: To = None,
    line: str | None = None,
    station: str | None = None,
    grain: Grain = "day",
    rules: Annotated[bool, Query(description="mark Western Electric run rules")] = False,
) -> ReportRequest:
    """The filters both report routes share, as a request within the caller's stations
    (default: the last 7 days)."""
    if caller.stations is not None and station not in caller.stations:
        raise Forbidden(
            f"this API key is limited to stations {', '.join(caller.stations)}; "
            "ask for one of them with station=..."
        )
    default_first, default_last = last_days(service.settings)
    return ReportRequest(
        first or default_first,
        last or default_last,
        line or None,
        station or None,
        grain,
        run_rules=rules,
    )


Filters = Annotated[ReportRequest, Depends(report_request)]


@router.get("/reports", response_class=HTMLResponse)
def reports_page(
    service: Service,
    caller: Manager,
    filters: Filters,
    lang: Literal["en", "zh"] = "en",
    serial: Annotated[str | None, Query(max_length=128, description="a part to trace")] = None,
) -> HTMLResponse:
    """The reports page: NG rate and first-pass yield by line, station, product and shift,
    Pareto of defect classes, p-charts, model health, the trend against the baseline, and
    with `serial` every inspection of that part."""
    report = build_report(service.store.db, service.settings, filters)
    chosen: Lang = lang
    trace = ""
    if serial and serial.strip():
        parts = parts_by_serial(service.store, serial, caller.stations)
        trace = traced_section(serial.strip(), parts, service.settings.timezone, chosen)
    form = filter_form(report.request, chosen, serial=serial)
    return HTMLResponse(html_report(report, chosen, form, trace))


@router.get("/v1/reports")
def report_data(service: Service, filters: Filters) -> dict[str, Any]:
    """Every table of the report (as in its CSV export) and the trend in words."""
    report = build_report(service.store.db, service.settings, filters)
    return {
        "from": report.request.first,
        "to": report.request.last,
        "baseline": report.baseline,
        "timezone": report.timezone,
        "trend": trend_sentence(report.trend),
        "tables": report.tables(),
    }
