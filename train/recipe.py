"""Training recipes: YAML validated by pydantic; the resolved recipe is saved with the model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from defectlens.errors import RecipeError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackboneSection(_Section):
    stages: list[int] = Field(default=[2, 3], min_length=1)
    """EfficientNet-Lite0 stages to tap: 1 stride 4, 2 stride 8, 3 stride 16, 4 stride 32."""
    neighbourhood: int = Field(default=3, ge=1, le=9)
    """Local average pooling window on each feature map (patch neighbourhood)."""
    feature_dim: int | None = Field(default=64, ge=8)
    """Random projection width of the patch features; null keeps every channel."""
    position_gaussian: bool = True
    """Add each position's Gaussian of good patches to the nearest-neighbour score (for
    parts that sit in the same place in every image; turn off for free-floating parts)."""
    context_neighbourhood: int = Field(default=11, ge=0, le=15)
    """Window of the wide-context position Gaussian, for defects larger than a patch
    (uneven regions, stains); 0 turns it off. Needs position_gaussian."""
    context_weight: float = Field(default=1.0, gt=0, le=10)
    """Weight of the context term against the others (each is divided by its spread)."""
    position_weight: float = Field(default=1.0, gt=0, le=10)
    """Weight of the per-position Gaussian term (the nearest-neighbour term weighs 1)."""
    row_profile_weight: float = Field(default=0.0, ge=0, le=10)
    """Weight of the row-profile Gaussian: each row of patches averaged across the image,
    against the same row of the good images. It marks a whole band that runs across the
    part (a strip ground or coated differently); 0 turns it off."""

    @model_validator(mode="after")
    def _context_needs_position(self) -> BackboneSection:
        if self.context_neighbourhood and not self.position_gaussian:
            raise ValueError("context_neighbourhood needs position_gaussian: true (or set it to 0)")
        return self


class CoresetSection(_Section):
    ratio: float = Field(default=0.01, gt=0, le=1)
    """Memory bank size as a fraction of all training patches..."""
    max_size: int = Field(default=4000, ge=16)
    """...capped here: the bank size sets the per-image search cost."""
    pool_fraction: float = Field(default=0.25, gt=0, le=1)
    """Random share of training patches the greedy search picks from (fit-time cost)."""


class ThresholdSection(_Section):
    policy: Literal["best_f1", "zero_escape", "target_frr"] = "best_f1"
    target: float | None = Field(default=None, ge=0, lt=1)
    """For target_frr: the false-reject rate on good parts to aim for (e.g. 0.01)."""
    validation_fraction: float = Field(default=0.3, gt=0, lt=1)
    """Share of the labeled test images (per defect type) used to choose the threshold."""
    good_holdout: float = Field(default=0.1, ge=0, lt=0.5)
    """Share of the training good images kept out of the memory bank to calibrate on."""


class Recipe(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    family: Literal["anomaly"] = "anomaly"
    data: Path | None = None
    """Dataset folder (MVTec layout or a folder per class); --data overrides it."""
    image_size: tuple[int, int] = (256, 256)
    color: Literal["auto", "gray", "rgb"] = "auto"
    resize: Literal["stretch", "letterbox"] = "stretch"
    standardize: Literal["off", "global", "local"] = "global"
    """Bring each image's brightness and contrast to the training images' before the
    backbone (robust to exposure drift): `global` over the whole image; `local` within a
    Gaussian window (`standardize_sigma`) around each pixel, which also evens out uneven
    lighting and shading across the part; `off` when a defect is a change of overall
    brightness, such as a whole part discoloured. true and false read as global and off."""
    standardize_sigma: float = Field(default=24.0, ge=4, le=128)
    """The window of `local` standardisation: a Gaussian's sigma, in input pixels."""
    backbone: BackboneSection = Field(default_factory=BackboneSection)
    coreset: CoresetSection = Field(default_factory=CoresetSection)
    map_sigma: float = Field(default=4.0, gt=0, le=32)
    threshold: ThresholdSection = Field(default_factory=ThresholdSection)
    seed: int = 0
    batch_size: int = Field(default=2, ge=1, le=256)

    @field_validator("standardize", mode="before")
    @classmethod
    def _standardize_from_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            return "global" if value else "off"
        return value

    @field_validator("image_size", mode="before")
    @classmethod
    def _square_from_int(cls, value: object) -> object:
        return (value, value) if isinstance(value, int) else value

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(side < 64 or side > 1024 or side % 32 for side in value):
            raise ValueError("each side must be a multiple of 32 between 64 and 1024")
        return value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_recipe(path: Path) -> Recipe:
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: not readable YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of fields, got {type(raw).__name__}")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RecipeError(f"{path}: field {where!r}: {first['msg']}") from exc
    if recipe.data is not None and not recipe.data.is_absolute():
        recipe = recipe.model_copy(update={"data": (path.parent / recipe.data).resolve()})
    return recipe
