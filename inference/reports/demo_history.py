"""A few weeks of plant history for `defectlens demo`, so the reports page has something to
say: two lines of two stations each, three shifts (the night shift a little worse), two
products, re-inspected parts, QA labels, and a model update halfway that stops the old
model's false scratches (the scratch class falls, and with it QA's overrides).

Results are inserted in bulk into the store's tables (the rollup triggers count them as
they would the service's); the random draws are seeded, so every demo tells the same story.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from defectlens.inference.reports.calendar import plant_zone, window
from defectlens.inference.reports.render import html_report, trend_sentence, write_pdf
from defectlens.inference.reports.report import Report, ReportRequest, build_report
from defectlens.inference.store import Database, new_result_id
from defectlens.inference.store.tables import (
    LabelRow,
    ResultDefectRow,
    ResultRow,
    StationRow,
)
from defectlens.settings import Settings

STATIONS = {"press-1": "line-A", "press-2": "line-A", "weld-1": "line-B", "weld-2": "line-B"}
PRODUCTS = ("P100", "P200")
PARTS_PER_HOUR = 25
"""Per station."""
BASE_RATES = {"scratch": 0.030, "dent": 0.012, "crack": 0.004}
"""NG rate per defect class with the old model; the new one finds a third of the scratches
(the rest were false: light reflections the old model took for scratches)."""
NEW_MODEL_SCRATCH = 0.010
NIGHT = 1.3
"""The night shift's rates against the day's."""
RETEST = 0.03
"""Share of parts inspected again after rework."""
LABELLED = 0.15
"""Share of NG parts QA labels."""
BATCH = 5_000


@dataclass(frozen=True)
class History:
    first: date
    last: date
    update: date
    """The first day of the new model version."""
    results: int


def _score(rng: random.Random, ng: bool, quantiles: list[float] | None) -> float:
    """An NG part's score above the threshold; a good part's drawn from the model's good
    validation scores (their quantiles, linear between), as a healthy model's would be."""
    if ng:
        return round(0.5 + 0.5 * rng.random() ** 0.5, 4)
    if not quantiles:
        return round(min(0.49, rng.betavariate(2, 14)), 4)
    position = rng.random() * (len(quantiles) - 1)
    i = min(int(position), len(quantiles) - 2)
    low, high = quantiles[i], quantiles[i + 1]
    return round(low + (position - i) * (high - low), 4)


def seed_history(
    db: Database,
    settings: Settings,
    model: tuple[str, str],
    quantiles: list[float] | None = None,
    days: int = 21,
    last: date | None = None,
    seed: int = 24,
) -> History:
    """`days` days of results up to `last` (default yesterday in the plant's zone) for the
    model version `model` (name, version), whose first half ran the version before it
    (`<version>-previous`). Nothing is added if the store already holds results then."""
    zone = plant_zone(settings.timezone)
    last = last or datetime.now(zone).date() - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    update = first + timedelta(days=days // 2)
    start, end = window(first, last, zone)
    with db.read() as session:
        taken = session.scalar(
            select(ResultRow.result_id)
            .where(ResultRow.received_at >= start, ResultRow.received_at < end)
            .limit(1)
        )
    if taken is not None:
        return History(first, last, update, 0)
    rng = random.Random(seed)
    name, version = model
    update_at, _ = window(update, update, zone)
    with db.write() as session:
        known = set(session.scalars(select(StationRow.id)))
        new = [{"id": s, "line": line} for s, line in STATIONS.items() if s not in known]
        if new:
            session.execute(insert(StationRow), new)
    results: list[dict[str, Any]] = []
    defects: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    count = 0
    recent: dict[str, list[str]] = {station: [] for station in STATIONS}
    step = timedelta(hours=1) / PARTS_PER_HOUR
    at = start
    while at < end:
        local_hour = at.astimezone(zone).hour
        night = local_hour >= 22 or local_hour < 6
        new_model = at >= update_at
        for station, line in STATIONS.items():
            moment = at + step * rng.random()
            rates = dict(
                BASE_RATES, scratch=NEW_MODEL_SCRATCH if new_model else BASE_RATES["scratch"]
            )
            found = [
                cls for cls, rate in rates.items() if rng.random() < rate * (NIGHT if night else 1)
            ]
            if recent[station] and rng.random() < RETEST:
                serial = rng.choice(recent[station])
            else:
                serial = f"{station[0].upper()}{count:08d}"
                recent[station] = [*recent[station][-20:], serial]
            result_id = new_result_id(moment)
            verdict = "NG" if found else "OK"
            results.append(
                {
                    "result_id": result_id,
                    "verdict": verdict,
                    "score": _score(rng, bool(found), quantiles if new_model else None),
                    "threshold": 0.5,
                    "station": station,
                    "line": line,
                    "product": PRODUCTS[count % len(PRODUCTS)],
                    "serial": serial,
                    "received_at": moment,
                    "captured_at": moment,
                    "model_name": name,
                    "model_version": version if new_model else f"{version}-previous",
                    "timings_ms": {},
                }
            )
            for cls in found:
                defects.append(
                    {
                        "result_id": result_id,
                        "class_": cls,
                        "score": 0.9,
                        "x0": 10,
                        "y0": 10,
                        "x1": 40,
                        "y1": 30,
                        "area_px": 600,
                    }
                )
            if found and rng.random() < LABELLED:
                # The old model's scratches are often reflections: QA says OK.
                false = found == ["scratch"] and not new_model and rng.random() < 0.6
                labels.append(
                    {
                        "result_id": result_id,
                        "label": "OK" if false else "NG",
                        "defect_class": None if false else found[0],
                        "author": "qa-demo",
                        "created_at": moment + timedelta(hours=2),
                    }
                )
            count += 1
        at += step
        if len(results) >= BATCH:
            _insert(db, results, defects, labels)
    _insert(db, results, defects, labels)
    return History(first, last, update, count)


def _insert(
    db: Database,
    results: list[dict[str, Any]],
    defects: list[dict[str, Any]],
    labels: list[dict[str, Any]],
) -> None:
    with db.write() as session:
        for table, rows in ((ResultRow, results), (ResultDefectRow, defects), (LabelRow, labels)):
            if rows:
                session.execute(insert(table), rows)
    for rows in (results, defects, labels):
        rows.clear()


def write_demo_report(db: Database, settings: Settings, history: History, folder: Path) -> Report:
    """The report of the history's second half against its first (the model update), as
    `report.pdf` and `report.html` in `folder`."""
    request = ReportRequest(
        history.update,
        history.last,
        grain="day",
        baseline_first=history.first,
        baseline_last=history.update - timedelta(days=1),
        run_rules=True,
    )
    report = build_report(db, settings, request)
    folder.mkdir(parents=True, exist_ok=True)
    write_pdf(report, folder / "report.pdf")
    (folder / "report.html").write_text(html_report(report, "en"), encoding="utf-8")
    (folder / "report-zh.html").write_text(html_report(report, "zh"), encoding="utf-8")
    return report


def run_report_demo(home: Path, version: Path) -> Report:
    """The demo's reports step: three weeks of history for the trained model `version` (its
    card's good validation scores for the new version's parts), and the report of the weeks
    since the update as PDF and HTML under `<home>/reports/demo/`."""
    from defectlens.inference.store import open_database
    from defectlens.modelcard import ModelCard

    settings = Settings(home=home)
    card = ModelCard.read(version / "model.json")
    quantiles = card.metrics.get("good_score_quantiles")
    db = open_database(settings.resolved_database_url)
    try:
        history = seed_history(db, settings, (card.name, card.version), quantiles)
        folder = settings.reports_dir / "demo"
        report = write_demo_report(db, settings, history, folder)
    finally:
        db.close()
    print(
        f"    {history.results:,} results of {history.first} to {history.last} "
        f"(model update on {history.update}); {trend_sentence(report.trend)}"
    )
    print(f"    PDF report:  {folder / 'report.pdf'}")
    print(f"    HTML report: {folder / 'report.html'} (Chinese: report-zh.html)")
    return report
