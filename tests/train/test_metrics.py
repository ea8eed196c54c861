"""Image and pixel metrics against hand-worked answers and scikit-learn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from defectlens.datasets.layout import Sample
from defectlens.errors import InputError
from defectlens.train.evaluate import Scored, compute_metrics
from defectlens.train.metrics import (
    aupro,
    auroc,
    auroc_ci,
    confusion_at,
    pixel_auroc,
    pixel_group_auroc,
    roc_curve,
)


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        # one of four good-defective pairs is ordered wrong (0.4 > 0.35)
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        ([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], 1.0),
        ([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1], 0.0),
        # every pair tied: each counts one half
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
        # pairs (good 0.2, bad 0.2) tie, the other three are right: (3 + 0.5) / 4
        ([0, 0, 1, 1], [0.1, 0.2, 0.2, 0.9], 0.875),
        ([False, True], [3.0, 7.0], 1.0),
    ],
)
def test_auroc_hand_computed(labels: list[int], scores: list[float], expected: float) -> None:
    assert auroc(labels, scores) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_roc_curve_match_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    labels[:2] = [0, 1]
    scores = np.round(rng.random(300) + 0.4 * labels, 1)  # coarse: many ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert thresholds[0] == np.inf
    assert np.all(np.diff(thresholds) < 0)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "only good"),
        ([1, 1], [0.1, 0.2], "only defective"),
        ([0, 1], [0.1], "same length"),
        ([0, 2], [0.1, 0.2], "0 \\(good\\) or 1"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([], [], "empty"),
    ],
)
def test_auroc_rejects_unusable_input(labels: list[int], scores: list[float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        auroc(labels, scores)


def test_auroc_ci_brackets_the_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(120, int), np.ones(40, int)]
    scores = rng.normal(size=160) + 1.2 * labels
    lo, hi = auroc_ci(labels, scores, n_boot=500, seed=7)
    assert 0.0 <= lo < auroc(labels, scores) < hi <= 1.0
    assert (lo, hi) == auroc_ci(labels, scores, n_boot=500, seed=7)
    narrow = auroc_ci(labels, scores, n_boot=500, seed=7, level=0.5)
    assert lo < narrow[0] < narrow[1] < hi


def test_auroc_ci_of_separable_data_is_a_point() -> None:
    assert auroc_ci([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.9], n_boot=200) == (1.0, 1.0)


@pytest.mark.parametrize(("n_boot", "level"), [(0, 0.95), (100, 1.0), (100, 0.0)])
def test_auroc_ci_rejects_bad_options(n_boot: int, level: float) -> None:
    with pytest.raises(InputError):
        auroc_ci([0, 1], [0.1, 0.9], n_boot=n_boot, level=level)


def test_confusion_worked_by_hand() -> None:
    # scores >= 0.5 are NG: good 0.6 is a false reject, defective 0.4 an escape
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.9]
    table = confusion_at(labels, scores, 0.5)
    assert table == {
        "tp": 2,
        "fp": 1,
        "tn": 3,
        "fn": 1,
        "escape_rate": pytest.approx(1 / 3),
        "false_reject_rate": pytest.approx(1 / 4),
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(2 / 3),
        "accuracy": pytest.approx(5 / 7),
    }


FIGURES = ("escape_rate", "false_reject_rate", "precision", "recall", "f1", "accuracy")


# worked by hand at threshold 0.5: a figure these parts cannot give is None, never a 0 that
# reads as a model catching nothing
@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        # good parts only, none rejected
        ([0, 0], [0.1, 0.2], (None, 0.0, None, None, None, 1.0)),
        # good parts only, one rejected: the formulas would give precision 0 and F1 0
        ([0, 0, 0], [0.1, 0.6, 0.2], (None, 1 / 3, None, None, None, 2 / 3)),
        # defective parts only, one of two caught
        ([1, 1], [0.7, 0.3], (0.5, None, 1.0, 0.5, 2 / 3, 0.5)),
        # a defective part missed, nothing rejected: no rejects to judge, F1 a true 0
        ([0, 1], [0.1, 0.2], (1.0, 0.0, None, 0.0, 0.0, 0.5)),
        # a defective part missed, a good one rejected: precision and F1 a true 0
        ([0, 1], [0.9, 0.2], (1.0, 1.0, 0.0, 0.0, 0.0, 0.0)),
    ],
)
def test_confusion_figures_without_the_parts_they_need_are_none(
    labels: list[int], scores: list[float], expected: tuple[float | None, ...]
) -> None:
    table = confusion_at(labels, scores, 0.5)
    assert tuple(table[key] for key in FIGURES) == tuple(
        value if value is None else pytest.approx(value) for value in expected
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_auroc_matches_exact_auroc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = rng.random((12, 48, 40)) < 0.07
    maps = (rng.random(masks.shape) + 0.35 * masks).astype(np.float32)
    maps[0, :4] = 0.0  # a run of ties
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-3)


def test_pixel_auroc_needs_both_kinds_of_pixel() -> None:
    with pytest.raises(InputError, match="only good"):
        pixel_auroc(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4)))
    with pytest.raises(InputError, match="same shape"):
        pixel_auroc(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 5)))


def _regions() -> np.ndarray:
    masks = np.zeros((6, 32, 32), bool)
    masks[0, 2:6, 2:6] = True  # two regions in one image ...
    masks[0, 20:30, 18:22] = True
    masks[1, 10:12, 5:25] = True
    masks[2, 0:3, 0:3] = True  # ... images 3-5 are good
    return masks


def test_aupro_of_a_perfect_map_is_one() -> None:
    masks = _regions()
    maps = np.where(masks, 0.9, 0.1) + np.random.default_rng(0).random(masks.shape) * 0.05
    assert aupro(masks, maps) == pytest.approx(1.0)


def test_aupro_of_an_inverted_map_is_zero() -> None:
    masks = _regions()
    maps = np.where(masks, 0.1, 0.9) + np.random.default_rng(0).random(masks.shape) * 0.05
    assert aupro(masks, maps) == pytest.approx(0.0, abs=1e-9)


def test_aupro_averages_regions_not_pixels() -> None:
    # A large region found and a small one missed: PRO is 1/2 wherever the FPR is below the
    # limit, whatever their sizes (per-pixel it would be about 0.96).
    masks = np.zeros((2, 40, 40), bool)
    masks[0, 0:20, 0:20] = True
    masks[1, 30:34, 30:34] = True
    maps = np.random.default_rng(1).random(masks.shape) * 0.5  # good pixels in [0, 0.5)
    maps[0][masks[0]] = 0.99
    maps[1][masks[1]] = -1.0
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(0.5, abs=1e-3)


def test_aupro_rejects_masks_without_defects() -> None:
    with pytest.raises(InputError, match="every mask is empty"):
        aupro(np.zeros((2, 8, 8), bool), np.zeros((2, 8, 8)))


def test_aupro_matches_a_reference_that_tries_every_score() -> None:
    rng = np.random.default_rng(5)
    masks = np.zeros((8, 40, 40), bool)
    for image in range(5):
        for _ in range(2):
            y, x = rng.integers(0, 32, 2)
            masks[image, y : y + rng.integers(2, 8), x : x + rng.integers(2, 8)] = True
    maps = rng.random(masks.shape) + 0.6 * masks
    assert aupro(masks, maps) == pytest.approx(_reference_aupro(masks, maps, 0.3), abs=1e-3)


def _reference_aupro(masks: np.ndarray, maps: np.ndarray, limit: float) -> float:
    """The MVTec AD definition, slowly: FPR and PRO at every distinct score."""
    regions = []
    for mask, amap in zip(masks, maps, strict=True):
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        regions += [np.sort(amap[labels == region]) for region in range(1, count)]
    good = np.sort(maps[~masks])
    cuts = np.unique(maps)[::-1]
    fpr = 1.0 - np.searchsorted(good, cuts, "left") / good.size
    pro = np.mean([1.0 - np.searchsorted(r, cuts, "left") / r.size for r in regions], axis=0)
    keep = fpr <= limit
    x, y = np.r_[0.0, fpr[keep], limit], np.r_[0.0, pro[keep], np.interp(limit, fpr, pro)]
    return float(np.trapezoid(y, x) / limit)


def test_pixel_auroc_by_defect_type_shows_which_type_drags_the_pooled_figure() -> None:
    # A type with large masks the map misses (half its pixels score low) and a type with
    # small masks the map finds: the pooled figure follows the large type, and the figures
    # by type say so.
    rng = np.random.default_rng(0)

    def scored(defect_type: str, index: int, mask: np.ndarray, hot: np.ndarray) -> Scored:
        anomaly_map = rng.random((16, 16)) * 0.5 + hot
        sample = Sample(Path(f"{defect_type}{index}.png"), defect_type)
        return Scored(sample, float(anomaly_map.max()), anomaly_map, anomaly_map, mask)

    empty = np.zeros((16, 16), bool)
    spot, side = empty.copy(), empty.copy()
    spot[4:6, 4:6] = True
    side[8:, :] = True
    half = np.where(np.arange(16)[:, None] >= 12, 1.0, 0.0) * np.ones((1, 16))
    samples = (
        [scored("good", i, empty, 0.0) for i in range(6)]
        + [scored("spot", i, spot, spot * 1.0) for i in range(3)]
        + [scored("uneven", i, side, half) for i in range(3)]
    )
    metrics = compute_metrics(samples, threshold=1.0)
    spot_figures, uneven_figures = metrics["per_type"]["spot"], metrics["per_type"]["uneven"]
    assert spot_figures["pixel_auroc"] == pytest.approx(1.0)
    assert 0.6 < uneven_figures["pixel_auroc"] < 0.9
    shares = spot_figures["defect_pixel_share"] + uneven_figures["defect_pixel_share"]
    assert shares == pytest.approx(1.0)
    assert uneven_figures["defect_pixel_share"] == pytest.approx(3 * 128 / (3 * 128 + 3 * 4))
    assert metrics["pixel_auroc"] < 0.9
    assert "pixel_auroc" not in metrics["per_type"]["good"]


def test_pooled_pixel_auroc_taken_apart_against_good_images() -> None:
    # Defects found perfectly, but whole defective images score high, so their normal areas
    # outrank defect pixels of other images: the pooled figure drops while the defect
    # pixels against good images stay perfect, and the normal-area figure says why.
    rng = np.random.default_rng(2)
    empty = np.zeros((16, 16), bool)
    spot = empty.copy()
    spot[6:10, 6:10] = True

    def scored(defect_type: str, index: int, mask: np.ndarray, level: float) -> Scored:
        anomaly_map = rng.random((16, 16)) * 0.5 + level + mask * 0.6
        sample = Sample(Path(f"{defect_type}{index}.png"), defect_type)
        return Scored(sample, float(anomaly_map.max()), anomaly_map, anomaly_map, mask)

    good = [scored("good", i, empty, 0.0) for i in range(4)]
    shifted = [scored("spot", i, spot, 0.3 * i) for i in range(4)]
    metrics = compute_metrics(good + shifted, threshold=1.0)
    assert metrics["pixel_auroc_vs_good_images"] == pytest.approx(1.0)
    assert metrics["normal_area_vs_good_images_auroc"] > 0.8
    assert metrics["pixel_auroc_vs_normal_areas"] < 0.9
    assert metrics["pixel_auroc"] < 0.95
    alike = compute_metrics(
        [scored("good", i, empty, 0.0) for i in range(4)]
        + [scored("spot", i, spot, 0.0) for i in range(4)],
        threshold=1.0,
    )
    assert alike["normal_area_vs_good_images_auroc"] == pytest.approx(0.5, abs=0.05)
    assert alike["pixel_auroc_vs_normal_areas"] == pytest.approx(1.0)
    assert alike["pixel_auroc"] == pytest.approx(1.0)


def test_pixel_group_auroc_compares_chosen_pixels_and_needs_both_sides() -> None:
    maps = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    high, low = np.zeros_like(maps, bool), np.zeros_like(maps, bool)
    high[1] = True
    low[0, :2] = True
    assert pixel_group_auroc(maps, high, low) == pytest.approx(1.0)
    assert pixel_group_auroc(maps, low, high) == pytest.approx(0.0)
    with pytest.raises(InputError, match="pixels on both sides"):
        pixel_group_auroc(maps, high, np.zeros_like(high))


@pytest.mark.parametrize("positive_share", [0.1, 0.9])
def test_pixel_group_auroc_matches_the_image_auroc_on_tied_scores(positive_share: float) -> None:
    # Either side may be the larger one (the lookup goes from the smaller); ties count half.
    rng = np.random.default_rng(3)
    maps = rng.integers(0, 5, (6, 8, 8)).astype(np.float32)
    positive = rng.random(maps.shape) < positive_share
    expected = auroc(positive.ravel(), maps.ravel())
    assert pixel_group_auroc(maps, positive, ~positive) == pytest.approx(expected)
