"""Threshold policies and the sigmoid normalisation, on hand-made score sets."""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import pytest

from defectlens.errors import InputError
from defectlens.train.thresholds import (
    Policy,
    best_f1,
    calibrate,
    choose_threshold,
    good_images_needed,
    good_score_quantiles,
    normalise,
    sigmoid_scale,
    target_frr,
    zero_escape,
)

# F1 at each cut (score >= cut is NG), worked by hand:
#   0.9: 1/2   0.8: 4/5   0.4: 4/6   0.35: 6/7 (best)   0.3: 6/8   0.1: 6/9
LABELS = [0, 0, 1, 0, 1, 1]
SCORES = [0.1, 0.3, 0.35, 0.4, 0.8, 0.9]


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        (LABELS, SCORES, (0.35 + 0.3) / 2),  # midway to the next lower score
        ([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.8], (0.7 + 0.2) / 2),
        # F1 2/3 at both 0.9 and 0.5: the lower cut (fewer escapes) wins
        ([1, 0, 1, 0], [0.9, 0.7, 0.5, 0.2], (0.5 + 0.2) / 2),
        # the best cut is the lowest score (F1 4/5): nothing lower to go halfway to
        ([0, 1, 1], [0.5, 0.2, 0.9], 0.2),
    ],
)
def test_best_f1(labels: list[int], scores: list[float], expected: float) -> None:
    assert best_f1(labels, scores) == pytest.approx(expected)


def test_best_f1_needs_defective_parts_and_says_what_to_use() -> None:
    with pytest.raises(InputError, match="use the target_frr policy"):
        best_f1([0, 0, 0], [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        (LABELS, SCORES, 0.35),
        ([1, 0], [0.2, 0.9], 0.2),  # catching every defect rejects the good part too
    ],
)
def test_zero_escape_is_the_lowest_defective_score(
    labels: list[int], scores: list[float], expected: float
) -> None:
    threshold = zero_escape(labels, scores)
    assert threshold == expected
    assert all(s >= threshold for s, y in zip(scores, labels, strict=True) if y)


def test_zero_escape_needs_a_defective_part() -> None:
    with pytest.raises(InputError, match="at least one defective"):
        zero_escape([0, 0], [0.1, 0.2])


GOOD = [0.11, 0.25, 0.05, 0.31, 0.42, 0.18, 0.27, 0.36, 0.09, 0.50]


@pytest.mark.parametrize(
    ("target", "above", "rejected"),
    [
        (0.1, 0.42, 1),  # one of ten may be rejected: just above the 9th lowest (0.42)
        (0.0, 0.50, 0),  # none: just above the highest
        (0.25, 0.36, 2),  # floor(2.5) = 2
        (0.3, 0.31, 3),
    ],
)
def test_target_frr(target: float, above: float, rejected: int) -> None:
    threshold = target_frr(GOOD, target)
    assert threshold == np.nextafter(above, np.inf)
    assert sum(s >= threshold for s in GOOD) == rejected


@pytest.mark.parametrize("target", [-0.1, 1.0, 1.5])
def test_target_frr_rejects_targets_outside_0_1(target: float) -> None:
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        target_frr(GOOD, target)


@pytest.mark.parametrize(
    ("policy", "target", "expected"),
    [
        ("best_f1", None, 0.325),
        ("zero_escape", None, 0.35),
        # only the good scores count: 0.1, 0.3, 0.4; a third may be rejected
        ("target_frr", 0.34, float(np.nextafter(0.3, np.inf))),
    ],
)
def test_calibrate_dispatches(policy: Policy, target: float | None, expected: float) -> None:
    assert calibrate(policy, LABELS, SCORES, target) == pytest.approx(expected)


def test_calibrate_rejects_unknown_policy_and_missing_target() -> None:
    with pytest.raises(InputError, match="unknown threshold policy"):
        calibrate(cast(Policy, "best_guess"), LABELS, SCORES, None)
    with pytest.raises(InputError, match="needs a target"):
        calibrate("target_frr", LABELS, SCORES, None)


def test_sigmoid_maps_threshold_to_half_and_median_good_to_a_tenth() -> None:
    good = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # median 3
    scale = sigmoid_scale(7.0, good)
    assert scale == pytest.approx(4.0 / math.log(9.0))
    assert normalise(7.0, 7.0, scale) == 0.5
    assert normalise(3.0, 7.0, scale) == pytest.approx(0.1)
    assert normalise(11.0, 7.0, scale) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("threshold", "good", "expected"),
    [
        (2.0, [1.0, 3.0, 5.0], float(np.std([1.0, 3.0, 5.0]))),  # threshold below the median
        (2.0, [4.0, 4.0, 4.0], 1.0),  # and no spread either
    ],
)
def test_sigmoid_scale_fallbacks(threshold: float, good: list[float], expected: float) -> None:
    assert sigmoid_scale(threshold, good) == pytest.approx(expected)


def test_normalise_is_stable_and_monotonic() -> None:
    raw = np.array([-1e308, -1e4, -1.0, 0.0, 1.0, 1e4, 1e308])
    with np.errstate(over="raise"):
        out = normalise(raw, 0.0, 1e-3)
    assert out[0] == 0.0 and out[-1] == 1.0
    assert np.all(np.diff(out) >= 0)
    with pytest.raises(InputError):
        normalise(raw, 0.0, 0.0)


def above(score: float) -> float:
    return float(np.nextafter(score, np.inf))


FALLBACK = "needs defective images to calibrate on and there are none"


@pytest.mark.parametrize(
    ("policy", "labels", "scores", "target", "expected", "warned"),
    [
        # both kinds of images: the policy as asked, no warning
        ("best_f1", LABELS, SCORES, None, ("best_f1", None, 0.325), []),
        ("zero_escape", LABELS, SCORES, 0.05, ("zero_escape", None, 0.35), []),
        # good images only: target_frr at the recipe's target; 10 good resolve 0.1 (1 in 10)
        (
            "best_f1",
            [0] * 10,
            GOOD,
            0.1,
            ("target_frr", 0.1, above(0.42)),
            [
                [
                    f"policy best_f1 {FALLBACK}",
                    "policy target_frr, aiming at 10.0% of good parts rejected",
                ]
            ],
        ),
        # ...at 1% when the recipe gives none, which 10 good images cannot resolve: no reject
        # is allowed, the cut goes above the highest (0.50), a new part beats the highest of
        # 10 with probability 1/11 = 9.1%; 100 needed, 90 more; 1/10 resolves
        (
            "zero_escape",
            [0] * 10,
            GOOD,
            None,
            ("target_frr", 0.01, above(0.50)),
            [
                [f"policy zero_escape {FALLBACK}", "aiming at 1.0% of good parts rejected"],
                [
                    "target_frr 1.0% needs at least 100 good calibration images and there are 10",
                    "about 1 new good part in 11 (9.1%) will be rejected, not 1.0%",
                    "Add at least 90 good images",
                    "set threshold.target to 0.1 or more",
                ],
            ],
        ),
        # the case: 1% on 15 good images; 1/16 = 6.2%; 85 more; 1/15 -> 0.067
        (
            "target_frr",
            [0] * 15,
            list(range(15)),
            0.01,
            ("target_frr", 0.01, above(14.0)),
            [
                [
                    "needs at least 100 good calibration images and there are 15",
                    "1 new good part in 16 (6.2%)",
                    "Add at least 85 good images",
                    "threshold.target to 0.067 or more",
                ]
            ],
        ),
        # good scores 0.1, 0.3, 0.4: 0.34 allows floor(1.02) = 1 reject, 3 >= 1/0.34 images
        ("target_frr", LABELS, SCORES, 0.34, ("target_frr", 0.34, above(0.3)), []),
        # 0.25 needs 4 good images (1/0.25); 3 allow none: above 0.4; 1/3 -> 0.334
        (
            "target_frr",
            LABELS,
            SCORES,
            0.25,
            ("target_frr", 0.25, above(0.4)),
            [
                [
                    "needs at least 4 good calibration images and there are 3",
                    "1 new good part in 4 (25.0%)",
                    "Add at least 1 good image to",
                    "threshold.target to 0.334 or more",
                ]
            ],
        ),
        # 0 is met on no number of images: above the highest, and say what to expect
        (
            "target_frr",
            [0] * 10,
            GOOD,
            0.0,
            ("target_frr", 0.0, above(0.50)),
            [["target_frr 0% cannot be met", "1 new good part in 11 (9.1%)"]],
        ),
    ],
)
def test_choose_threshold(
    policy: Policy,
    labels: list[int],
    scores: list[float],
    target: float | None,
    expected: tuple[str, float | None, float],
    warned: list[list[str]],
) -> None:
    choice = choose_threshold(policy, labels, scores, target)
    assert (choice.policy, choice.target) == expected[:2]
    assert choice.raw_threshold == pytest.approx(expected[2], rel=0, abs=1e-12)
    assert len(choice.warnings) == len(warned), choice.warnings
    for warning, fragments in zip(choice.warnings, warned, strict=True):
        for fragment in fragments:
            assert fragment in warning, fragment


def test_choose_threshold_needs_good_images() -> None:
    with pytest.raises(InputError, match="no good images"):
        choose_threshold("target_frr", [1, 1], [0.2, 0.4], 0.01)


@pytest.mark.parametrize(
    ("target", "needed"),
    [
        (0.01, 100),
        (0.1, 10),
        (0.05, 20),
        (0.25, 4),
        (0.34, 3),
        (0.07, 15),
        (0.001, 1000),
        (0.0, None),
    ],
)
def test_good_images_needed(target: float, needed: int | None) -> None:
    assert good_images_needed(target) == needed
    if needed is not None:
        # exactly where target_frr first allows a reject: one fewer image allows none
        ranks = list(range(needed))
        assert sum(s >= target_frr(ranks, target) for s in ranks) == 1
        assert sum(s >= target_frr(ranks[1:], target) for s in ranks[1:]) == 0


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([i / 10 for i in range(21)], [i / 10 for i in range(21)]),  # one score a quantile
        ([0.1, 0.3], [round(0.1 + 0.01 * i, 6) for i in range(21)]),  # linear between
        ([0.2] * 5, [0.2] * 21),
    ],
)
def test_good_score_quantiles(scores: list[float], expected: list[float]) -> None:
    assert good_score_quantiles(scores) == pytest.approx(expected)


def test_good_score_quantiles_need_finite_scores() -> None:
    with pytest.raises(InputError, match="finite"):
        good_score_quantiles([])
    with pytest.raises(InputError, match="finite"):
        good_score_quantiles([0.1, float("nan")])
