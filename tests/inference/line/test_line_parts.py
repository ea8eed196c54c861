"""A line part whose inspection fails in a way the service did not foresee (ONNX Runtime, the
disk) still gets its fail-safe verdict stored, as docs/plc.md promises."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from defectlens.inference.line.parts import FAIL_SAFE_CLASS, inspect_within
from defectlens.inference.service.core import InspectionService
from defectlens.inference.service.inspection import PartMetadata

STATION = "s1"


def test_an_engine_that_raises_stores_the_fail_safe(
    service: InspectionService,
    good_images: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # ONNX Runtime failing inside a run cannot be provoked with a sound model: the served
    # engine's predict raises what onnxruntime raises (a RuntimeError subclass).
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")

    monkeypatch.setattr(service.registry.get(STATION), "predict", broken)
    image = next(iter(sorted(good_images.iterdir()))).read_bytes()
    metadata = PartMetadata(station=STATION, line="L1", serial="SN-42")
    with caplog.at_level(logging.ERROR, logger="defectlens.inference.line.parts"):
        answer = inspect_within(service, image, metadata, time.monotonic() + 30, "NG")
    assert (answer.fail_safe, answer.verdict, answer.late) == ("error", "NG", False)
    stored, _ = service.store.list_results(limit=10)
    assert [(r.serial, r.verdict, r.defects[0].class_) for r in stored] == [
        ("SN-42", "NG", FAIL_SAFE_CLASS)
    ]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (getattr(record, "station", None), getattr(record, "serial", None)) == (STATION, "SN-42")
    assert "RUNTIME_EXCEPTION" in (record.exc_text or str(record.exc_info))
