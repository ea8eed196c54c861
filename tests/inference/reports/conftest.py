"""Report fixtures: a migrated store on SQLite and on a real PostgreSQL (tests/pg_server.py),
and `seed` to insert results with chosen times, verdicts, serials and defect classes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for pg_server
import pg_server
from report_seed import Seed
from sqlalchemy import insert

from defectlens.inference.store import Database, new_result_id
from defectlens.inference.store.tables import (
    LabelRow,
    ResultDefectRow,
    ResultRow,
    StationRow,
)

# The store fixtures every store test uses, from tests/pg_server.py.
postgres_server = pg_server.postgres_server
postgres_store_url = pg_server.postgres_store_url
db = pg_server.db


@pytest.fixture
def seed(db: Database) -> Seed:
    """`seed(at, verdict="OK", station="S1", line="L1", product="P", serial=None,
    defects=(), label=None)`: one result (its id returned)."""

    def add(
        at: datetime,
        verdict: str = "OK",
        station: str = "S1",
        line: str | None = "L1",
        product: str | None = "P",
        serial: str | None = None,
        defects: tuple[str, ...] = (),
        label: tuple[str, str | None] | None = None,
        model_version: str = "v1",
        score: float | None = None,
    ) -> str:
        result_id = new_result_id(at)
        values: dict[str, Any] = {
            "result_id": result_id,
            "verdict": verdict,
            "score": score if score is not None else (0.8 if verdict == "NG" else 0.2),
            "threshold": 0.5,
            "station": station,
            "line": line,
            "product": product,
            "serial": serial,
            "received_at": at,
            "model_name": "m",
            "model_version": model_version,
            "timings_ms": {},
        }
        with db.write() as session:
            session.execute(insert(ResultRow), [values])
            for name in defects:
                session.execute(
                    insert(ResultDefectRow),
                    [
                        {
                            "result_id": result_id,
                            "class_": name,
                            "score": 0.9,
                            "x0": 0,
                            "y0": 0,
                            "x1": 1,
                            "y1": 1,
                            "area_px": 1,
                        }
                    ],
                )
            if label is not None:
                session.execute(
                    insert(LabelRow),
                    [
                        {
                            "result_id": result_id,
                            "label": label[0],
                            "defect_class": label[1],
                            "author": "qa",
                        }
                    ],
                )
        return result_id

    return add


@pytest.fixture
def add_station(db: Database) -> Callable[[str, str | None], None]:
    def add(station: str, line: str | None = "L1") -> None:
        with db.write() as session:
            session.execute(insert(StationRow), [{"id": station, "line": line}])

    return add
