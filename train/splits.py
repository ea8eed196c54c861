"""Which images fit the memory bank, which choose the threshold, which measure the model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from defectlens.datasets.layout import Dataset, Sample
from defectlens.errors import DataError


@dataclass
class Splits:
    fit: list[Sample]
    """Good images whose patches fill the memory bank."""
    calibration: list[Sample]
    """Images the threshold and the score scale are chosen on (never in the bank)."""
    evaluation: list[Sample]
    """Images the report measures the model on (neither fitted nor calibrated on)."""

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


def plan_splits(
    dataset: Dataset, *, validation_fraction: float, good_holdout: float, seed: int
) -> Splits:
    """Seeded, stratified splits.

    MVTec layout: `train/good` minus a `good_holdout` share fits the bank; each test type
    is split `validation_fraction` to calibration and the rest to evaluation. Class
    folders (everything in one pool): half of the good images fit the bank, the rest and
    the defective images are split as above.
    """
    rng = np.random.default_rng(seed)
    by_type: dict[str, list[Sample]] = defaultdict(list)
    for sample in dataset.test:
        by_type[sample.defect_type].append(sample)
    if dataset.train:
        holdout, fit = _take(list(dataset.train), good_holdout, rng)
    else:
        fit, remaining = _take(by_type.pop("good", []), 0.5, rng)
        holdout, by_type["good"] = [], remaining
    if not fit:
        raise DataError(f"{dataset.root}: no good images to learn from")
    calibration, evaluation = list(holdout), []
    for defect_type in sorted(by_type):
        picked, rest = _take(by_type[defect_type], validation_fraction, rng)
        calibration += picked
        evaluation += rest
    return Splits(fit=fit, calibration=calibration, evaluation=evaluation)
