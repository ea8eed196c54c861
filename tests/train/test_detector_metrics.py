"""The detector's metrics against answers worked out by hand: IoU, matching, the DeepPCB
protocol, per-class figures, the confusion matrix with background, image-level rates,
the thresholds of best F1, and COCO mAP at its extremes."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.train import detector_metrics as dm
from defectlens.train.detector_metrics import Detections


def found(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    """Detections from (x0, y0, x1, y1, score, label) rows."""
    array = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(
        array[:, :4].astype(np.float32), array[:, 4].astype(np.float32), array[:, 5].astype(int)
    )


def truth(*rows: tuple[float, float, float, float, int]) -> Detections:
    array = np.array(rows, np.float64).reshape(-1, 5)
    return Detections.truth(array[:, :4], array[:, 4].astype(int))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half overlaps: 50 / (100 + 100 - 50)
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges share no area
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),  # inside
    ],
)
def test_iou_by_hand(a: tuple[int, ...], b: tuple[int, ...], expected: float) -> None:
    assert dm.iou([a], [b])[0, 0] == pytest.approx(expected)


def test_matching_takes_detections_by_score_and_each_truth_once() -> None:
    t = truth((0, 0, 10, 10, 0), (20, 20, 30, 30, 1))
    f = found(
        (0, 0, 10, 10, 0.6, 0),  # matches truth 0, but a higher score came first...
        (1, 0, 11, 10, 0.9, 0),  # ...this one (IoU 90/110): truth 0 goes to it
        (20, 20, 30, 30, 0.8, 0),  # right place, wrong class: no match
        (20, 20, 30, 30, 0.7, 1),  # class 1: matches truth 1
    )
    assert dm.match(t, f, 0.33).tolist() == [-1, 0, -1, 1]


def test_the_deeppcb_protocol_counts_iou_above_a_third() -> None:
    t = truth((0, 0, 10, 10, 0), (50, 50, 60, 60, 0), (100, 100, 110, 110, 2))
    f = found(
        (0, 0, 10, 10, 0.9, 0),  # right
        (55, 50, 65, 60, 0.9, 0),  # IoU 50/150 = 0.333 > 0.33: right
        (100, 100, 110, 110, 0.9, 1),  # wrong class
    )
    result = dm.deeppcb_protocol([t], [f])
    assert (result["true_positives"], result["detections"], result["ground_truths"]) == (2, 3, 3)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    shifted = found((0, 0, 10, 10, 0.9, 0), (56, 50, 66, 60, 0.9, 0))  # IoU 40/160 = 0.25
    assert dm.deeppcb_protocol([t], [shifted])["true_positives"] == 1


def test_no_detections_is_precision_one_recall_zero() -> None:
    result = dm.deeppcb_protocol([truth((0, 0, 10, 10, 0))], [found()])
    assert (result["precision"], result["recall"], result["f1"]) == (1.0, 0.0, 0.0)


def test_per_class_figures_by_hand() -> None:
    t = [truth((0, 0, 10, 10, 0), (20, 0, 30, 10, 0), (40, 0, 50, 10, 1))]
    f = [found((0, 0, 10, 10, 0.9, 0), (40, 0, 50, 10, 0.8, 1), (60, 0, 70, 10, 0.7, 1))]
    result = dm.per_class(t, f, ["a", "b"])
    assert result["a"]["precision"] == 1.0 and result["a"]["recall"] == 0.5
    assert result["a"]["f1"] == pytest.approx(2 / 3)
    assert result["b"]["precision"] == 0.5 and result["b"]["recall"] == 1.0


def test_the_confusion_matrix_has_background_row_and_column() -> None:
    t = [truth((0, 0, 10, 10, 0), (20, 0, 30, 10, 1), (40, 0, 50, 10, 1))]
    f = [
        found(
            (0, 0, 10, 10, 0.9, 0),  # class 0 found as 0
            (20, 0, 30, 10, 0.8, 0),  # class 1 found as 0
            (80, 0, 90, 10, 0.7, 1),  # nothing there: background found as 1
        )
    ]
    # truth 2 (class 1 at x 40) is missed: class 1 found as background
    expected = [[1, 0, 0], [1, 0, 1], [0, 1, 0]]
    assert dm.confusion(t, f, 2).tolist() == expected


def test_image_level_escape_and_false_reject_rates() -> None:
    t = [truth((0, 0, 10, 10, 0)), truth((0, 0, 10, 10, 0)), truth(), truth(), truth()]
    f = [found((0, 0, 10, 10, 0.9, 0)), found(), found((5, 5, 9, 9, 0.9, 0)), found(), found()]
    result = dm.image_verdicts(t, f)
    assert result["escape_rate"] == 0.5  # one of two defective images had nothing found
    assert result["false_reject_rate"] == pytest.approx(1 / 3)
    assert dm.image_verdicts([truth()], [found()])["escape_rate"] is None


def test_best_f1_thresholds_pick_the_cut_with_the_best_f1() -> None:
    t = [truth((0, 0, 10, 10, 0), (20, 0, 30, 10, 0))]
    f = [
        found(
            (0, 0, 10, 10, 0.9, 0),  # right
            (50, 0, 60, 10, 0.8, 0),  # wrong
            (20, 0, 30, 10, 0.6, 0),  # right
            (70, 0, 80, 10, 0.3, 0),  # wrong
        )
    ]
    # cut 0.9: P 1, R .5, F1 .667; 0.8: P .5, R .5; 0.6: P .667, R 1, F1 .8; 0.3: P .5, R 1
    assert dm.best_f1_thresholds(t, f, 2, minimum=0.1) == pytest.approx([0.6, 0.5])
    # a floor above every score of class 0 keeps 0.5 (never found)
    assert dm.best_f1_thresholds(t, f, 1, minimum=0.95) == [0.5]


def test_thresholds_keep_detections_at_or_above_their_class_cut() -> None:
    f = found((0, 0, 1, 1, 0.5, 0), (0, 0, 1, 1, 0.49, 0), (0, 0, 1, 1, 0.3, 1))
    assert f.above([0.5, 0.2]).scores.tolist() == pytest.approx([0.5, 0.3])


def test_coco_map_is_one_for_perfect_detections_and_zero_for_misses() -> None:
    t = [truth((0, 0, 10, 10, 0), (20, 20, 40, 40, 1)), truth((5, 5, 25, 25, 1))]
    perfect = [
        found((0, 0, 10, 10, 0.9, 0), (20, 20, 40, 40, 0.8, 1)),
        found((5, 5, 25, 25, 0.7, 1)),
    ]
    result = dm.coco_map(t, perfect, 2)
    assert result["map50"] == pytest.approx(1.0)
    assert result["map50_95"] == pytest.approx(1.0)
    misplaced = [found((60, 60, 70, 70, 0.9, 0)), found((60, 60, 70, 70, 0.9, 1))]
    assert dm.coco_map(t, misplaced, 2)["map50"] == pytest.approx(0.0)


def test_coco_map_half_when_one_of_two_boxes_is_found_first() -> None:
    # One class, two boxes, one right detection: precision 1 up to recall 0.5, then none.
    # COCO's 101-point interpolation: 51 of 101 recall points at precision 1.
    t = [truth((0, 0, 10, 10, 0), (20, 0, 30, 10, 0))]
    f = [found((0, 0, 10, 10, 0.9, 0))]
    assert dm.coco_map(t, f, 1)["map50"] == pytest.approx(51 / 101)
