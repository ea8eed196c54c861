"""One line part through the service layer, with the station's deadline and fail-safe.

The part runs `inspect_part` on the service's inspection threads (the same pipeline, stored
result and metrics as `POST /v1/inspect`). When the answer cannot make the deadline, the
inspection is abandoned (nothing of it is stored) and a fail-safe result is stored in its
place, so the part is recorded with the verdict the PLC was given, never dropped.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

from defectlens.errors import DefectLensError
from defectlens.inference.service.core import InspectionService
from defectlens.inference.service.inspection import (
    Attempt,
    PartMetadata,
    inspect_part,
    store_result,
)
from defectlens.inference.store import DuplicatePart, new_result_id
from defectlens.logs import submit_with_context
from defectlens.prediction import Defect, ModelRef, Timings, Verdict
from defectlens.result import InspectionResult

log = logging.getLogger(__name__)

FAIL_SAFE_CLASS = "fail_safe"
"""The defect class that marks a stored fail-safe result (its `score` is 1.0 for NG)."""


@dataclass(frozen=True)
class LineAnswer:
    """What the line gets for a part: the stored result, and why it is a fail-safe one."""

    result: InspectionResult
    fail_safe: str | None = None
    """`deadline`, `source` or `error` when the verdict is the station's fail-safe one."""
    late: bool = False
    """The answer came after the deadline (its result was already being stored)."""

    @property
    def verdict(self) -> Verdict:
        return self.result.verdict


def inspect_within(
    service: InspectionService,
    data: bytes,
    metadata: PartMetadata,
    deadline: float,
    fail_safe: Verdict,
    threads: Executor | None = None,
) -> LineAnswer:
    """Inspect a part, answering by `deadline` (a `time.monotonic()` instant): past it the
    inspection is abandoned and the fail-safe verdict stored. An inspection whose result was
    already being stored at the deadline is waited for (the database timeout bounds it) and
    answered late with its own verdict, so the stored result and the answer always agree.
    An error (an undecodable frame, a station without a model, an ONNX Runtime or disk
    failure) stores the fail-safe too, with reason `error`. `threads`: where it runs (the
    line's own threads; default the service's inspection threads)."""
    attempt = Attempt()
    future = submit_with_context(
        threads or service.threads, inspect_part, service, data, metadata, False, attempt
    )
    try:
        try:
            inspected = future.result(timeout=max(0.0, deadline - time.monotonic()))
            return LineAnswer(inspected.result)
        except concurrent.futures.TimeoutError:
            future.cancel()
            if not attempt.abandon():
                return LineAnswer(future.result().result, late=True)
    except Exception as error:  # whatever failed, the PLC's verdict is stored (docs/plc.md)
        if not isinstance(error, DefectLensError):  # ONNX Runtime, OSError, a bug: the trace
            log.exception(
                "station %s: inspecting %s failed",
                metadata.station,
                metadata.serial or "(no serial)",
                extra={"station": metadata.station, "serial": metadata.serial},
            )
        reason = f"inspection failed: {error}"
        return LineAnswer(store_fail_safe(service, metadata, fail_safe, reason), "error")
    reason = f"no answer within the deadline of station {metadata.station}"
    return LineAnswer(store_fail_safe(service, metadata, fail_safe, reason), "deadline")


def store_fail_safe(
    service: InspectionService, metadata: PartMetadata, verdict: Verdict, reason: str
) -> InspectionResult:
    """Store a part that got the station's fail-safe verdict: one defect of class
    `fail_safe`, the station's model (or `none`), the part's idempotency key."""
    received_at = datetime.now(UTC)
    try:
        card = service.registry.get(metadata.station).card
        model, threshold = ModelRef(name=card.name, version=card.version), card.threshold
    except DefectLensError:
        model, threshold = ModelRef(name="none", version="none"), 0.5
    result = InspectionResult(
        result_id=new_result_id(received_at),
        verdict=verdict,
        score=1.0 if verdict == "NG" else 0.0,
        threshold=threshold,
        defects=[
            Defect.model_validate(
                {"class": FAIL_SAFE_CLASS, "score": 1.0, "box": (0, 0, 0, 0), "area_px": 0}
            )
        ],
        timings_ms=Timings(),
        model=model,
        received_at=received_at,
        **metadata.result_fields(),
    )
    try:
        store_result(service, result, idempotency_key=metadata.idempotency_key)
    except DuplicatePart as duplicate:
        return duplicate.existing
    log.warning(
        "fail-safe %s for %s: %s",
        verdict,
        metadata.serial or "(no serial)",
        reason,
        extra={
            "station": metadata.station,
            "serial": metadata.serial,
            "result_id": result.result_id,
        },
    )
    return result
