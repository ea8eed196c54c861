"""`defectlens report` writes HTML (self-contained), CSV (every table) and PDF from a real
SQLite workspace; the figures in them are the SQL's."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from report_seed import Seed

from defectlens.cli import main
from defectlens.inference.reports.render import html_report
from defectlens.inference.reports.report import ReportRequest, build_report
from defectlens.inference.store import Database
from defectlens.settings import Settings

DAY0 = datetime(2026, 5, 4, tzinfo=UTC)


def seed_fortnight(seed: Seed) -> None:
    """Two weeks in Shanghai's zone: S1 1 NG in 10 in the first week, 1 in 20 in the second
    (a model update), with a bad shift on day 10; S2 steady at 1 in 5."""
    for day in range(14):
        for hour in range(0, 24, 2):
            at = DAY0 + timedelta(days=day, hours=hour)
            worse = day == 10 and hour in (2, 4)
            every = 10 if day < 7 else 20
            for n in range(4):
                ng = worse or (hour * 4 + n) % every == 0
                seed(
                    at + timedelta(minutes=n),
                    "NG" if ng else "OK",
                    serial=f"a{day}-{hour}-{n}",
                    defects=("scratch",) if ng and n % 2 else ("dent",) if ng else (),
                )
            seed(at, "NG" if hour % 10 == 0 else "OK", station="S2", line="L2")


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_cli_writes_html_csv_and_pdf(
    db: Database, seed: Seed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_fortnight(seed)
    monkeypatch.setenv("DEFECTLENS_DATABASE_URL", str(db.engine.url))
    monkeypatch.setenv("DEFECTLENS_TIMEZONE", "Asia/Shanghai")
    window = ["--from", "2026-05-11", "--to", "2026-05-17"]
    assert main(["report", *window, "--format", "html", "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "src=" not in page and 'href="http' not in page  # self-contained
    assert main(["report", *window, "--format", "csv", "--out", str(tmp_path / "csv")]) == 0
    names = sorted(p.name for p in (tmp_path / "csv").iterdir())
    assert "by_station.csv" in names and "pareto_model.csv" in names and "p_chart.csv" in names
    with (tmp_path / "csv" / "summary.csv").open() as handle:
        summary = next(csv.DictReader(handle))
    assert main(["report", *window, "--format", "pdf", "--out", str(tmp_path / "r.pdf")]) == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    # The figures as counted by hand: the dates are local (UTC+8), so the window starts
    # 2026-05-10 16:00 UTC: the last 8 hours of the 6th UTC day belong to it.
    assert int(summary["parts"]) == 7 * 12 * 5
    assert (
        main(
            [
                "report",
                "--from",
                "2026-05-11",
                "--to",
                "2026-05-10",
                "--format",
                "html",
                "--out",
                str(tmp_path / "x.html"),
            ]
        )
        == 2
    )


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "days",
    [
        ["--from", "0001-01-01", "--to", "0001-01-02"],
        ["--from", "9999-12-31", "--to", "9999-12-31"],
        [
            *("--from", "2026-05-11", "--to", "2026-05-17"),
            *("--baseline-from", "1999-12-31", "--baseline-to", "2000-01-06"),
        ],
    ],
)
def test_cli_refuses_days_out_of_range(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    days: list[str],
) -> None:
    monkeypatch.setenv("DEFECTLENS_DATABASE_URL", str(db.engine.url))
    out = ["--format", "html", "--out", str(tmp_path / "r.html")]
    assert main(["report", *days, *out]) == 2
    assert "is outside the days a report covers (2000-01-01 to 2100-12-31)" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_report_trend_and_p_chart_on_seeded_history(db: Database, seed: Seed) -> None:
    seed_fortnight(seed)
    settings = Settings(timezone="UTC")
    report = build_report(db, settings, ReportRequest(date(2026, 5, 11), date(2026, 5, 17)))
    assert report.baseline == (date(2026, 5, 4), date(2026, 5, 10))
    s1 = next(t for t in report.station_trends if t.key == "S1")
    assert s1.change is not None and s1.change < -0.2
    chart = report.p_charts["S1"]
    assert [p.label for p in chart.points if p.out_of_control] == ["2026-05-14"]
    assert "缺陷率报告" in html_report(report, "zh")
