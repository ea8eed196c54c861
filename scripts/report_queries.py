"""Time each report query (`inference/reports/queries.py`) on a seeded result store: N
results over 8 stations on 4 lines, with re-inspected serials, defects and QA labels (seeded by
INSERT ... SELECT in the database, the rollup triggers running for each row), in a
temporary SQLite database and, with --postgresql, in an empty PostgreSQL database.

    python scripts/report_queries.py [--results 200000] [--days 60] [--plans]
        [--postgresql postgresql+psycopg://user@host/empty_db | --postgresql temporary]
        [--timeout 60] [--sqlite-file PATH] [--no-sqlite]

No ANALYZE is run, as the service runs none; a query past --timeout seconds is stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pg_server import running_postgres

from defectlens.inference.reports import queries
from defectlens.inference.reports.calendar import parse_shifts, periods, plant_zone, window
from defectlens.inference.reports.render import html_report
from defectlens.inference.reports.report import ReportRequest, build_report
from defectlens.inference.store import Database, open_database
from defectlens.inference.store.tables import ResultRow, StationRow
from defectlens.settings import Settings

STATIONS = [f"S{i}" for i in range(1, 9)]
LINE_OF = {station: f"L{(i // 2) + 1}" for i, station in enumerate(STATIONS)}
LAST_DAY = date(2026, 3, 31)
SHIFTS = parse_shifts("A=06:00-14:00,B=14:00-22:00,C=22:00-06:00")
ZONE = plant_zone("Europe/Berlin")
SETTINGS = Settings(timezone="Europe/Berlin", shifts="A=06:00-14:00,B=14:00-22:00,C=22:00-06:00")


@dataclass
class Timing:
    database: str
    query: str
    rows: int | None
    seconds: float
    cpu: float
    """CPU seconds of this process and, for a local PostgreSQL, of its server processes: on
    a machine others share, what the query costs, where the wall clock also counts the wait
    for a core."""
    statements: list[tuple[str, Any]]


CHUNK = 500_000
"""Results inserted per statement (one transaction each)."""
_HASH = (2654435761, 2246822519, 3266489917, 668265263, 374761393)
NAMES = (
    "CASE {pick} WHEN 0 THEN 'scratch' WHEN 1 THEN 'dent' WHEN 2 THEN 'stain' "
    "WHEN 3 THEN 'crack' ELSE 'burr' END"
)


def _pick(i: str, field: int, modulo: int) -> str:
    """SQL for a pseudo-random 0..modulo-1 drawn from row number `i` (a multiplicative hash,
    its upper bits; one multiplier per field, so the fields are unrelated)."""
    return f"((({i}) * {_HASH[field]} % 4294967296) / 65536 % {modulo})"


def _id(dialect: str, number: str) -> str:
    """The result id of row number `number`: 26 digits, ordered as the rows are."""
    if dialect == "sqlite":
        return f"printf('%026d', {number})"
    return f"lpad(CAST({number} AS TEXT), 26, '0')"


def _results_sql(dialect: str, start_us: int, step_us: int, count: int) -> str:
    """INSERT ... SELECT of the results numbered :lo to :hi - 1, time-ordered (ids and times
    grow with the number), drawn in SQL: the stations in turn (8 on 4 lines), 3 products,
    7% re-inspections of a serial seen at the station up to 400 parts before, 2% without
    serial and 2% the code reader's NOREAD, 6% NG; OK scores spread below the threshold, NG
    above; model version v1 in the first half of the history, v2 after."""
    t = f"({start_us} + i * {step_us})"
    if dialect == "sqlite":
        numbers = (
            "WITH RECURSIVE n(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :hi) "
        )
        at = (
            f"strftime('%Y-%m-%d %H:%M:%S', {t} / 1000000, 'unixepoch') "
            f"|| printf('.%06d', {t} % 1000000)"
        )
        source, json = "n", "'{}'"
    else:
        numbers = ""
        at = f"TIMESTAMPTZ 'epoch' + {t} * INTERVAL '1 microsecond'"
        source = "generate_series(CAST(:lo AS BIGINT), :hi - 1) AS n(i)"
        json = "CAST('{}' AS JSON)"
    ng = f"{_pick('i', 0, 100)} < 6"
    draw = _pick("i", 1, 100)
    earlier = f"CAST(i - 8 * (1 + {_pick('i', 2, 50)}) AS TEXT)"
    serial = (
        f"CASE WHEN {draw} < 7 AND i >= 400 THEN 'SN' || {earlier} "
        f"WHEN {draw} < 9 THEN NULL WHEN {draw} < 11 THEN 'NOREAD' ELSE 'SN' || CAST(i AS TEXT) END"
    )
    score = (
        f"CASE WHEN {ng} THEN 0.5 + {_pick('i', 3, 1000)} / 1000.0 "
        f"ELSE 0.05 + {_pick('i', 3, 440)} / 1000.0 END"
    )
    columns = (
        "result_id, verdict, score, threshold, station, line, product, serial, received_at, "
        "model_name, model_version, timings_ms"
    )
    return (
        f"{numbers}INSERT INTO results ({columns}) SELECT {_id(dialect, 'i')}, "
        f"CASE WHEN {ng} THEN 'NG' ELSE 'OK' END, {score}, 0.5, "
        "'S' || CAST(i % 8 + 1 AS TEXT), 'L' || CAST(i % 8 / 2 + 1 AS TEXT), "
        "'P' || CAST(100 * (i % 3 + 1) AS TEXT), "
        f"{serial}, {at}, 'm', CASE WHEN i < {count // 2} THEN 'v1' ELSE 'v2' END, {json} "
        f"FROM {source}"
    )


def _defects_sql(dialect: str) -> list[str]:
    """One defect on each NG part of the results :lo to :hi - 1, a second on a third of
    them; an NG label by QA on a fifth of them."""
    number = f"CAST(result_id AS {'INTEGER' if dialect == 'sqlite' else 'BIGINT'})"
    within = (
        f"verdict = 'NG' AND result_id >= {_id(dialect, ':lo')} "
        f"AND result_id < {_id(dialect, ':hi')}"
    )
    box = "0.9, 0, 0, 8, 8, 64"
    now = (
        "'2026-04-01 00:00:00.000000'"
        if dialect == "sqlite"
        else "TIMESTAMPTZ '2026-04-01 00:00:00+00'"
    )
    defect = 'INSERT INTO result_defects (result_id, "class", score, x0, y0, x1, y1, area_px) '
    return [
        f"{defect}SELECT result_id, {NAMES.format(pick=_pick(number, 4, 5))}, {box} "
        f"FROM results WHERE {within}",
        f"{defect}SELECT result_id, {NAMES.format(pick=_pick(number + ' + 1', 4, 5))}, {box} "
        f"FROM results WHERE {within} AND {_pick(number, 1, 3)} = 0",
        "INSERT INTO labels (result_id, label, defect_class, author, created_at) "
        f"SELECT result_id, 'NG', {NAMES.format(pick=_pick(number, 2, 5))}, 'qa', {now} "
        f"FROM results WHERE {within} AND {_pick(number, 4, 5)} = 0",
    ]


def seed(db: Database, count: int, days: int) -> None:
    """`count` results over `days` days up to LAST_DAY, by INSERT ... SELECT in the database;
    the rollup triggers run for every row, as when the service stores them."""
    with db.write() as session:
        session.execute(insert(StationRow), [{"id": s, "line": LINE_OF[s]} for s in STATIONS])
    start = datetime.combine(LAST_DAY - timedelta(days=days - 1), datetime.min.time(), UTC)
    start_us = int(start.timestamp()) * 1_000_000
    step_us = days * 86_400 * 1_000_000 // count
    statements = [_results_sql(db.dialect, start_us, step_us, count), *_defects_sql(db.dialect)]
    with tqdm(total=count, desc=f"seed {db.dialect}", unit=" results") as progress:
        for lo in range(0, count, CHUNK):
            hi = min(lo + CHUNK, count)
            with db.engine.begin() as connection:
                if db.dialect == "postgresql":  # the queries' --timeout is not the seed's
                    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                for statement in statements:  # numbers only: no parameters needed
                    sql = statement.replace(":lo", str(lo)).replace(":hi", str(hi))
                    # psycopg reads % as a placeholder, even with no parameters.
                    connection.exec_driver_sql(
                        sql if db.dialect == "sqlite" else sql.replace("%", "%%")
                    )
            progress.update(hi - lo)
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
    request = ReportRequest(first, LAST_DAY, grain="shift")
    return [
        ("breakdown: line, station, product", lambda db: [queries.breakdown(db, scope)]),
        ("breakdown, one station", lambda db: [queries.breakdown(db, station)]),
        ("shifts x station", lambda db: [queries.period_counts(db, scope, shifts)]),
        ("days x station", lambda db: [queries.period_counts(db, scope, daily)]),
        ("model defect classes", lambda db: queries.model_defect_classes(db, scope)),
        ("QA defect classes", lambda db: queries.qa_defect_classes(db, scope)),
        ("model versions", lambda db: queries.by_model(db, scope)),
        ("model score bins", lambda db: list(queries.score_bins(db, scope))),
        ("page: build_report", lambda db: [build_report(db, SETTINGS, request)]),
        (
            "page: build_report + HTML",
            lambda db: [html_report(build_report(db, SETTINGS, request))],
        ),
    ]


def _server_processes(db: Database) -> list[int]:
    """The local PostgreSQL server's processes (the postmaster's children), found through
    /proc from this session's backend; [] for SQLite or a server elsewhere."""
    if db.dialect == "sqlite":
        return []
    with db.engine.connect() as connection:
        backend = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    stat = Path(f"/proc/{backend}/stat")
    if not stat.exists():
        return []
    postmaster = stat.read_text().rsplit(")", 1)[1].split()[1]
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == postmaster
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _cpu_seconds(processes: list[int]) -> float:
    """This process's CPU time and that of `processes` (user + system)."""
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in processes:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def time_queries(db: Database, days: int, timeout_s: float) -> list[Timing]:
    restart = _sqlite_deadline(db.engine, timeout_s) if db.dialect == "sqlite" else lambda: None
    server = _server_processes(db)
    timings = []
    for name, run in report_queries(days):
        with _recorded(db.engine) as statements:
            restart()
            cpu = _cpu_seconds(server)
            began = time.perf_counter()
            try:
                rows: int | None = len(run(db))
            except OperationalError:  # interrupted or past PostgreSQL's statement timeout
                rows = None
            seconds = time.perf_counter() - began
            cpu = _cpu_seconds(server) - cpu
        timings.append(Timing(db.dialect, name, rows, seconds, cpu, list(statements)))
        shown = "stopped" if rows is None else f"{rows} rows"
        print(
            f"  {db.dialect} {name}: {seconds:.3f} s, CPU {cpu:.3f} s ({shown})",
            file=sys.stderr,
            flush=True,
        )
    return timings


def print_plan(db: Database, statement: str, params: Any) -> None:
    explain = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
    with db.engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + statement, params).fetchall()
    for row in rows:
        print("    " + (" ".join(str(v) for v in row[1:]) if db.dialect == "sqlite" else row[0]))


def run(db: Database, args: argparse.Namespace) -> list[Timing]:
    with db.read() as session:
        stored = int(session.scalar(select(func.count()).select_from(ResultRow)) or 0)
    if stored:  # a kept database (--sqlite-file, --postgresql URL): timed as it is
        print(f"{db.dialect}: {stored} results already stored; not seeding")
        args.results = stored
    else:
        began = time.perf_counter()
        seed(db, args.results, args.days)
        seconds = time.perf_counter() - began
        print(f"{db.dialect}: seeded {args.results} results in {seconds:.0f} s")
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
    parser.add_argument(
        "--sqlite-file",
        type=Path,
        help="SQLite database to seed and keep (timed as it is if it holds results already); "
        "default: a temporary one",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="time PostgreSQL only")
    parser.add_argument("--plans", action="store_true", help="print each query's plan")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per query")
    args = parser.parse_args()
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory() as folder:
        path = args.sqlite_file or Path(folder) / "reports.db"
        if not args.no_sqlite:
            db = open_database(f"sqlite:///{path.resolve()}", timeout_s=args.timeout)
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
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'database':<11}{'query':<36}{'rows':>6}{'seconds':>10}{'CPU s':>8}")
    for t in timings:
        rows = "-" if t.rows is None else str(t.rows)
        seconds = f"{t.seconds:.3f}" + ("" if t.rows is not None else " (stopped)")
        print(f"{t.database:<11}{t.query:<36}{rows:>6}{seconds:>10}{t.cpu:>8.3f}")


if __name__ == "__main__":
    main()
