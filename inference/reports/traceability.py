"""Traceability on the reports page: every stored inspection of a part, found by its serial,
with its verdict, score, model version, standing QA label and links to its image and heat
map (served by `GET /v1/results/{id}/image` and `/heatmap`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from defectlens.errors import InputError
from defectlens.inference.reports import queries
from defectlens.inference.store import Store
from defectlens.result import InspectionResult

MAX_PARTS = 50
"""Inspections shown for one serial, newest first."""


@dataclass(frozen=True)
class TracedPart:
    result: InspectionResult
    label: tuple[str, str | None] | None
    """The standing QA label (verdict, defect class), if QA labelled it."""


def parts_by_serial(
    store: Store, serial: str, stations: Sequence[str] | None = None
) -> list[TracedPart]:
    """The inspections of `serial`, newest first, at most MAX_PARTS; with `stations`, only
    theirs (an API key limited to some stations sees no other)."""
    serial = serial.strip()
    if not serial or len(serial) > 128:
        raise InputError("serial: give the part's serial, 1 to 128 characters")
    found, _ = store.list_results(serial=serial, limit=MAX_PARTS)
    if stations is not None:
        found = [result for result in found if result.station in stations]
    labels = queries.standing_labels(store.db, [result.result_id for result in found])
    return [TracedPart(result, labels.get(result.result_id)) for result in found]
