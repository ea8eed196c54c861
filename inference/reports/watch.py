"""What the service checks about reports from its background loop: each model version's
score drift over the last day (a gauge on /metrics, a warning in the log when it passes
DEFECTLENS_DRIFT_ALERT) and whether the daily report is due (`daily.py`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from defectlens.inference.reports import daily, queries
from defectlens.inference.reports.calendar import BUCKET
from defectlens.inference.reports.model_health import ModelHealth
from defectlens.inference.reports.report import models_health
from defectlens.inference.service import InspectionService

log = logging.getLogger(__name__)

REPORT_CHECK_S = 300.0
"""How often the service checks the drift and the daily report."""
DRIFT_WINDOW = timedelta(days=1)
"""The production scores the drift gauge compares: the last day's."""


def last_day_scope(now: datetime) -> queries.Scope:
    """The day up to `now`'s bucket (buckets are UTC quarter hours)."""
    step = int(BUCKET.total_seconds())
    end = datetime.fromtimestamp(int(now.timestamp()) // step * step, UTC)
    return queries.Scope(end - DRIFT_WINDOW, end)


def check_drift(service: InspectionService, now: datetime | None = None) -> list[ModelHealth]:
    """Set each model version's drift gauge from the last day; log a warning for each above
    the alert level."""
    scope = last_day_scope(now or datetime.now(UTC))
    level = service.settings.drift_alert
    found = models_health(service.store.db, scope, level)
    metrics = service.metrics
    for health in found:
        if health.drift is None:
            continue
        labels = (health.model_name, health.model_version)
        metrics.model_drift.labels(*labels).set(health.drift)
        metrics.model_drift_alert.labels(*labels).set(1 if health.alert else 0)
        if health.alert:
            log.warning(
                "model %s %s: score drift %.3f over the last day is above %g "
                "(DEFECTLENS_DRIFT_ALERT): its production scores no longer look like its "
                "validation scores; check the parts, the camera and the light, or retrain",
                health.model_name,
                health.model_version,
                health.drift,
                level,
                extra={"model": health.model_name, "model_version": health.model_version},
            )
    return found


def watch_reports(service: InspectionService) -> None:
    """The background loop's report work: the drift gauge, then the daily report if due."""
    check_drift(service)
    settings = service.settings
    if settings.report_daily_hour is None:
        return
    day = daily.due_day(datetime.now(UTC), settings.timezone, settings.report_daily_hour)
    daily.send_daily(service.store.db, settings, day, actor=f"service:{service.store.instance}")
