"""The result payload: built from the result field by field, and its shipped JSON Schema."""

from __future__ import annotations

import json

from store_factories import DEFECTS, make_result

from defectlens.inference.delivery.payload import (
    FORMAT,
    SCHEMA_FILE,
    ResultPayload,
    payload_of,
    schema_text,
)


def test_payload_carries_what_the_mes_needs() -> None:
    result = make_result(3, verdict="NG", score=0.8, defects=DEFECTS, image_url="/v1/results/x")
    payload = payload_of(result)
    assert payload["format"] == FORMAT
    assert payload["result_id"] == result.result_id
    assert (payload["station"], payload["line"], payload["product"]) == ("S1", "L1", "bottle-500ml")
    assert payload["serial"] == "SN00003"
    assert payload["received_at"] == "2026-11-26T08:00:03Z"
    assert (payload["verdict"], payload["score"], payload["threshold"]) == ("NG", 0.8, 0.5)
    assert payload["defects"][0] == {
        "class": "scratch", "score": 0.91, "box": [10, 20, 60, 45], "area_px": 830,
    }  # fmt: skip
    assert payload["model"] == {"name": "bottle", "version": "20261126T143000Z-3fa2c1"}
    assert payload["image_url"] == "/v1/results/x"
    assert "timings_ms" not in payload  # the service's own figures stay home
    assert payload["processing_ms"] == 6.0  # receipt to verdict, the OPC UA ProcessingTimes
    assert ResultPayload.model_validate(payload).result_id == result.result_id


def test_shipped_schema_is_current() -> None:
    # Regenerate with: python -m defectlens.inference.delivery.payload
    assert SCHEMA_FILE.read_text() == schema_text()
    schema = json.loads(SCHEMA_FILE.read_text())
    assert {"result_id", "station", "verdict", "score", "received_at", "model"} <= set(
        schema["required"]
    )
