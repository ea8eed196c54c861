"""Threshold policies on raw anomaly scores (a score at or above the threshold is NG), the
choice among them with the warnings a QA engineer must see, and the sigmoid that maps raw
scores so the calibrated threshold lands on 0.5."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from defectlens.errors import InputError
from defectlens.train.metrics import FloatArray, as_labels_scores, counts_by_threshold

Policy = Literal["best_f1", "zero_escape", "target_frr"]
POLICIES: tuple[Policy, ...] = ("best_f1", "zero_escape", "target_frr")

DEFAULT_TARGET_FRR = 0.01
"""The false-reject rate target_frr aims at when the recipe gives none (1% of good parts)."""

_GOOD_MEDIAN_TARGET = 0.1
"""Where `sigmoid_scale` puts the median good score in the normalised space."""


def best_f1(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """The threshold with the highest F1 on these images.

    Any cut between the chosen score and the next lower score gives the same F1; the midpoint
    is returned so the cut does not sit on a validation part. Among equal F1s the lowest cut
    (fewest escapes) wins.
    """
    y, s = as_labels_scores(labels, scores)
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        present = "defective" if positives else "good"
        raise InputError(
            f"best_f1 needs both good and defective images, but only {present} ones were "
            "given; use the target_frr policy to calibrate on good parts alone"
        )
    cuts, tp, fp = counts_by_threshold(y, s)
    f1 = 2 * tp / (tp + fp + positives)  # 2tp / (2tp + fp + fn), fn = positives - tp
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    if best + 1 == cuts.size:
        return float(cuts[best])
    return float((cuts[best] + cuts[best + 1]) / 2.0)


def zero_escape(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """The highest threshold that passes no defective part: the lowest defective score."""
    y, s = as_labels_scores(labels, scores)
    if not y.any():
        raise InputError(
            "zero_escape needs at least one defective image; use the target_frr policy to "
            "calibrate on good parts alone"
        )
    return float(s[y].min())


def target_frr(good_scores: npt.ArrayLike, target: float) -> float:
    """The lowest threshold whose false-reject rate on these good parts is at most `target`.

    With n good parts, at most floor(target * n) may be rejected: the cut goes just above
    the good score that ranks next below them (just above the highest good score for 0).
    """
    if not 0.0 <= target < 1.0:
        raise InputError(f"target false-reject rate must be in [0, 1), got {target}")
    good = np.asarray(good_scores, dtype=np.float64)
    if good.ndim != 1 or good.size == 0:
        raise InputError("target_frr needs a non-empty 1-D array of good-part scores")
    if not np.isfinite(good).all():
        raise InputError("good scores contain NaN or infinity; check the model's outputs")
    allowed = math.floor(target * good.size + 1e-9)  # 0.29 * 100 is 28.999...
    ranked = np.sort(good)
    return float(np.nextafter(ranked[good.size - allowed - 1], np.inf))


def calibrate(
    policy: Policy, labels: npt.ArrayLike, scores: npt.ArrayLike, target: float | None
) -> float:
    """The raw threshold chosen by `policy`; `target` is the false-reject rate for target_frr,
    which looks at the good images alone."""
    if policy == "best_f1":
        return best_f1(labels, scores)
    if policy == "zero_escape":
        return zero_escape(labels, scores)
    if policy == "target_frr":
        if target is None:
            raise InputError("the target_frr policy needs a target false-reject rate, e.g. 0.01")
        y, s = as_labels_scores(labels, scores)
        if y.all():
            raise InputError("target_frr needs good images, but every image is defective")
        return target_frr(s[~y], target)
    raise InputError(f"unknown threshold policy {policy!r}; choose one of {', '.join(POLICIES)}")


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold a policy chose and what the calibration could not do as asked."""

    policy: Policy
    """The policy that set the threshold (target_frr when the asked one could not)."""
    target: float | None
    """The false-reject rate aimed at, for target_frr."""
    raw_threshold: float
    warnings: tuple[str, ...] = ()
    """Plain-word warnings, each with what to do; recorded in model.json and the report."""


def choose_threshold(
    policy: Policy, labels: npt.ArrayLike, scores: npt.ArrayLike, target: float | None
) -> ThresholdChoice:
    """Calibrate with `policy`, so that any recipe trains on good parts alone.

    With no defective images, a policy that needs them falls back to target_frr at `target`
    (1% when None) and says so. A target_frr the good images cannot resolve (fewer of them
    than 1/target: the cut then sits above every good score, whatever the target) is kept,
    with a warning that says how many good images it needs and what to expect meanwhile.
    """
    y, s = as_labels_scores(labels, scores)
    good = s[~y]
    if good.size == 0:
        raise InputError(
            "no good images to calibrate on; add good images or lower threshold.good_holdout "
            "/ validation_fraction"
        )
    warnings: list[str] = []
    if policy != "target_frr" and not y.any():
        target = DEFAULT_TARGET_FRR if target is None else target
        warnings.append(
            f"policy {policy} needs defective images to calibrate on and there are none, so "
            f"the threshold was set from the good parts alone (policy target_frr, aiming at "
            f"{_percent(target)} of good parts rejected). To use {policy}, add defective "
            "examples (test/<defect type>/) and train again."
        )
        policy = "target_frr"
    if policy == "target_frr":
        target = DEFAULT_TARGET_FRR if target is None else target
        warnings += _unresolved_target(int(good.size), target)
        return ThresholdChoice(policy, target, target_frr(good, target), tuple(warnings))
    return ThresholdChoice(policy, None, calibrate(policy, y, s, None), tuple(warnings))


def good_images_needed(target: float) -> int | None:
    """The fewest good images on which a false-reject rate of `target` can be set: 1/target
    (a cut that may reject one part in n); None for 0, which no number of images reaches."""
    if not 0.0 <= target < 1.0:
        raise InputError(f"target false-reject rate must be in [0, 1), got {target}")
    return math.ceil(1.0 / target - 1e-9) if target > 0 else None


def _unresolved_target(good_count: int, target: float) -> list[str]:
    """A warning when `good_count` good images cannot resolve `target` (none when they can).

    Fewer than 1/target good images allow no reject at all, so the cut goes just above the
    highest good score; a new good part then scores above the highest of n good parts with
    probability 1/(n + 1), and that, not the target, is the false-reject rate to expect.
    """
    needed = good_images_needed(target)
    if needed is not None and good_count >= needed:
        return []
    expected = 1.0 / (good_count + 1)
    meanwhile = (
        f"the threshold sits just above the highest of their scores, and about 1 new good "
        f"part in {good_count + 1} ({_percent(expected)}) will be rejected"
    )
    if needed is None:
        return [
            f"target_frr 0% cannot be met on any number of good images: with {good_count} "
            f"good calibration images {meanwhile}. Set threshold.target above 0 (e.g. 0.01, "
            "with at least 100 good calibration images)."
        ]
    enough = math.ceil(1000.0 / good_count) / 1000.0
    more = needed - good_count
    return [
        f"target_frr {_percent(target)} needs at least {needed} good calibration images and "
        f"there are {good_count}: {meanwhile}, not {_percent(target)}. Add at least "
        f"{more} good image{'' if more == 1 else 's'} to the calibration set (more good "
        f"images, or a larger threshold.good_holdout), or set threshold.target to {enough:g} "
        "or more."
    ]


def _percent(rate: float) -> str:
    return f"{rate:.2%}" if 0 < rate < 0.01 else f"{rate:.1%}"


def sigmoid_scale(raw_threshold: float, good_scores: npt.ArrayLike) -> float:
    """The scale s in sigmoid((raw - t) / s) that sends the median good score to 0.1.

    If the threshold is not above the median (a poor model), the spread of the good scores
    is used instead (1.0 if they are all equal). Always > 0.
    """
    good = np.asarray(good_scores, dtype=np.float64)
    if good.size == 0 or not np.isfinite(good).all():
        raise InputError("sigmoid_scale needs finite good-part scores")
    median = float(np.median(good))
    odds = (1.0 - _GOOD_MEDIAN_TARGET) / _GOOD_MEDIAN_TARGET
    if raw_threshold > median:
        scale = (raw_threshold - median) / math.log(odds)
        if scale > 0 and math.isfinite(scale):
            return scale
    spread = float(np.std(good))
    return spread if spread > 0 and math.isfinite(spread) else 1.0


def normalise(raw: npt.ArrayLike, raw_threshold: float, scale: float) -> FloatArray:
    """sigmoid((raw - raw_threshold) / scale), without overflow; raw_threshold maps to 0.5."""
    if not scale > 0:
        raise InputError(f"the normalisation scale must be > 0, got {scale}")
    with np.errstate(over="ignore"):  # a huge raw score becomes +-inf, which maps to 1 or 0
        z = (np.asarray(raw, dtype=np.float64) - raw_threshold) / scale
    # exp of a non-positive number only: exp(-|z|) never overflows
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


SCORE_QUANTILES = 21
"""Quantiles of the good validation scores kept in the model card: 0%, 5%, ..., 100%."""


def good_score_quantiles(normalised_good: npt.ArrayLike) -> list[float]:
    """The 0%, 5%, ..., 100% quantiles (linear interpolation) of the good calibration images'
    normalised scores, which production scores are compared with (the reports' score drift,
    `inference/reports/model_health.py`)."""
    good = np.asarray(normalised_good, dtype=np.float64)
    if good.size == 0 or not np.isfinite(good).all():
        raise InputError("good_score_quantiles needs finite good-part scores")
    levels = np.linspace(0.0, 1.0, SCORE_QUANTILES)
    return [round(float(q), 6) for q in np.quantile(good, levels)]
