"""Image-level figures of a model's verdicts: the ROC curve and its area, and the confusion
table with the plant's rates (escape, false reject, F1) at a threshold.

Pure numpy, shared by training's evaluation (`defectlens.train.metrics`) and the service's
comparison of a candidate with production (`defectlens.inference.service.compare`), which
must not import `train`. Scores: higher = more anomalous; labels: 1 = defective.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from defectlens.errors import InputError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def as_labels_scores(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[BoolArray, FloatArray]:
    """Check and convert image labels (0 good, 1 defective) and scores to arrays."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise InputError(
            f"labels and scores must be 1-D and of the same length; got shapes {y.shape} "
            f"and {s.shape}"
        )
    if y.size == 0:
        raise InputError("no images to evaluate: labels and scores are empty")
    if not np.isin(y, (0, 1)).all():
        raise InputError("labels must be 0 (good) or 1 (defective)")
    if not np.isfinite(s).all():
        raise InputError("scores contain NaN or infinity; check the model's outputs")
    return y.astype(bool), s


def require_both_classes(y: BoolArray, what: str) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        present = "defective" if positives else "good"
        raise InputError(
            f"{what} needs both good and defective images; only {present} ones were given"
        )


def counts_by_threshold(
    labels: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each distinct score t, in decreasing order: t, and the true and false positives
    when `score >= t` is NG."""
    y, s = as_labels_scores(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_desc, y_desc = s[order], y[order]
    # the last index of each run of equal scores: ties move together
    ends = np.r_[np.flatnonzero(np.diff(s_desc)), s_desc.size - 1]
    tp = np.cumsum(y_desc)[ends].astype(np.int64)
    fp = (ends + 1 - tp).astype(np.int64)
    return s_desc[ends], tp, fp


def roc_curve(
    labels: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The ROC curve: (fpr, tpr, thresholds), starting at (0, 0) with threshold +inf."""
    y, s = as_labels_scores(labels, scores)
    require_both_classes(y, "a ROC curve")
    thresholds, tp, fp = counts_by_threshold(y, s)
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auroc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve; tied scores count one half (as sklearn's roc_auc_score)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def confusion_at(
    labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float
) -> dict[str, int | float | None]:
    """The confusion table and plant rates when `score >= threshold` is NG.

    `escape_rate`: defective parts passed as good; `false_reject_rate`: good parts rejected.
    A rate whose denominator is zero is None. Precision and F1 measure how defects are
    caught: without defective parts they are None too, not the 0 their formulas give once a
    good part is rejected (which would read as a model that catches nothing).
    """
    y, s = as_labels_scores(labels, scores)
    if math.isnan(threshold):
        raise InputError("threshold is NaN")
    ng = s >= threshold
    tp = int(np.count_nonzero(ng & y))
    fp = int(np.count_nonzero(ng & ~y))
    fn = int(np.count_nonzero(~ng & y))
    tn = int(np.count_nonzero(~ng & ~y))
    defective = tp + fn
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "escape_rate": _ratio(fn, tp + fn),
        "false_reject_rate": _ratio(fp, fp + tn),
        "precision": _ratio(tp, tp + fp) if defective else None,
        "recall": _ratio(tp, defective),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn) if defective else None,
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
