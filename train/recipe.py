"""Training recipes: YAML validated by pydantic; the resolved recipe is saved with the model.
The recipes shipped in `defectlens.configs` are found by name from any folder, and
`init_workspace` starts a user's own workspace from one of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
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

from defectlens.errors import InputError, RecipeError
from defectlens.train.detector_recipe import DetectorRecipe
from defectlens.train.thresholds import DEFAULT_TARGET_FRR, good_images_needed

SHIPPED_PACKAGE = "defectlens.configs"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A model's name: also a folder name under the models folder."""
DEFAULT_RECIPE = "anomaly"


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
    """best_f1 and zero_escape need defective images; without any, target_frr is used."""
    target: float | None = Field(default=0.01, ge=0, lt=1)
    """For target_frr (and the fallback to it): the false-reject rate on good parts to aim
    for; null means 0.01. It needs at least 1/target good calibration images."""
    validation_fraction: float = Field(default=0.3, gt=0, lt=1)
    """Share of the labeled test images (per defect type) used to choose the threshold."""
    good_holdout: float = Field(default=0.1, ge=0, lt=0.5)
    """Share of the training good images kept out of the memory bank to calibrate on."""


class Recipe(_Section):
    name: str = Field(pattern=NAME_PATTERN)
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


@dataclass(frozen=True)
class ShippedRecipe:
    """A recipe that ships inside defectlens (`configs/*.yaml`)."""

    name: str
    description: str
    """The first line of its leading comment."""
    text: str
    """The YAML as shipped, comments included."""
    where: str
    """Where it lives, for messages."""


def shipped_recipes() -> dict[str, ShippedRecipe]:
    """The shipped recipes by name (the file name without .yaml), sorted."""
    folder = resources.files(SHIPPED_PACKAGE)
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.name.endswith(".yaml") and entry.is_file():
            text = entry.read_text(encoding="utf-8")
            name = entry.name.removesuffix(".yaml")
            found[name] = ShippedRecipe(name, _description(text), text, str(entry))
    return found


def shipped_recipe(name: str) -> ShippedRecipe:
    """The shipped recipe called `name`; an unknown name lists the known ones."""
    recipes = shipped_recipes()
    if name not in recipes:
        raise RecipeError(
            f"unknown recipe {name!r}; the shipped recipes are {', '.join(recipes)} "
            "(`defectlens recipes list` describes them)"
        )
    return recipes[name]


def _description(text: str) -> str:
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if line.strip("# "):
            return line.lstrip("# ").rstrip()
    return ""


def _shipped_name(spec: Path) -> str | None:
    """The shipped recipe a path that is not a file here may mean: `anomaly`,
    `anomaly.yaml` or `configs/anomaly.yaml` (as the docs write it, from another folder)."""
    parts = spec.parts
    if len(parts) == 1 and spec.suffix in ("", ".yaml", ".yml"):
        return spec.stem if spec.suffix else spec.name
    if len(parts) == 2 and parts[0] == "configs" and spec.suffix in (".yaml", ".yml"):
        return spec.stem
    return None


def load_recipe(spec: str | Path) -> Recipe:
    """Read an anomaly recipe (as `load_any_recipe`); a detector's is refused by name."""
    recipe = load_any_recipe(spec)
    if not isinstance(recipe, Recipe):
        raise RecipeError(
            f"{spec}: a detector recipe (family: detection) where an anomaly recipe is needed"
        )
    return recipe


def load_any_recipe(spec: str | Path) -> Recipe | DetectorRecipe:
    """Read a recipe of either family (`family:` picks the schema): a YAML file (a path
    that exists wins), else a shipped recipe by name.

    A relative `data:` in a file is taken relative to the file's folder.
    """
    path = Path(spec)
    if path.is_file():
        return _parse(_read(path), str(path), path.parent)
    recipes = shipped_recipes()
    name = _shipped_name(path)
    if name in recipes:  # also past a folder of that name: a folder is no recipe
        return _parse(recipes[name].text, recipes[name].where, None)
    known = ", ".join(recipes)
    if path.exists():
        raise RecipeError(
            f"{path}: is a folder, not a recipe file; give a recipe file or a shipped "
            f"recipe's name ({known})"
        )
    if name is not None and path.suffix == "":
        raise RecipeError(
            f"unknown recipe {str(spec)!r}: no such file here and no shipped recipe of that "
            f"name; the shipped recipes are {known} (`defectlens recipes list`)"
        )
    raise RecipeError(
        f"{path}: recipe file not found; give a recipe file or a shipped recipe's name "
        f"({known}; `defectlens recipes list`)"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not readable ({exc})") from exc


def _parse(text: str, where: str, folder: Path | None) -> Recipe | DetectorRecipe:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: not readable YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{where}: a recipe is a YAML mapping of fields, got {type(raw).__name__}"
        )
    schema: type[Recipe | DetectorRecipe] = (
        DetectorRecipe if raw.get("family") == "detection" else Recipe
    )
    try:
        recipe = schema.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RecipeError(f"{where}: field {location!r}: {first['msg']}") from exc
    if folder is not None and recipe.data is not None and not recipe.data.is_absolute():
        recipe = recipe.model_copy(update={"data": (folder / recipe.data).resolve()})
    return recipe


# The starter workspace `defectlens init DIR` writes.
WORKSPACE_RECIPE = "recipe.yaml"
WORKSPACE_README = "README.txt"
_WORKSPACE_FOLDERS = ("images/train/good", "images/test/good", "models")

_README = """\
defectlens workspace "{name}"

This folder is a defectlens workspace: your training recipe, your images and, once you
train, your model versions (and, with DEFECTLENS_HOME set to it, the inspection service's
database and retained images).

  recipe.yaml                 the training recipe; edit it, its comments explain each field
                              (copied from the shipped recipe "{base}")
  images/train/good/          good parts only: the model learns what good looks like from
                              these (100 or more; every folder here needs at least one image)
  images/test/good/           more good parts, never fitted on: they set the threshold and
                              measure the false-reject rate (remove the folder if you have
                              none: a share of train/good is then kept apart for this)
  images/test/<defect type>/  defective parts, one folder per type, e.g. images/test/scratch/
                              (optional: without them the threshold comes from good parts
                              alone, and escapes cannot be measured)
  images/ground_truth/<defect type>/<image name>_mask.png
                              optional pixel masks of the defective parts (white = defect),
                              for the pixel figures of the report
  models/                     model versions, written by `defectlens train`

The threshold: with defective images in images/test/, the recipe's threshold.policy
({policy}) sets it; with good images alone, it aims at rejecting {target} of good parts
(threshold.target), which needs at least {needed} good images set apart for calibration
(threshold.good_holdout of images/train/good, threshold.validation_fraction of
images/test/good).

Next steps, from this folder:

  export DEFECTLENS_HOME="$PWD"

  1. Train; the last line printed is the new version folder, open its report/index.html:
       defectlens train recipe.yaml --out models
  2. Check it on parts it has not seen (laid out like images/):
       defectlens evaluate models/{name}/<version> --data NEW-BATCH --report NEW-BATCH-report
  3. Promote it to a station:
       defectlens models promote models/{name}/<version> --station line1-cam1
  4. Serve (a line key first; the key is printed on the last line):
       defectlens keys create --role line --name line1-plc
       defectlens serve --host 0.0.0.0 --port 8000

Other shipped recipes: `defectlens recipes list`; one in full: `defectlens recipes show NAME`.
"""


def init_workspace(folder: Path, base: str = DEFAULT_RECIPE) -> list[Path]:
    """Write a starter workspace into `folder` (new or empty): an editable copy of the
    shipped recipe `base` reading `images/`, a README of the next commands, and the image
    folders. Returns the files and folders written; refuses a folder that holds anything."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file; give a new or empty folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise InputError(
            f"{folder}: not empty; give a new or empty folder (init never overwrites files)"
        )
    shipped = shipped_recipe(base)
    if (yaml.safe_load(shipped.text) or {}).get("family") == "detection":
        raise RecipeError(
            f"{base}: a detector recipe; init starts an anomaly workspace (images of good "
            "parts). Train a detector directly: defectlens train "
            f"{base} --data DEEPPCB_FOLDER_OR_COCO_JSON"
        )
    absolute = folder.resolve()
    name = absolute.name if re.match(NAME_PATTERN, absolute.name) else shipped.name
    recipe_text = starter_recipe(shipped, name)
    threshold = Recipe.model_validate(yaml.safe_load(recipe_text)).threshold
    target = DEFAULT_TARGET_FRR if threshold.target is None else threshold.target
    absolute.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the destination and renamed into place: never a half workspace.
    staging = Path(tempfile.mkdtemp(prefix=f".{absolute.name}-", dir=absolute.parent))
    try:
        (staging / WORKSPACE_RECIPE).write_text(recipe_text, encoding="utf-8")
        needed = good_images_needed(target)
        readme = _README.format(
            name=name,
            base=shipped.name,
            policy=threshold.policy,
            target=f"{target:.1%}",
            needed=needed if needed is not None else "ever more",
        )
        (staging / WORKSPACE_README).write_text(readme, encoding="utf-8")
        for sub in _WORKSPACE_FOLDERS:
            (staging / sub).mkdir(parents=True)
        if absolute.is_dir():
            absolute.rmdir()  # empty, checked above
        os.rename(staging, absolute)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = [folder / WORKSPACE_RECIPE, folder / WORKSPACE_README]
    return written + [folder / sub for sub in _WORKSPACE_FOLDERS]


def starter_recipe(shipped: ShippedRecipe, name: str) -> str:
    """The shipped recipe's YAML, comments kept, made a workspace's own: a header saying
    where it came from, the workspace's `name`, and `data: images` beside it."""
    scalar = name if yaml.safe_load(name) == name else json.dumps(name)  # "123" stays a str
    lines = [
        f"# {name}: your recipe, copied from the shipped recipe {shipped.name!r}",
        f"# (`defectlens recipes show {shipped.name}`). Change what the comments explain.",
        "# Train with, from this folder: defectlens train recipe.yaml --out models",
    ]
    for line in shipped.text.splitlines():
        if line.startswith("# Train with:"):
            continue  # the shipped recipe's own command, not this copy's
        if line.startswith("name:"):
            lines.append(
                f"{'name: ' + scalar:<24} # the model's name: versions go to models/{name}/"
            )
            lines.append(
                f"{'data: images':<24} # the images, relative to this file; --data overrides"
            )
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"
