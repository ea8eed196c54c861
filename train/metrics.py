"""Evaluation metrics for anomaly models: image and pixel AUROC, AUPRO, the confusion table
(the image-level ones live in `defectlens.verdict_metrics`, which serving shares).

Pure numpy (OpenCV for defect regions). Scores: higher = more anomalous; labels: 1 = defective.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from defectlens.errors import InputError
from defectlens.verdict_metrics import (
    BoolArray,
    FloatArray,
    as_labels_scores,
    auroc,
    confusion_at,
    counts_by_threshold,
    require_both_classes,
    roc_curve,
)

__all__ = [
    "BoolArray",
    "FloatArray",
    "as_labels_scores",
    "aupro",
    "auroc",
    "auroc_ci",
    "confusion_at",
    "counts_by_threshold",
    "pixel_auroc",
    "pixel_group_auroc",
    "roc_curve",
]


_IMAGES_PER_CHUNK = 32
"""Pixel metrics walk the images in chunks so that no float64 copy of all pixels is made."""


def _auc_from_bins(pos: npt.NDArray[np.int64], neg: npt.NDArray[np.int64]) -> FloatArray:
    """AUROC from counts of positives and negatives per score bin (bins in increasing score
    order along the last axis; pairs in one bin count as ties)."""
    neg_below = np.cumsum(neg, axis=-1) - neg
    n_pos = pos.sum(axis=-1)
    n_neg = neg.sum(axis=-1)
    pairs = (pos * (neg_below + 0.5 * neg)).sum(axis=-1)
    return np.asarray(pairs / (n_pos * n_neg), dtype=np.float64)


def auroc_ci(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile confidence interval of the AUROC by a stratified bootstrap: good and
    defective images are resampled separately, so every replicate has both classes."""
    y, s = as_labels_scores(labels, scores)
    require_both_classes(y, "an AUROC confidence interval")
    if n_boot < 1:
        raise InputError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
    # Rank the distinct scores once; a replicate is then just counts per distinct score.
    distinct, group = np.unique(s, return_inverse=True)
    pos_group, neg_group = group[y], group[~y]
    n_groups = distinct.size
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, 4_000_000 // (y.size + n_groups))
    aucs = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - start)
        offsets = (np.arange(rows) * n_groups)[:, None]
        picks_pos = pos_group[rng.integers(0, pos_group.size, (rows, pos_group.size))]
        picks_neg = neg_group[rng.integers(0, neg_group.size, (rows, neg_group.size))]
        size = rows * n_groups
        pos = np.bincount((picks_pos + offsets).ravel(), minlength=size).reshape(rows, -1)
        neg = np.bincount((picks_neg + offsets).ravel(), minlength=size).reshape(rows, -1)
        aucs[start : start + rows] = _auc_from_bins(pos, neg)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(aucs, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _check_pixels(masks: npt.ArrayLike, maps: npt.ArrayLike) -> tuple[BoolArray, np.ndarray]:
    m = np.asarray(masks)
    a = np.asarray(maps)
    if m.ndim != 3 or m.shape != a.shape:
        raise InputError(
            f"masks and anomaly maps must both be [N, H, W] of the same shape; got {m.shape} "
            f"and {a.shape}"
        )
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise InputError("masks must be boolean (or 0/1): True where the part is defective")
        m = m.astype(bool)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return m, a


def _check_finite(chunk: np.ndarray) -> None:
    if not np.isfinite(chunk).all():
        raise InputError("anomaly maps contain NaN or infinity; check the model's outputs")


def pixel_auroc(masks: npt.ArrayLike, maps: npt.ArrayLike) -> float:
    """AUROC over all pixels of all images: defect pixels (mask True) against good ones.

    Exact up to float32 rounding: the pixels of each class are copied once as float32 and
    sorted, so 500 maps of 256x256 need about 130 MB and two seconds.
    """
    m, a = _check_pixels(masks, maps)
    n_pos = int(np.count_nonzero(m))
    if n_pos == 0 or n_pos == m.size:
        present = "defect" if n_pos else "good"
        raise InputError(
            f"pixel AUROC needs both defect and good pixels; the masks hold only {present} ones"
        )
    return pixel_group_auroc(a, m, ~m)


def pixel_group_auroc(
    maps: npt.ArrayLike, positive: npt.ArrayLike, negative: npt.ArrayLike
) -> float:
    """AUROC of the map pixels that `positive` selects against those `negative` selects
    (both boolean, the maps' [N, H, W] shape); pixels in neither are left out. With the
    masks and their complement this is `pixel_auroc`; other choices compare groups of
    pixels, e.g. defect pixels against the pixels of good images only."""
    pos_sel, a = _check_pixels(positive, maps)
    neg_sel, _ = _check_pixels(negative, maps)
    n_pos, n_neg = int(np.count_nonzero(pos_sel)), int(np.count_nonzero(neg_sel))
    if n_pos == 0 or n_neg == 0:
        raise InputError(
            f"a pixel AUROC needs pixels on both sides; got {n_pos} positive and {n_neg} "
            "negative ones"
        )
    pos = np.empty(n_pos, dtype=np.float32)
    neg = np.empty(n_neg, dtype=np.float32)
    at_pos = at_neg = 0
    for start in range(0, a.shape[0], _IMAGES_PER_CHUNK):
        chunk = a[start : start + _IMAGES_PER_CHUNK]
        _check_finite(chunk)
        p = chunk[pos_sel[start : start + _IMAGES_PER_CHUNK]]
        q = chunk[neg_sel[start : start + _IMAGES_PER_CHUNK]]
        pos[at_pos : at_pos + p.size] = p
        neg[at_neg : at_neg + q.size] = q
        at_pos += p.size
        at_neg += q.size
    return _auroc_of_samples(pos, neg)


_SEARCH_CHUNK = 1 << 22
"""Pixels looked up at once when ranking one side among the other (32 MB of positions)."""


def _auroc_of_samples(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive > a negative), ties counting one half; sorts both arrays in place.

    Looks up the smaller side in the larger one, a chunk at a time, so memory stays near
    the two arrays themselves."""
    if pos.size > neg.size:
        return 1.0 - _auroc_of_samples(neg, pos)
    pos.sort()
    neg.sort()
    wins = 0.0
    for start in range(0, pos.size, _SEARCH_CHUNK):
        part = pos[start : start + _SEARCH_CHUNK]
        # each positive wins over the negatives below it and ties half with the equal ones
        wins += float(np.searchsorted(neg, part, side="left").sum(dtype=np.float64))
        wins += float(np.searchsorted(neg, part, side="right").sum(dtype=np.float64))
    return wins / (2.0 * pos.size * neg.size)


def aupro(
    masks: npt.ArrayLike,
    maps: npt.ArrayLike,
    fpr_limit: float = 0.3,
    num_thresholds: int = 1000,
    seed: int = 0,
) -> float:
    """Area under the per-region-overlap curve up to `fpr_limit`, divided by `fpr_limit`
    (the MVTec AD definition).

    Regions are the 8-connected components of each mask; a threshold's PRO is the mean over
    all regions of the share of the region at or above it, its FPR the share of good pixels
    (outside the masks, of every image) at or above it. Thresholds are spread evenly in FPR
    (quantiles of a sample of good pixels); FPR and PRO are then counted exactly at each by
    one histogram pass over the images.
    """
    m, a = _check_pixels(masks, maps)
    if not 0.0 < fpr_limit <= 1.0:
        raise InputError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if num_thresholds < 2:
        raise InputError(f"num_thresholds must be at least 2, got {num_thresholds}")
    thresholds = _pro_thresholds(m, a, fpr_limit, num_thresholds, seed)
    n_bins = thresholds.size + 1
    good = np.zeros(n_bins, dtype=np.float64)
    region_share = np.zeros(n_bins, dtype=np.float64)
    n_regions = 0
    for mask, amap in zip(m, a, strict=True):
        _check_finite(amap)
        # bin b = how many thresholds the pixel reaches; it is >= thresholds[k] iff k < b
        bins = np.searchsorted(thresholds, amap, side="right")
        good += np.bincount(bins[~mask], minlength=n_bins)
        if not mask.any():
            continue
        count, regions = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        sizes = np.bincount(regions.ravel(), minlength=count).astype(np.float64)
        inside = regions[mask]
        # weighting each pixel by 1/size sums per-region overlaps in a single histogram
        region_share += np.bincount(bins[mask], weights=1.0 / sizes[inside], minlength=n_bins)
        n_regions += count - 1
    if n_regions == 0:
        raise InputError("AUPRO needs defect regions, but every mask is empty")
    n_good = good.sum()
    if n_good == 0:
        raise InputError("AUPRO needs good pixels, but the masks cover every pixel")
    # at or above thresholds[k] = bins k+1 and up; reversed, thresholds fall and FPR rises
    fpr = np.cumsum(good[::-1])[:-1] / n_good
    pro = np.cumsum(region_share[::-1])[:-1] / n_regions
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def _pro_thresholds(
    m: BoolArray, a: np.ndarray, fpr_limit: float, num_thresholds: int, seed: int
) -> np.ndarray:
    """Increasing thresholds whose FPRs are about evenly spaced over [0, fpr_limit], plus one
    just above the highest good pixel (FPR 0) and -inf (FPR 1) so the curve spans the limit."""
    flat_maps = a.reshape(-1)
    flat_masks = m.reshape(-1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, flat_maps.size, min(flat_maps.size, 1_000_000))
    sample = flat_maps[picks][~flat_masks[picks]]
    if sample.size < num_thresholds:
        sample = flat_maps[~flat_masks]
    if sample.size == 0:
        raise InputError("AUPRO needs good pixels, but the masks cover every pixel")
    top_good = max(float(amap[~mask].max(initial=-np.inf)) for mask, amap in zip(m, a, strict=True))
    fprs = np.linspace(0.0, min(1.0, fpr_limit * 1.05), num_thresholds)
    cuts = np.quantile(sample.astype(np.float64), 1.0 - fprs)
    extra = [np.nextafter(np.asarray(top_good, dtype=a.dtype), np.inf), -np.inf]
    return np.unique(np.r_[cuts.astype(a.dtype), np.asarray(extra, dtype=a.dtype)])


def _area_up_to(x: FloatArray, y: FloatArray, limit: float) -> float:
    """Trapezoidal area under y(x) from x[0] to `limit`, interpolating y at the limit."""
    inside = x <= limit
    xs, ys = x[inside], y[inside]
    if xs[-1] < limit:
        after = int(np.argmax(x > limit))
        x0, x1, y0, y1 = x[after - 1], x[after], y[after - 1], y[after]
        xs = np.r_[xs, limit]
        ys = np.r_[ys, y0 + (y1 - y0) * (limit - x0) / (x1 - x0)]
    return float(np.trapezoid(ys, xs))
