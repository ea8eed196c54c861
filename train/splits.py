"""Which images fit the memory bank, which choose the threshold, which measure the model;
and the record, kept in the model version, of the images it was trained on.

The rule for each layout (`defectlens.datasets.layout` shows the layouts):
- MVTec: train/good minus a `good_holdout` share fits; that share calibrates; each test
  type (good and every defect) is split `validation_fraction` to calibration, the rest to
  evaluation.
- Class folders, a flat folder of good images, a test-only MVTec folder (the good images
  in one pool): `POOLED_TEST_SHARE` of the good images is held out as MVTec's test/good
  would be; the rest are training images, split as MVTec's train/good. The held-out good
  images and each defect type are then split as MVTec's test types.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectlens.datasets.layout import GOOD, Dataset, Sample
from defectlens.errors import DataError, ModelError

POOLED_TEST_SHARE = 0.2
"""Share of the good images of a pooled layout held out from training (calibration and
evaluation take them, with the defective images), as MVTec's test/good is."""

TRAINING_IMAGES_FILE = "training_images.txt"
"""In a model version: the sha256, role and path of every image it was fitted or
calibrated on, one a line."""
_RECORD_HEADER = (
    "# defectlens training images: sha256<TAB>role (fit | calibration)<TAB>path relative to "
    "the data folder"
)
FIT, CALIBRATION = "fit", "calibration"


@dataclass
class Splits:
    fit: list[Sample]
    """Good images whose patches fill the memory bank."""
    calibration: list[Sample]
    """Images the threshold and the score scale are chosen on (never in the bank)."""
    evaluation: list[Sample]
    """Images the report measures the model on (neither fitted nor calibrated on)."""
    rule: str = ""
    """How the split was made, in words for the person training."""

    def counts(self) -> dict[str, int]:
        def defective(samples: Sequence[Sample]) -> int:
            return sum(s.is_defective for s in samples)

        return {
            "fit_good": len(self.fit),
            "calibration_good": len(self.calibration) - defective(self.calibration),
            "calibration_defective": defective(self.calibration),
            "evaluation_good": len(self.evaluation) - defective(self.evaluation),
            "evaluation_defective": defective(self.evaluation),
        }

    def table(self) -> list[str]:
        """The split as aligned lines: images, good, defective and the defect types."""
        rows = [
            ("fit", self.fit, "fill the model with good parts"),
            ("calibrate", self.calibration, "choose the threshold"),
            ("evaluate", self.evaluation, "measure the model"),
        ]
        lines = [f"  {'':<10}{'images':>8}{'good':>8}{'defective':>11}   used to"]
        for name, samples, purpose in rows:
            defective = sum(s.is_defective for s in samples)
            types = Counter(s.defect_type for s in samples if s.is_defective)
            by_type = ", ".join(f"{kind} {count}" for kind, count in sorted(types.items()))
            lines.append(
                f"  {name:<10}{len(samples):>8}{len(samples) - defective:>8}{defective:>11}   "
                f"{purpose}{f': {by_type}' if by_type else ''}"
            )
        return lines


def _take(
    samples: list[Sample], fraction: float, rng: np.random.Generator
) -> tuple[list[Sample], list[Sample]]:
    """Split off round(fraction * n) samples at random (at least one if fraction > 0)."""
    order = rng.permutation(len(samples))
    count = min(
        len(samples), max(1 if fraction > 0 and samples else 0, round(fraction * len(samples)))
    )
    chosen = {int(i) for i in order[:count]}
    picked = [s for i, s in enumerate(samples) if i in chosen]
    rest = [s for i, s in enumerate(samples) if i not in chosen]
    return picked, rest


def split_rule(dataset: Dataset, *, validation_fraction: float, good_holdout: float) -> str:
    """The rule `plan_splits` applies to `dataset`, in words."""
    held, rest = _percent(good_holdout), _percent(1 - good_holdout)
    valid, evaluate = _percent(validation_fraction), _percent(1 - validation_fraction)
    if not dataset.pooled:
        return (
            f"{dataset.description}: train/good: {rest} fit, {held} calibrate; each test/ "
            f"folder: {valid} calibrate, {evaluate} evaluate"
        )
    test_share, train_share = _percent(POOLED_TEST_SHARE), _percent(1 - POOLED_TEST_SHARE)
    defects = " and each defect type" if any(s.is_defective for s in dataset.test) else ""
    return (
        f"{dataset.description}: {train_share} of the good images are training images "
        f"({rest} of those fit, {held} calibrate); the other {test_share}{defects}: "
        f"{valid} calibrate, {evaluate} evaluate"
    )


def plan_splits(
    dataset: Dataset, *, validation_fraction: float, good_holdout: float, seed: int
) -> Splits:
    """Seeded, stratified splits by the rule of the module's docstring (`split_rule`)."""
    rng = np.random.default_rng(seed)
    by_type: dict[str, list[Sample]] = defaultdict(list)
    for sample in dataset.test:
        by_type[sample.defect_type].append(sample)
    training = list(dataset.train)
    if dataset.pooled:
        by_type[GOOD], training = _take(by_type.pop(GOOD, []), POOLED_TEST_SHARE, rng)
    holdout, fit = _take(training, good_holdout, rng)
    if not fit:
        raise DataError(f"{dataset.root}: no good images to learn from")
    calibration, evaluation = list(holdout), []
    for defect_type in sorted(by_type):
        picked, rest = _take(by_type[defect_type], validation_fraction, rng)
        calibration += picked
        evaluation += rest
    rule = split_rule(dataset, validation_fraction=validation_fraction, good_holdout=good_holdout)
    return Splits(fit=fit, calibration=calibration, evaluation=evaluation, rule=rule)


def without_copies_of_fit(splits: Splits, sha256: Mapping[Path, str]) -> tuple[Splits, int]:
    """`splits` less the calibration and evaluation images whose bytes are those of a fit
    image (the same file copied into two folders), and how many were left out."""
    fitted = {sha256[s.path] for s in splits.fit if s.path in sha256}

    def fresh(samples: list[Sample]) -> list[Sample]:
        return [s for s in samples if sha256.get(s.path) not in fitted]

    calibration, evaluation = fresh(splits.calibration), fresh(splits.evaluation)
    dropped = len(splits.calibration) + len(splits.evaluation) - len(calibration) - len(evaluation)
    return Splits(splits.fit, calibration, evaluation, splits.rule), dropped


@dataclass(frozen=True)
class TrainingImages:
    """The images a model version was trained on: sha256 -> path relative to its data."""

    fit: dict[str, str]
    calibration: dict[str, str]


def write_training_images(
    folder: Path, splits: Splits, sha256: Mapping[Path, str], root: Path
) -> Path:
    """Record the fit and calibration images in `folder` (`TRAINING_IMAGES_FILE`)."""
    lines = [_RECORD_HEADER]
    for role, samples in ((FIT, splits.fit), (CALIBRATION, splits.calibration)):
        for sample in samples:
            where = (
                sample.path.relative_to(root).as_posix()
                if sample.path.is_relative_to(root)
                else str(sample.path)
            )
            lines.append(f"{sha256[sample.path]}\t{role}\t{where}")
    path = folder / TRAINING_IMAGES_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_training_images(folder: Path) -> TrainingImages | None:
    """The record of a model version; None for a version trained before it was kept."""
    path = folder / TRAINING_IMAGES_FILE
    if not path.is_file():
        return None
    fit: dict[str, str] = {}
    calibration: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not readable ({exc})") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3 or fields[1] not in (FIT, CALIBRATION) or len(fields[0]) != 64:
            raise ModelError(
                f"{path}: line {number} is not sha256<TAB>fit|calibration<TAB>path; the "
                "model version folder was altered"
            )
        (fit if fields[1] == FIT else calibration)[fields[0]] = fields[2]
    return TrainingImages(fit=fit, calibration=calibration)


def _percent(share: float) -> str:
    return f"{share * 100:.0f} %"
