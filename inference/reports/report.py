"""One report: what a manager asked for (`ReportRequest`) and every figure of it (`Report`),
computed by the SQL aggregates of `queries.py`. The CLI, the reports page and its JSON
routes all call `build_report`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from defectlens.errors import InputError
from defectlens.inference.reports import queries
from defectlens.inference.reports.calendar import (
    Grain,
    parse_shifts,
    periods,
    plant_zone,
    window,
)
from defectlens.inference.reports.figures import (
    Counts,
    ParetoRow,
    PChart,
    Trend,
    p_chart,
    pareto,
    trend,
)
from defectlens.inference.reports.model_health import ModelHealth, model_health
from defectlens.inference.store import Database
from defectlens.settings import Settings

MAX_DAYS = 400
"""The longest report (and baseline) in days."""
EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)
"""The days a report may ask for: wide enough for any plant's history, and far from the ends
of Python's calendar (year 1 and 9999), where a window's UTC bounds overflow."""


@dataclass(frozen=True)
class ReportRequest:
    first: date
    last: date
    """The report's days, both included, in the plant's time zone."""
    line: str | None = None
    station: str | None = None
    grain: Grain = "day"
    """The periods of the NG-rate chart and the p-chart's subgroups (shift or day...)."""
    baseline_first: date | None = None
    baseline_last: date | None = None
    """Default: as many days, just before `first`."""
    run_rules: bool = False
    """Mark the p-chart points that complete a Western Electric run rule (1-4)."""

    def baseline(self) -> tuple[date, date]:
        if self.baseline_first is not None and self.baseline_last is not None:
            return self.baseline_first, self.baseline_last
        days = (self.last - self.first).days + 1
        return self.first - timedelta(days=days), self.first - timedelta(days=1)


@dataclass(frozen=True)
class Report:
    request: ReportRequest
    timezone: str
    baseline: tuple[date, date]
    total: Counts
    by_line: list[Counts]
    by_station: list[Counts]
    by_product: list[Counts]
    by_shift: list[Counts]
    by_period: list[Counts]
    pareto_model: list[ParetoRow]
    pareto_qa: list[ParetoRow]
    p_charts: dict[str, PChart]
    trend: Trend
    station_trends: list[Trend] = field(default_factory=list)
    model_health: list[ModelHealth] = field(default_factory=list)
    drift_alert: float = 0.25
    """The score drift above which a model version is flagged (DEFECTLENS_DRIFT_ALERT)."""

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Every table of the report as rows of plain values (CSV and JSON)."""

        def counts(rows: list[Counts]) -> list[dict[str, Any]]:
            return [
                {**asdict(c), "ng_rate": c.ng_rate, "first_pass_yield": c.first_pass_yield}
                for c in rows
            ]

        def trends(rows: list[Trend]) -> list[dict[str, Any]]:
            return [
                {**asdict(t), "significant": t.significant, "target_met": t.target_met}
                for t in rows
            ]

        return {
            "summary": counts([self.total]),
            "by_line": counts(self.by_line),
            "by_station": counts(self.by_station),
            "by_product": counts(self.by_product),
            "by_shift": counts(self.by_shift),
            "by_period": counts(self.by_period),
            "pareto_model": [asdict(r) for r in self.pareto_model],
            "pareto_qa": [asdict(r) for r in self.pareto_qa],
            "p_chart": [
                {"station": station, "centre": chart.centre, **asdict(point)}
                for station, chart in self.p_charts.items()
                for point in chart.points
            ],
            "trend": trends([self.trend, *self.station_trends]),
            "model_health": [asdict(m) for m in self.model_health],
        }


def last_days(settings: Settings, days: int = 7) -> tuple[date, date]:
    """The last `days` days up to today, in the plant's time zone (the page's default)."""
    today = datetime.now(plant_zone(settings.timezone)).date()
    return today - timedelta(days=days - 1), today


def _check_days(*days: tuple[str, date | None]) -> None:
    """InputError naming the first of `days` (parameter name, day) outside EARLIEST..LATEST."""
    for name, day in days:
        if day is not None and not EARLIEST <= day <= LATEST:
            raise InputError(
                f"{name} = {day.isoformat()} is outside the days a report covers "
                f"({EARLIEST.isoformat()} to {LATEST.isoformat()}); ask for days in them"
            )


def build_report(db: Database, settings: Settings, request: ReportRequest) -> Report:
    """Every figure of `request`, from the store `db`, in the plant's calendar."""
    zone = plant_zone(settings.timezone)
    shifts = parse_shifts(settings.shifts)
    _check_days(
        ("from", request.first),
        ("to", request.last),
        ("baseline-from", request.baseline_first),
        ("baseline-to", request.baseline_last),
    )
    baseline = request.baseline()
    for first, last, what in ((request.first, request.last, "report"), (*baseline, "baseline")):
        if (last - first).days + 1 > MAX_DAYS:
            raise InputError(f"the {what} spans more than {MAX_DAYS} days; ask for less")
    start, end = window(request.first, request.last, zone)
    scope = queries.Scope(start, end, request.line, request.station)
    base_start, base_end = window(*baseline, zone)
    base_scope = queries.Scope(base_start, base_end, request.line, request.station)
    shift_periods = periods(request.first, request.last, "shift", zone, shifts)
    by_shift_period = queries.period_counts(db, scope, shift_periods)
    chart = (
        by_shift_period
        if request.grain == "shift"
        else queries.period_counts(
            db, scope, periods(request.first, request.last, request.grain, zone, shifts)
        )
    )
    now = queries.breakdown(db, scope)
    before = queries.breakdown(db, base_scope)
    base_by_station = {c.key: c for c in before.by_station}
    target = settings.improvement_target
    return Report(
        request=request,
        timezone=settings.timezone,
        baseline=baseline,
        total=now.total,
        by_line=now.by_line,
        by_station=now.by_station,
        by_product=now.by_product,
        by_shift=by_shift_period.by_shift(),
        by_period=chart.total,
        pareto_model=pareto(queries.model_defect_classes(db, scope)),
        pareto_qa=pareto(queries.qa_defect_classes(db, scope)),
        p_charts={
            station: p_chart(subgroups, run_rules=request.run_rules)
            for station, subgroups in chart.subgroups().items()
        },
        trend=trend(now.total, before.total, target),
        station_trends=[
            trend(c, base_by_station.get(c.key, Counts(c.key, 0, 0, 0, 0)), target)
            for c in now.by_station
        ],
        model_health=models_health(db, scope, settings.drift_alert),
        drift_alert=settings.drift_alert,
    )


def models_health(db: Database, scope: queries.Scope, alert_level: float) -> list[ModelHealth]:
    """The health of each model version that inspected parts in `scope`."""
    bins = queries.score_bins(db, scope)
    quantiles = queries.validation_quantiles(db)
    return [
        model_health(
            counts,
            bins.get((counts.model_name, counts.model_version), []),
            quantiles.get((counts.model_name, counts.model_version)),
            alert_level,
        )
        for counts in queries.by_model(db, scope)
    ]
