"""Model health per model version: how production scores compare with the scores of the
good validation images the threshold was calibrated on (drift), the share of parts near the
threshold, and how often QA labels disagree with the verdict.

Pure functions over the rollup sums of `queries.by_model` and `queries.score_bins`; the
validation quantiles come from the model card (`metrics.good_score_quantiles`, written by
training; older cards have none, and their drift is unknown).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from defectlens.inference.reports.figures import rate

BINS_PER_UNIT = 20
BINS = 20
"""Score bins of the rollup (migration 0006): bin i holds scores in [i, i + 1) / 20, the
first also everything below 0, the last everything from 0.95 up."""
SMOOTHING = 1e-4
"""The share given to an empty bin, so the stability index stays finite."""


@dataclass(frozen=True)
class ModelCounts:
    """One model version's parts in a report's scope (sums of `report_counts`)."""

    model_name: str
    model_version: str
    parts: int
    ng: int
    near_threshold: int
    labelled: int
    """Standing QA labels on its parts."""
    overridden: int
    """Those that disagree with the verdict."""


@dataclass(frozen=True)
class ModelHealth:
    model_name: str
    model_version: str
    parts: int
    ng_rate: float | None
    near_threshold_share: float | None
    override_rate: float | None
    """Of the labelled parts, the share whose label disagrees with the verdict."""
    drift: float | None
    """Population stability index of production scores against validation good scores;
    None without validation quantiles or parts."""
    alert: bool
    """drift > the alert level."""


def validation_shares(quantiles: Sequence[float], bins: int = BINS) -> list[float]:
    """The share of validation scores in each score bin, from their quantiles at equal
    steps (0%, 5%, ..., 100% for 21): the distribution function is taken as linear between
    quantiles. Scores below 0 fall in the first bin, above the last edge in the last."""
    if len(quantiles) < 2 or any(b < a for a, b in itertools.pairwise(quantiles)):
        raise ValueError("quantiles: at least two, in increasing order")
    steps = len(quantiles) - 1

    def cdf(x: float) -> float:
        if x <= quantiles[0]:
            return 0.0
        if x >= quantiles[-1]:
            return 1.0
        for i in range(steps):
            lo, hi = quantiles[i], quantiles[i + 1]
            if lo <= x < hi:
                return (i + (x - lo) / (hi - lo)) / steps
        return 1.0  # pragma: no cover - x is within the quantiles' range

    edges = [cdf(i / BINS_PER_UNIT) for i in range(1, bins)]
    cumulative = [0.0, *edges, 1.0]
    return [b - a for a, b in itertools.pairwise(cumulative)]


def stability_index(expected: Sequence[float], counts: Sequence[int]) -> float | None:
    """The population stability index, sum over bins of (a - e) ln(a / e), of the observed
    `counts` (shares a) against the `expected` shares e; empty bins count as SMOOTHING.
    Below 0.1 is usually read as no shift, above 0.25 as a large one. None without counts."""
    total = sum(counts)
    if not total:
        return None
    index = 0.0
    for e, count in zip(expected, counts, strict=True):
        a = max(count / total, SMOOTHING)
        e = max(e, SMOOTHING)
        index += (a - e) * math.log(a / e)
    return index


def model_health(
    counts: ModelCounts,
    score_counts: Sequence[int],
    quantiles: Sequence[float] | None,
    alert_level: float,
) -> ModelHealth:
    """The health figures of one model version."""
    drift = (
        stability_index(validation_shares(quantiles), score_counts)
        if quantiles and score_counts
        else None
    )
    return ModelHealth(
        counts.model_name,
        counts.model_version,
        counts.parts,
        rate(counts.ng, counts.parts),
        rate(counts.near_threshold, counts.parts),
        rate(counts.overridden, counts.labelled),
        drift,
        drift is not None and drift > alert_level,
    )
