"""The inspection result: one part's `Prediction` plus where and when it was inspected.

One model serves the API response, the stored row and the MES payload (ARCHITECTURE.md).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from defectlens.prediction import Defect, ModelRef, Timings, Verdict


class InspectionResult(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), populate_by_name=True)

    result_id: str
    """Time-ordered unique id (sortable); also the idempotency key for MES sinks."""
    verdict: Verdict
    score: float
    threshold: float
    defects: list[Defect] = Field(default_factory=list)
    timings_ms: Timings
    model: ModelRef
    station: str
    line: str | None = None
    product: str | None = None
    serial: str | None = None
    camera: str | None = None
    captured_at: datetime | None = None
    received_at: datetime
    image_url: str | None = None
    heatmap_url: str | None = None
