"""`Prediction`: what the engine returns for one image, whatever model family ran."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["OK", "NG"]


class Defect(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class")
    score: float
    box: tuple[int, int, int, int]
    """[x0, y0, x1, y1] in original image pixels, x1/y1 exclusive."""
    area_px: int


class Timings(BaseModel):
    decode: float = 0.0
    preprocess: float = 0.0
    model: float = 0.0
    postprocess: float = 0.0
    total: float = 0.0


class ModelRef(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str


class Prediction(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    verdict: Verdict
    score: float
    threshold: float
    defects: list[Defect] = Field(default_factory=list)
    anomaly_map: Any = Field(default=None, exclude=True)
    """float32 array of the original image size (normalised scores), or None."""
    timings_ms: Timings = Field(default_factory=Timings)
    model: ModelRef
