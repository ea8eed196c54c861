"""A detector's outputs to `Defect`s by hand: per-class thresholds, the normalised score
(each class's threshold lands on 0.5), boxes back in the part's pixels (stretch and
letterbox), and the PLC defect code of a class."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from defectlens.datasets.images import placement
from defectlens.inference.postprocess import (
    defect_code,
    detections_to_defects,
    normalised_score,
)
from defectlens.modelcard import Calibration, InputSpec, ModelCard


def card(**fields: object) -> ModelCard:
    values: dict[str, object] = {
        "name": "boards",
        "version": "v1",
        "family": "detection",
        "created": datetime(2026, 12, 6, tzinfo=UTC),
        "sha256": "0" * 64,
        "input": InputSpec(height=100, width=100, channels=1, color="gray"),
        "outputs": [],
        "calibration": Calibration(policy="best_f1", raw_threshold=0.5, scale=1.0),
        "classes": ["open", "short", "copper"],
    }
    return ModelCard.model_validate(values | fields)


@pytest.mark.parametrize(
    ("score", "threshold", "expected"),
    [
        (0.3, 0.3, 0.5),  # at its threshold: the documented cut
        (0.5, 0.2, 0.8),  # logit margin ln(1) - ln(0.25) = ln 4: sigmoid = 4/5
        (0.2, 0.5, 0.2),  # margin ln(0.25): 1/5
    ],
)
def test_normalised_score_by_hand(score: float, threshold: float, expected: float) -> None:
    assert normalised_score(score, threshold) == pytest.approx(expected)


def test_only_detections_at_or_above_their_class_threshold_are_defects() -> None:
    boxes = np.array([[10, 20, 30, 40], [50, 50, 60, 70], [0, 0, 5, 5]], np.float32)
    scores = np.array([0.6, 0.35, 0.2], np.float32)
    labels = np.array([0, 1, 2], np.int64)
    spec = InputSpec(height=100, width=100, channels=1, color="gray")
    # the part is 200 x 400 (h x w): x doubles... x scale 4, y scale 2
    found = detections_to_defects(
        boxes,
        scores,
        labels,
        ["open", "short", "copper"],
        [0.5, 0.4, 0.1],
        placement((200, 400), spec),
        (200, 400),
    )
    assert [d.class_ for d in found.defects] == ["copper", "open"]  # short 0.35 < 0.4
    copper, opened = found.defects
    assert opened.box == (40, 40, 120, 80) and opened.area_px == 80 * 40
    assert copper.box == (0, 0, 20, 10)
    assert copper.score == pytest.approx(normalised_score(0.2, 0.1))  # 0.69: strongest
    assert found.score == pytest.approx(copper.score)


def test_letterboxed_boxes_come_back_without_the_padding() -> None:
    spec = InputSpec(height=100, width=100, channels=1, color="gray", resize="letterbox")
    # a 50 x 100 part (h x w) sits at rows 25..75 of the input, scale 1
    found = detections_to_defects(
        np.array([[10, 30, 20, 40]], np.float32),
        np.array([0.9], np.float32),
        np.array([0]),
        ["open"],
        [0.5],
        placement((50, 100), spec),
        (50, 100),
    )
    assert found.defects[0].box == (10, 5, 20, 15)


def test_nothing_above_threshold_scores_below_the_cut() -> None:
    found = detections_to_defects(
        np.array([[0, 0, 10, 10]], np.float32),
        np.array([0.1], np.float32),
        np.array([0]),
        ["open"],
        [0.4],
        placement((100, 100), InputSpec(height=100, width=100, channels=1, color="gray")),
        (100, 100),
    )
    assert found.defects == [] and found.score < 0.5


def test_the_plc_code_of_a_class() -> None:
    assert [defect_code(card(), c) for c in ("open", "short", "copper")] == [1, 2, 3]
    assert defect_code(card(codes={"short": 42}), "short") == 42
    assert defect_code(card(codes={"short": 42}), "copper") == 3
    assert defect_code(card(), "scratch") == 1  # unknown to the card: a defect
    anomaly = card(family="anomaly", classes=["anomaly"])
    assert defect_code(anomaly, "anomaly") == 1  # what the PLC always read for a defect
