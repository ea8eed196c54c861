"""`model.json`: the ModelCard, the hand-off contract from training to serving.

Training writes it next to `model.onnx`; the engine reads nothing else to know how to feed
the graph and how to read its outputs (see ARCHITECTURE.md, "A model version").
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from defectlens.errors import ModelError

MODEL_FORMAT = "defectlens.model/1"
DOCUMENTED_THRESHOLD = 0.5
"""Normalised scores put the calibrated cut here: a score at or above it is NG."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class InputSpec(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3]
    color: Literal["gray", "rgb"]
    resize: Literal["stretch", "letterbox"] = "stretch"
    dtype: Literal["uint8"] = "uint8"
    layout: Literal["NHWC"] = "NHWC"


class OutputSpec(_Strict):
    name: str
    shape: list[str | int]
    """Symbolic dims as names (`N`, `K`), fixed dims as integers."""


class Calibration(_Strict):
    policy: Literal["best_f1", "zero_escape", "target_frr"]
    target: float | None = None
    """The policy's parameter, e.g. the false-reject rate asked for."""
    raw_threshold: float
    """The cut in the model's raw score space before normalisation."""
    scale: float = Field(gt=0)
    """Normalised score = sigmoid((raw - raw_threshold) / scale)."""
    validation: dict[str, int] = Field(default_factory=dict)
    """Counts of the images the threshold was chosen on (good, defective)."""
    warnings: list[str] = Field(default_factory=list)
    """What the calibration could not do as asked (a policy that fell back to target_frr,
    a target too few good images can resolve), each with what to do."""


class ModelCard(_Strict):
    format: Literal["defectlens.model/1"] = "defectlens.model/1"
    name: str
    version: str
    family: Literal["anomaly", "detection"]
    created: datetime
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: InputSpec
    outputs: list[OutputSpec]
    threshold: float = DOCUMENTED_THRESHOLD
    calibration: Calibration
    class_thresholds: dict[str, float] = Field(default_factory=dict)
    classes: list[str] = Field(default_factory=lambda: ["anomaly"])
    codes: dict[str, int] = Field(default_factory=dict)
    """The PLC defect code of each class (1..99); a class not named here gets its place in
    `classes`, 1-based (so an anomaly model's defects are 1)."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, float] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    software: dict[str, str] = Field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        if not path.is_file():
            raise ModelError(f"{path}: no model.json; is this a model version folder?")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not readable JSON ({exc})") from exc
        if isinstance(raw, dict) and raw.get("format") != MODEL_FORMAT:
            raise ModelError(
                f"{path}: format {raw.get('format')!r} is not {MODEL_FORMAT!r}; "
                "retrain or upgrade defectlens"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ModelError(f"{path}: field {where!r}: {first['msg']}") from exc


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
