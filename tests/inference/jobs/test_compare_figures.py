"""The comparison's figures against a hand-worked case: four parts, two defective."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.inference.service.compare import HeldOutPart, comparison_figures, roc_svg

PARTS = [
    HeldOutPart("p1", Path("p1.png"), True),
    HeldOutPart("p2", Path("p2.png"), True),
    HeldOutPart("p3", Path("p3.png"), False),
    HeldOutPart("p4", Path("p4.png"), False),
]
PRODUCTION = ([0.9, 0.4, 0.1, 0.6], 0.5)
"""p1 caught, p2 escapes, p3 passed, p4 falsely rejected."""
CANDIDATE = ([0.8, 0.7, 0.2, 0.3], 0.5)
"""Every part right."""


@pytest.fixture(scope="module")
def figures() -> dict[str, object]:
    return comparison_figures(PARTS, PRODUCTION, CANDIDATE)


def test_each_model_at_its_own_threshold(figures: dict) -> None:  # type: ignore[type-arg]
    production, candidate = figures["production"], figures["candidate"]
    assert (figures["parts"], figures["good"], figures["defective"]) == (4, 2, 2)
    # production: tp 1, fn 1, fp 1, tn 1
    assert production["escape_rate"] == 0.5
    assert production["false_reject_rate"] == 0.5
    assert production["f1"] == 0.5  # 2*1 / (2*1 + 1 + 1)
    # AUROC: of the 4 (defective, good) pairs, 0.4 < 0.6 is the one ranked wrong
    assert production["auroc"] == pytest.approx(0.75)
    assert candidate["escape_rate"] == 0.0 and candidate["false_reject_rate"] == 0.0
    assert candidate["f1"] == 1.0 and candidate["auroc"] == 1.0
    assert candidate["roc"]["fpr"][0] == 0.0 and candidate["roc"]["tpr"][-1] == 1.0


def test_the_parts_whose_verdict_changed(figures: dict) -> None:  # type: ignore[type-arg]
    assert figures["changed_count"] == 2
    changed = {c["part"]: c for c in figures["changed"]}
    assert set(changed) == {"p2", "p4"}
    assert changed["p2"]["production"]["verdict"] == "OK"
    assert changed["p2"]["candidate"]["verdict"] == "NG"
    assert changed["p2"]["label"] == "NG" and changed["p2"]["candidate_right"]
    assert changed["p4"]["production"]["verdict"] == "NG"
    assert changed["p4"]["label"] == "OK" and changed["p4"]["candidate_right"]


def test_one_class_only_has_rates_but_no_auroc() -> None:
    good = [HeldOutPart("g1", Path("g1"), False), HeldOutPart("g2", Path("g2"), False)]
    figures = comparison_figures(good, ([0.1, 0.7], 0.5), ([0.1, 0.2], 0.5))
    assert figures["production"]["auroc"] is None and figures["production"]["roc"] is None
    assert figures["production"]["false_reject_rate"] == 0.5
    assert figures["production"]["escape_rate"] is None  # no defective part to escape
    assert figures["candidate"]["false_reject_rate"] == 0.0


def test_the_roc_curves_render_as_inline_svg(figures: dict) -> None:  # type: ignore[type-arg]
    svg = roc_svg(figures)
    assert svg.startswith("<svg") and "AUROC 0.750" in svg and "AUROC 1.000" in svg
