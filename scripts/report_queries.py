"""Time each report query (`inference/reports/queries.py`) on a seeded result store: N
results over 8 stations on 4 lines, with re-inspected serials, defects and QA labels, in a
temporary SQLite database and, with --postgresql, in an empty PostgreSQL database.

    python scripts/report_queries.py [--results 200000] [--days 60] [--plans]
        [--postgresql postgresql+psycopg://user@host/empty_db | --postgresql temporary]
        [--timeout 60]

No ANALYZE is run, as the service runs none; a query past --timeout seconds is stopped.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pg_server import running_postgres

from defectlens.inference.reports import queries
from defectlens.inference.reports.calendar import parse_shifts, periods, plant_zone, window
from defectlens.inference.store import Database, new_result_id, open_database
from defectlens.inference.store.tables import LabelRow, ResultDefectRow, ResultRow, StationRow

STATIONS = [f"S{i}" for i in range(1, 9)]
LINE_OF = {station: f"L{(i // 2) + 1}" for i, station in enumerate(STATIONS)}
PRODUCTS = ["P100", "P200", "P300"]
DEFECTS = ["scratch", "dent", "stain", "crack", "burr"]
LAST_DAY = date(2026, 3, 31)
SHIFTS = parse_shifts("A=06:00-14:00,B=14:00-22:00,C=22:00-06:00")
ZONE = plant_zone("Europe/Berlin")
BATCH = 20_000
NO_READ = "NOREAD"
"""What a code reader sends when it cannot read the part's code: one serial on thousands of
results, which an earlier-result lookup by serial alone reads all of, for each of them."""


@dataclass
class Timing:
    database: str
    query: str
    rows: int | None
    seconds: float
    statements: list[tuple[str, Any]]


def _rows(days: int, count: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Results in time order (ids are time-ordered), as a line makes them: about 7% are
    re-inspections of an earlier serial at the same station, 2% carry no serial and 2% the
    code reader's placeholder, 6% are NG;
    a part made at the first station of a line goes on to its second."""
    start = datetime.combine(LAST_DAY - timedelta(days=days - 1), datetime.min.time(), UTC)
    step = days * 86_400 / count
    recent: dict[str, list[str]] = {station: [] for station in STATIONS}
    waiting: dict[str, list[str]] = {station: [] for station in STATIONS}
    for i in range(count):
        at = start + timedelta(seconds=i * step + rng.random() * step)
        index = rng.randrange(len(STATIONS))
        station = STATIONS[index]
        if recent[station] and rng.random() < 0.07:
            serial: str | None = rng.choice(recent[station])
        elif rng.random() < 0.02:
            serial = None
        elif rng.random() < 0.02:
            serial = NO_READ
        elif waiting[station]:  # a part from the line's first station moves on
            serial = waiting[station].pop(0)
        else:
            serial = f"SN{i:09d}"
            if index % 2 == 0:
                waiting[STATIONS[index + 1]].append(serial)
        if serial is not None:
            recent[station] = [*recent[station][-50:], serial]
        verdict = "NG" if rng.random() < 0.06 else "OK"
        yield {
            "result_id": new_result_id(at),
            "verdict": verdict,
            "score": 0.8 if verdict == "NG" else 0.2,
            "threshold": 0.5,
            "station": station,
            "line": LINE_OF[station],
            "product": PRODUCTS[i % len(PRODUCTS)],
            "serial": serial,
            "received_at": at,
            "model_name": "m",
            "model_version": "v1",
            "timings_ms": {},
        }


def seed(db: Database, count: int, days: int) -> None:
    rng = random.Random(24)
    with db.write() as session:
        session.execute(insert(StationRow), [{"id": s, "line": LINE_OF[s]} for s in STATIONS])
    results: list[dict[str, Any]] = []
    defects: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []

    def flush() -> None:
        with db.write() as session:
            session.execute(insert(ResultRow), results)
            if defects:
                session.execute(insert(ResultDefectRow), defects)
            if labels:
                session.execute(insert(LabelRow), labels)
        results.clear()
        defects.clear()
        labels.clear()

    for row in tqdm(_rows(days, count, rng), total=count, desc=f"seed {db.dialect}"):
        results.append(row)
        if row["verdict"] == "NG":
            for name in rng.sample(DEFECTS, rng.choice((1, 1, 2))):
                box = {"x0": 0, "y0": 0, "x1": 8, "y1": 8, "area_px": 64}
                defects.append({"result_id": row["result_id"], "class_": name, "score": 0.9, **box})
            if rng.random() < 0.2:
                label = {"label": "NG", "defect_class": rng.choice(DEFECTS), "author": "qa"}
                labels.append({"result_id": row["result_id"], **label})
        if len(results) >= BATCH:
            flush()
    if results:
        flush()
    # No ANALYZE: the service never runs it, so the plans timed are the ones it gets.


@contextmanager
def _recorded(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    found: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            found.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _sqlite_deadline(engine: Engine, timeout_s: float) -> Callable[[], None]:
    """SQLite has no statement timeout: a progress handler interrupts a query past the
    deadline (set again before each query)."""
    deadline = [0.0]

    def install(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_progress_handler(lambda: int(time.monotonic() > deadline[0]), 10_000)

    event.listen(engine, "connect", install)
    engine.dispose()

    def restart() -> None:
        deadline[0] = time.monotonic() + timeout_s

    return restart


def report_queries(days: int) -> list[tuple[str, Callable[[Database], Any]]]:
    """The queries one report page makes (`report.build_report`), over the last `days`."""
    first = LAST_DAY - timedelta(days=days - 1)
    scope = queries.Scope(*window(first, LAST_DAY, ZONE))
    station = queries.Scope(scope.start, scope.end, station="S3")
    shifts = periods(first, LAST_DAY, "shift", ZONE, SHIFTS)
    daily = periods(first, LAST_DAY, "day", ZONE, SHIFTS)
    return [
        ("totals", lambda db: [queries.totals(db, scope)]),
        ("totals, one station", lambda db: [queries.totals(db, station)]),
        ("by station", lambda db: queries.by_dimension(db, scope, "station")),
        ("by line", lambda db: queries.by_dimension(db, scope, "line")),
        ("by product", lambda db: queries.by_dimension(db, scope, "product")),
        ("by shift", lambda db: queries.by_shift(db, scope, shifts)),
        ("by day", lambda db: queries.by_period(db, scope, daily)),
        ("p-chart: station x shift", lambda db: queries.by_station_and_period(db, scope, shifts)),
        ("model defect classes", lambda db: queries.model_defect_classes(db, scope)),
        ("QA defect classes", lambda db: queries.qa_defect_classes(db, scope)),
    ]


def time_queries(db: Database, days: int, timeout_s: float) -> list[Timing]:
    restart = _sqlite_deadline(db.engine, timeout_s) if db.dialect == "sqlite" else lambda: None
    timings = []
    for name, run in report_queries(days):
        with _recorded(db.engine) as statements:
            restart()
            began = time.perf_counter()
            try:
                rows: int | None = len(run(db))
            except OperationalError:  # interrupted or past PostgreSQL's statement timeout
                rows = None
            seconds = time.perf_counter() - began
        timings.append(Timing(db.dialect, name, rows, seconds, list(statements)))
        shown = "stopped" if rows is None else f"{rows} rows"
        print(f"  {db.dialect} {name}: {seconds:.3f} s ({shown})", file=sys.stderr, flush=True)
    return timings


def print_plan(db: Database, statement: str, params: Any) -> None:
    explain = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
    with db.engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + statement, params).fetchall()
    for row in rows:
        print("    " + (" ".join(str(v) for v in row[1:]) if db.dialect == "sqlite" else row[0]))


def run(db: Database, args: argparse.Namespace) -> list[Timing]:
    began = time.perf_counter()
    seed(db, args.results, args.days)
    print(f"{db.dialect}: seeded {args.results} results in {time.perf_counter() - began:.0f} s")
    timings = time_queries(db, args.report_days, args.timeout)
    if args.plans:
        for timing in timings:
            print(f"\n{timing.database} · {timing.query}")
            for statement, params in timing.statements:
                print_plan(db, statement, params)
    return timings


def run_postgresql(url: str, args: argparse.Namespace) -> list[Timing]:
    db = open_database(url, timeout_s=args.timeout)
    try:
        return run(db, args)
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=60, help="days of history seeded")
    parser.add_argument("--report-days", type=int, default=30, help="days one report covers")
    parser.add_argument(
        "--postgresql",
        help="URL of an empty PostgreSQL database to fill, or 'temporary' for a throwaway "
        "server from the machine's PostgreSQL binaries (tests/pg_server.py)",
    )
    parser.add_argument("--plans", action="store_true", help="print each query's plan")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per query")
    args = parser.parse_args()
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory() as folder:
        db = open_database(f"sqlite:///{Path(folder) / 'reports.db'}", timeout_s=args.timeout)
        try:
            timings += run(db, args)
        finally:
            db.close()
    if args.postgresql == "temporary":
        with running_postgres() as server:
            timings += run_postgresql(server.create_database(), args)
    elif args.postgresql:
        timings += run_postgresql(args.postgresql, args)
    print(f"\n{args.results} results over {args.days} days; a {args.report_days}-day report")
    print(f"{'database':<11}{'query':<28}{'rows':>6}{'seconds':>10}")
    for t in timings:
        rows = "-" if t.rows is None else str(t.rows)
        seconds = f"{t.seconds:.3f}" + ("" if t.rows is not None else " (stopped)")
        print(f"{t.database:<11}{t.query:<28}{rows:>6}{seconds:>10}")


if __name__ == "__main__":
    main()
