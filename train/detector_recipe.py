"""The detector's training recipe (`family: detection`), validated by pydantic; the
resolved recipe is saved with the model and in every training checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentSection(_Section):
    """The albumentations training preset, applied to part, reference and boxes together."""

    flips: bool = True
    """Horizontal and vertical flips."""
    rot90: bool = True
    """Quarter turns (for parts with no preferred direction, such as PCB traces)."""
    background_crops: float = Field(default=0.1, ge=0, le=1)
    """Share of crops taken anywhere (the rest are centred near a defect, class-balanced)."""


class ScheduleSection(_Section):
    epochs: int = Field(default=60, ge=1, le=10000)
    max_minutes: float = Field(default=20.0, gt=0)
    """Training stops when either runs out; the cosine schedule follows whichever runs out
    first, so a run stopped by the clock still ends at a low learning rate."""
    clock: Literal["wall", "cpu"] = "wall"
    """What `max_minutes` counts: wall-clock minutes, or the training process's CPU time
    divided by `threads` (minutes of that many cores: the same amount of training on a
    machine others are using too)."""
    learning_rate: float = Field(default=2e-3, gt=0, le=1)
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    warmup: float = Field(default=0.03, ge=0, lt=1)
    """Share of the run spent ramping the learning rate up (linear), before the cosine."""
    patience: int = Field(default=8, ge=1)
    """Stop after this many validations without a better validation mAP@0.5."""
    validate_every: int = Field(default=1, ge=1)
    """Epochs between validations (each writes a checkpoint)."""


class DetectorRecipe(_Section):
    name: str = Field(pattern=NAME_PATTERN)
    family: Literal["detection"] = "detection"
    data: Path | None = None
    """A DeepPCB folder or a COCO JSON file (`defectlens.datasets.detection`)."""
    image_size: tuple[int, int] = (640, 640)
    """The model's input (the engine stretches each image to it)."""
    reference: Literal["auto", "yes", "no"] = "auto"
    """Feed the part's aligned defect-free reference as a second input; `auto` uses it when
    every image of the data set has one."""
    crop: int = Field(default=192, ge=64, le=1024)
    """Training crops' side, cut from the full images (evaluation uses whole images)."""
    crops_per_image: int = Field(default=1, ge=1, le=64)
    """Crops per training image in an epoch."""
    width: int = Field(default=64, ge=8, le=256)
    """Channels of the detection head."""
    frozen_stem: bool = True
    """Keep the backbone's stride-2 layers (generic edge filters) as pretrained: training
    runs about twice as fast."""
    top_k: int = Field(default=100, ge=1, le=1000)
    """Detections the graph returns per image, highest scores first."""
    augment: AugmentSection = Field(default_factory=AugmentSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    batch_size: int = Field(default=16, ge=1, le=256)
    evaluation_fraction: float = Field(default=0.2, ge=0, lt=1)
    """Seeded share of the data kept out of training for the report (the held-out figures)."""
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    """Seeded share of the rest, for early stopping and the per-class thresholds."""
    min_threshold: float = Field(default=0.1, gt=0, lt=1)
    """Lowest per-class score threshold the calibration may choose."""
    threads: int = Field(default=2, ge=1, le=256)
    """PyTorch threads for training."""
    seed: int = 0

    @field_validator("image_size", mode="before")
    @classmethod
    def _square_from_int(cls, value: object) -> object:
        return (value, value) if isinstance(value, int) else value

    @field_validator("reference", mode="before")
    @classmethod
    def _reference_from_bool(cls, value: object) -> object:
        # YAML reads an unquoted `yes` or `no` as a boolean.
        if isinstance(value, bool):
            return "yes" if value else "no"
        return value

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(side < 64 or side > 2048 or side % 32 for side in value):
            raise ValueError("each side must be a multiple of 32 between 64 and 2048")
        return value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
