"""The demo's plant history: the story it tells (the model update halves the scratches and
the NG rate), counted by the rollups, and seeded once."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from defectlens.inference.reports.demo_history import (
    PARTS_PER_HOUR,
    STATIONS,
    seed_history,
    write_demo_report,
)
from defectlens.inference.reports.report import ReportRequest, build_report
from defectlens.inference.store import Database
from defectlens.settings import Settings


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_history_tells_of_the_model_update(db: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, timezone="Europe/Berlin")
    history = seed_history(db, settings, ("demo", "v2"), days=8, last=date(2026, 3, 31))
    # 8 days, one with 23 hours (summer time from 29 March), four stations
    assert history.results == (8 * 24 - 1) * PARTS_PER_HOUR * len(STATIONS)
    assert history.update == date(2026, 3, 28)
    before = build_report(
        db, settings, ReportRequest(history.first, history.update - timedelta(days=1))
    )
    report = write_demo_report(db, settings, history, tmp_path / "demo")
    assert {p.name for p in (tmp_path / "demo").iterdir()} == {
        "report.pdf", "report.html", "report-zh.html",
    }  # fmt: skip
    scratch = {
        name: {r.defect_class: r.count for r in rows}["scratch"] / total
        for name, rows, total in (
            ("before", before.pareto_model, before.total.parts),
            ("after", report.pareto_model, report.total.parts),
        )
    }
    assert scratch["after"] < scratch["before"] / 2
    assert report.trend.change is not None and report.trend.change < -0.2
    assert report.trend.significant and report.trend.target_met
    assert {s.key for s in report.by_station} == set(STATIONS)
    night = {c.key: c.ng_rate for c in report.by_shift}
    assert night["C"] is not None and night["A"] is not None and night["C"] > night["A"]
    assert {m.model_version for m in before.model_health} == {"v2-previous"}
    again = seed_history(db, settings, ("demo", "v2"), days=8, last=date(2026, 3, 31))
    assert again.results == 0  # a second demo in the same workspace adds nothing
