"""Valid inspection results for the store tests (the n-th received n seconds after T0)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from defectlens.inference.store import new_result_id
from defectlens.result import InspectionResult

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

DEFECTS = [
    {"class": "scratch", "score": 0.91, "box": (10, 20, 60, 45), "area_px": 830},
    {"class": "dent", "score": 0.62, "box": (100, 4, 120, 30), "area_px": 312},
]


def make_result(n: int = 0, **fields: Any) -> InspectionResult:
    received = T0 + timedelta(seconds=n)
    values: dict[str, Any] = {
        "result_id": new_result_id(received),
        "verdict": "OK",
        "score": 0.1,
        "threshold": 0.5,
        "defects": [],
        "timings_ms": {"decode": 1.0, "preprocess": 0.5, "model": 4.0, "total": 6.0},
        "model": {"name": "bottle", "version": "20261126T143000Z-3fa2c1"},
        "station": "S1",
        "line": "L1",
        "product": "bottle-500ml",
        "serial": f"SN{n:05d}",
        "camera": "cam0",
        "captured_at": received - timedelta(milliseconds=20),
        "received_at": received,
    }
    values.update(fields)
    return InspectionResult.model_validate(values)
