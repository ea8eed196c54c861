"""The result payload every sink sends: built once from the `InspectionResult` when the
result is stored, documented as a JSON Schema shipped beside this module
(`result_payload.schema.json`; `python -m defectlens.inference.delivery.payload` rewrites it).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from defectlens.prediction import Defect, ModelRef, Verdict
from defectlens.result import InspectionResult

FORMAT = "defectlens.result/1"
SCHEMA_FILE = Path(__file__).with_name("result_payload.schema.json")


class ResultPayload(BaseModel):
    """One inspected part, as the MES receives it. `result_id` is unique and time-ordered:
    a receiver that sees it twice has the same content twice (deliveries are at least
    once)."""

    model_config = ConfigDict(
        protected_namespaces=(), populate_by_name=True, title="DefectLens inspection result"
    )

    format: Literal["defectlens.result/1"] = "defectlens.result/1"
    result_id: str = Field(description="Unique, time-ordered id; the idempotency key.")
    station: str
    line: str | None = None
    product: str | None = None
    serial: str | None = Field(default=None, description="The part's serial number.")
    camera: str | None = None
    captured_at: datetime | None = Field(default=None, description="When the image was taken.")
    received_at: datetime = Field(description="When the service received the image (UTC).")
    processing_ms: float | None = Field(
        default=None, description="From the image's receipt to the verdict, in milliseconds."
    )
    verdict: Verdict
    score: float = Field(description="Anomaly score; at or above `threshold` is NG.")
    threshold: float
    defects: list[Defect] = Field(
        default_factory=list,
        description="Defect regions: class, score, box [x0, y0, x1, y1] in image pixels.",
    )
    model: ModelRef = Field(description="The model version that decided.")
    image_url: str | None = Field(
        default=None, description="The retained image on the service, if it was kept."
    )
    heatmap_url: str | None = None


def payload_of(result: InspectionResult) -> dict[str, Any]:
    """The JSON payload of `result` (what the outbox stores and the sinks send)."""
    payload = ResultPayload(
        result_id=result.result_id,
        station=result.station,
        line=result.line,
        product=result.product,
        serial=result.serial,
        camera=result.camera,
        captured_at=result.captured_at,
        received_at=result.received_at,
        processing_ms=result.timings_ms.total,
        verdict=result.verdict,
        score=result.score,
        threshold=result.threshold,
        defects=result.defects,
        model=result.model,
        image_url=result.image_url,
        heatmap_url=result.heatmap_url,
    )
    return payload.model_dump(mode="json", by_alias=True)


def payload_schema() -> dict[str, Any]:
    """The payload's JSON Schema, as shipped in `SCHEMA_FILE`."""
    schema = ResultPayload.model_json_schema(by_alias=True, mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": FORMAT, **schema}


def schema_text() -> str:
    return json.dumps(payload_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text())
    print(SCHEMA_FILE)
