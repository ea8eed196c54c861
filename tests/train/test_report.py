"""The HTML report and its plots, written for real to a temporary folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import WIDTH, distinct_colours, screenshot

from defectlens.errors import InputError
from defectlens.modelcard import Calibration
from defectlens.train.plots import (
    FALSELY_REJECTED,
    MISSED,
    InspectedPart,
    plot_overlays,
    plot_roc,
    plot_score_histograms,
    plot_wrong_verdicts,
    wrong_verdicts,
)
from defectlens.train.report import _NEARNESS_CAPTIONS, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADER_BGR = (0x8C, 0x4E, 0x1F)  # the header's --accent, #1f4e8c

METRICS = {
    "image_auroc": 0.9731,
    "image_auroc_ci": [0.9512, 0.9874],
    "pixel_auroc": np.float64(0.9645),
    "aupro": 0.8812,
    "f1": 0.9412,
    "escape_rate": 0.0213,
    "false_reject_rate": 0.0455,
    "threshold": 3.1416,
    "policy": "best_f1",
    "target": None,
    "per_type": {
        "scratch": {
            "count": 23,
            "auroc": 0.991,
            "escape_rate": 0.0,
            "pixel_auroc": 0.932,
            "defect_pixel_share": 0.7123,
            "nearest_training_similarity": 0.4125,
        },
        "<crack & dent>": {"count": 17, "auroc": 0.943, "escape_rate": 0.0588},
    },
    "pixel_auroc_vs_good_images": 0.9861,
    "pixel_auroc_vs_normal_areas": 0.7997,
    "normal_area_vs_good_images_auroc": 0.9104,
    "training_nearest_similarity": 0.5521,
    "defective_farther_from_training_auroc": 0.9437,
    "n_images": 160,
    "nan_figure": float("nan"),
}
CARD = {"name": "bracket-inspect", "version": "20261126T143000Z-3fa2c1", "family": "anomaly"}


@pytest.fixture(scope="module")
def plots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plots")
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40, int), np.ones(20, int)]
    scores = rng.normal(size=60) + 2.0 * labels
    groups = ["good"] * 40 + ["scratch"] * 12 + ["crack"] * 8
    image = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 10:30] = True
    heat = np.clip(mask * 0.8 + rng.random((64, 64)) * 0.2, 0, 1)
    colour = np.dstack([image, image, image])
    return {
        "roc": plot_roc(labels, scores, folder / "roc.png", "Validation ROC", threshold=1.0),
        "scores": plot_score_histograms(scores, groups, 1.0, folder / "scores.png"),
        "worst_misses": plot_overlays(
            [("scratch 0.42", image, heat, mask), ("good 1.30", colour, heat, None)],
            folder / "misses.png",
            columns=4,
        ),
        "false_alarms": plot_overlays([], folder / "alarms.png"),
    }


def test_plots_are_png_files(plots: dict[str, Path]) -> None:
    for path in plots.values():
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_report_writes_metrics_and_a_page_with_the_figures(
    tmp_path: Path, plots: dict[str, Path]
) -> None:
    page = write_report(tmp_path / "report", METRICS, plots, CARD)
    assert page == tmp_path / "report" / "index.html"
    text = page.read_text(encoding="utf-8")
    for expected in [
        "bracket-inspect",
        "20261126T143000Z-3fa2c1",
        "0.973",  # image AUROC
        "95% CI 0.951 – 0.987",
        "0.965",  # pixel AUROC
        "0.881",  # AUPRO
        "0.941",  # F1
        "2.1%",  # escape rate
        "4.5%",  # false-reject rate
        "3.142",  # threshold
        "policy best_f1",
        "scratch",
        "5.9%",  # per-type escape rate
        "0.932",  # per-type pixel AUROC
        "71.2%",  # the type's share of the defect pixels
        "Pixel AUROC taken apart",
        "Defect pixels against good images</th><td>0.986",
        "Defect pixels against the normal areas of defective images</th><td>0.800",
        "Normal areas of defective images against good images</th><td>0.910",
        "Nearest training similarity",  # per-type column
        "0.412",
        "Evaluation images against the training images",
        'Training images, to their nearest other training image</th><td class="figure">0.552',
        'by distance from the training images alone</th><td class="figure">0.944',
    ]:
        assert expected in text, expected
    # plots drawn elsewhere are copied in and referenced relatively
    for name in ("roc.png", "scores.png", "misses.png", "alarms.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == PNG_MAGIC
        assert f'src="{name}"' in text
    assert "http" not in text.replace("http-equiv", "")  # no external assets

    saved = json.loads((tmp_path / "report" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["image_auroc"] == 0.9731
    assert saved["pixel_auroc"] == 0.9645
    assert saved["nan_figure"] is None
    assert saved["per_type"]["scratch"]["count"] == 23


def test_report_escapes_html(tmp_path: Path) -> None:
    card = {"name": "<script>alert(1)</script>", "version": "1", "note": 'a "quoted" & odd'}
    text = write_report(tmp_path, METRICS, {}, card).read_text(encoding="utf-8")
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "&lt;crack &amp; dent&gt;" in text
    assert "&quot;quoted&quot; &amp; odd" in text


def test_report_names_a_missing_plot(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="roc"):
        write_report(tmp_path, METRICS, {"roc": tmp_path / "nowhere.png"}, CARD)


# --- the panels show what their titles say -------------------------------------------------


def part(name: str, defective: bool, score: float) -> InspectedPart:
    image = np.full((32, 32), 128, np.uint8)
    return InspectedPart(name, defective, score, image, np.zeros((32, 32)), None)


# score >= 0.5 is NG: a defective part at 0.5 is caught, a good one at 0.5 rejected
PARTS = [
    part("crack a", True, 0.2),
    part("crack b", True, 0.7),
    part("dent c", True, 0.45),
    part("dent d", True, 0.5),
    part("good e", False, 0.1),
    part("good f", False, 0.55),
    part("good g", False, 0.5),
    part("good h", False, 0.8),
]


def test_wrong_verdicts_are_the_parts_the_model_got_wrong_surest_first() -> None:
    missed, rejected = wrong_verdicts(PARTS, 0.5)
    assert [p.name for p in missed] == ["crack a", "dent c"]  # lowest score first
    assert [p.name for p in rejected] == ["good h", "good f", "good g"]  # highest first
    names = [[p.name for p in group] for group in wrong_verdicts(PARTS, 0.05)]
    assert names == [[], ["good h", "good f", "good g", "good e"]]
    names = [[p.name for p in group] for group in wrong_verdicts(PARTS, 0.95)]
    assert names == [["crack a", "dent c", "dent d", "crack b"], []]


def test_a_panel_with_no_wrong_part_is_not_drawn(tmp_path: Path) -> None:
    right = [p for p in PARTS if (p.score >= 0.5) == p.defective]
    assert plot_wrong_verdicts(right, 0.5, tmp_path) == {}
    assert list(tmp_path.iterdir()) == []
    drawn = plot_wrong_verdicts(PARTS, 0.5, tmp_path, shown=1)
    assert set(drawn) == {MISSED, FALSELY_REJECTED}
    for path in drawn.values():
        assert path.read_bytes()[:8] == PNG_MAGIC


BASE = {
    "image_auroc": 0.95,
    "image_auroc_ci": [0.9, 0.98],
    "pixel_auroc": 0.93,
    "aupro": 0.8,
    "f1": 0.9,
    "escape_rate": 0.0,
    "false_reject_rate": 0.0,
    "threshold": 0.5,
    "counts": {"good": 20, "defective": 10},
    "tp": 10,
    "fp": 0,
    "tn": 20,
    "fn": 0,
    "precision": 1.0,
    "recall": 1.0,
    "per_type": {
        "good": {"count": 20, "false_reject_rate": 0.0},
        "crack": {"count": 6, "auroc": 0.97, "escape_rate": 0.0},
        "dent": {"count": 4, "auroc": 0.92, "escape_rate": 0.0},
    },
}


def page(tmp_path: Path, plots: dict[str, Path] | None = None, **changes: Any) -> str:
    calibration = changes.pop("calibration", None)
    metrics = {**BASE, **changes}
    return write_report(tmp_path / "r", metrics, plots or {}, CARD, calibration).read_text(
        encoding="utf-8"
    )


def section(text: str, start: str, title: str) -> str:
    """The piece of the page from the `start` tag holding `title` to the next one."""
    for piece in text.split(start)[1:]:
        if title in piece:
            return piece.split("</section>")[0]
    raise AssertionError(f"no {start} with {title!r}")


def card(text: str, label: str) -> str:
    return section(text, '<div class="card', f'<div class="label">{label}</div>')


def panel(text: str, title: str) -> str:
    return section(text, '<div class="panel">', f"<h3>{title}</h3>")


def test_panels_say_in_words_when_the_model_got_every_part_right(
    tmp_path: Path, plots: dict[str, Path]
) -> None:
    # even handed pictures of other parts, a panel with no wrong part shows none
    text = page(tmp_path, {MISSED: plots["worst_misses"], FALSELY_REJECTED: plots["roc"]})
    missed = panel(text, MISSED)
    assert "None: all 10 defective parts were rejected (NG)." in missed
    assert "<img" not in missed
    rejected = panel(text, FALSELY_REJECTED)
    assert "None: all 20 good parts passed (OK)." in rejected
    assert "<img" not in rejected
    assert "misses.png" not in text and "roc.png" not in text


def test_panels_show_the_wrong_parts_under_their_titles(
    tmp_path: Path, plots: dict[str, Path]
) -> None:
    text = page(
        tmp_path,
        {MISSED: plots["worst_misses"], FALSELY_REJECTED: plots["false_alarms"]},
        fn=3,
        tp=7,
        escape_rate=0.3,
        fp=1,
        tn=19,
        false_reject_rate=0.05,
    )
    missed = panel(text, MISSED)
    assert "3 of 10 defective parts passed as OK" in missed
    assert 'src="misses.png"' in missed
    rejected = panel(text, FALSELY_REJECTED)
    assert "1 of 20 good parts were rejected (NG)" in rejected
    assert 'src="alarms.png"' in rejected
    assert "<h2>Plots</h2>" not in text  # not a second time among the other plots


def test_panels_without_defective_images_say_so(tmp_path: Path) -> None:
    text = page(tmp_path, counts={"good": 20, "defective": 0}, tp=0, fn=0)
    assert "No defective images in the evaluation set, so no miss can be shown" in panel(
        text, MISSED
    )


# --- every dash says why ---------------------------------------------------------------------

REASON = re.compile(
    r'—(</div><div class="note">(?P<note>[^<]+)</div>| <span class="missing">(?P<span>[^<]+)<)'
)


def assert_every_dash_explained(text: str) -> None:
    body = text[text.index("<main>") :]
    dashes = body.count("—")
    explained = [m.group("note") or m.group("span") for m in REASON.finditer(body)]
    assert len(explained) == dashes, "a dash without a reason"
    assert all(reason.strip() for reason in explained)


def test_pixel_figures_without_masks_say_so(tmp_path: Path) -> None:
    metrics = {k: v for k, v in BASE.items() if k not in ("pixel_auroc", "aupro")}
    text = write_report(tmp_path, metrics, {}, CARD).read_text(encoding="utf-8")
    for label in ("Pixel AUROC", "AUPRO"):
        assert "—" in card(text, label)
        assert "no defect masks in this data set" in card(text, label)
    assert_every_dash_explained(text)


@pytest.mark.parametrize("undefined", [None, 0.0], ids=["now", "older metrics.json"])
def test_figures_that_need_defective_images_are_dashes_with_the_reason(
    tmp_path: Path, undefined: float | None
) -> None:
    # good parts only, some rejected: confusion_at gives F1 and precision None; an older
    # metrics.json holds 0 for both. Neither is a figure of this model.
    text = page(
        tmp_path,
        counts={"good": 35, "defective": 0},
        f1=undefined,
        precision=undefined,
        recall=None,
        escape_rate=None,
        image_auroc=None,
        image_auroc_ci=None,
        pixel_auroc=None,
        aupro=None,
        tp=0,
        fn=0,
        fp=3,
        tn=32,
        false_reject_rate=3 / 35,
        per_type={"good": {"count": 35, "false_reject_rate": 3 / 35}},
    )
    for label in ("F1", "Escape rate", "Image AUROC", "Pixel AUROC", "AUPRO"):
        assert "no defective images in the evaluation set" in card(text, label), label
    assert "0.000" not in card(text, "F1")
    precision = section(text, "<tr>", "Precision")
    assert "0.000" not in precision and "no defective images in the evaluation set" in precision
    assert "No defective images in the evaluation set: the escape rate" in text  # up front
    assert "AUROC: each type" not in text  # no AUROC column to explain
    assert_every_dash_explained(text)


def test_grouped_figures_read_as_words(tmp_path: Path) -> None:
    splits = {"fit_good": 34, "calibration_good": 12, "evaluation_defective": 15}
    text = write_report(tmp_path, BASE, {}, {**CARD, "splits": splits}).read_text("utf-8")
    assert "<th>Evaluation images</th><td>good 20, defective 10</td>" in text
    assert "fit good 34, calibration good 12, evaluation defective 15" in text
    assert "<th>Good parts rejected (fp)</th><td>0</td>" in text
    assert "{" not in text[text.index("<main>") :]


def test_the_full_page_explains_every_dash(tmp_path: Path, plots: dict[str, Path]) -> None:
    text = write_report(tmp_path, METRICS, plots, CARD).read_text(encoding="utf-8")
    assert "nan_figure</th><td>— <span" in text
    assert_every_dash_explained(text)


# --- red figures carry a next step --------------------------------------------------------


def calibration(policy: str, target: float | None, good: int, *warnings: str) -> Calibration:
    return Calibration.model_validate(
        {
            "policy": policy,
            "target": target,
            "raw_threshold": 1.0,
            "scale": 0.1,
            "validation": {"good": good, "defective": 0 if policy == "target_frr" else 5},
            "warnings": list(warnings),
        }
    )


ESCAPES = {
    "escape_rate": 0.3,
    "fn": 3,
    "tp": 7,
    "per_type": {
        "good": {"count": 20, "false_reject_rate": 0.0},
        "crack": {"count": 6, "auroc": 0.9, "escape_rate": 2 / 6},
        "dent": {"count": 4, "auroc": 0.9, "escape_rate": 1 / 4},
    },
}


@pytest.mark.parametrize(
    ("policy", "target", "advice"),
    [
        ("target_frr", 0.01, ["defective examples", "best_f1", "threshold.target", "detector"]),
        ("best_f1", None, ["defective examples", "zero_escape", "detector"]),
        ("zero_escape", None, ["defective examples of the types that escape", "detector"]),
    ],
)
def test_escapes_are_red_with_what_to_do(
    tmp_path: Path, policy: str, target: float | None, advice: list[str]
) -> None:
    text = page(tmp_path, calibration=calibration(policy, target, 200), **ESCAPES)
    escapes = card(text, "Escape rate")
    assert escapes.startswith(' alert"')
    assert "3 of 10 defective parts passed as OK (crack 2 of 6, dent 1 of 4)." in escapes
    assert "<b>Next step:</b>" in escapes
    for words in advice:
        assert words in escapes, words


@pytest.mark.parametrize(
    ("changes", "cal", "red", "advice"),
    [
        # the case: 1% asked, 15 good calibration images, 8.6% on new good parts
        (
            {"false_reject_rate": 3 / 35, "fp": 3, "counts": {"good": 35, "defective": 10}},
            calibration("target_frr", 0.01, 15),
            True,
            [
                "3 of 35 good parts were rejected, above the 1.0% the threshold aimed at",
                "set on 15 good images; a 1.0% target needs at least 100.",
                "add at least 85 good images",
                "raise threshold.target",
            ],
        ),
        # enough calibration images, still above the target
        (
            {"false_reject_rate": 0.04, "fp": 8, "counts": {"good": 200, "defective": 10}},
            calibration("target_frr", 0.01, 300),
            True,
            ["more good images", "threshold.target"],
        ),
        (
            {"false_reject_rate": 0.005, "fp": 1, "counts": {"good": 200, "defective": 10}},
            calibration("target_frr", 0.01, 300),
            False,
            [],
        ),
        # no target asked for: red above 5%
        (
            {"false_reject_rate": 0.04, "fp": 8, "counts": {"good": 200, "defective": 10}},
            calibration("best_f1", None, 60),
            False,
            [],
        ),
        (
            {"false_reject_rate": 0.08, "fp": 16, "counts": {"good": 200, "defective": 10}},
            calibration("best_f1", None, 60),
            True,
            ["above 5.0%.", "target_frr", "add good images"],
        ),
    ],
)
def test_false_rejects_above_the_target_are_red_with_what_to_do(
    tmp_path: Path, changes: dict[str, Any], cal: Calibration, red: bool, advice: list[str]
) -> None:
    rejects = card(page(tmp_path, calibration=cal, **changes), "False-reject rate")
    assert rejects.startswith(' alert"') == red
    assert ("<b>Next step:</b>" in rejects) == red
    for words in advice:
        assert words in rejects, words


def test_every_red_card_has_a_next_step(tmp_path: Path) -> None:
    text = page(
        tmp_path,
        calibration=calibration("target_frr", 0.01, 15),
        **{**ESCAPES, "false_reject_rate": 0.1, "fp": 2},
    )
    red = [piece for piece in text.split('<div class="card')[1:] if piece.startswith(' alert"')]
    assert len(red) == 2
    assert all("<b>Next step:</b>" in piece for piece in red)


# --- the similarity section gives advice ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "red", "words"),
    [
        (
            "defective_farther_from_training_auroc",
            0.904,
            True,
            [
                "photographed again",
                "false-reject rate above is likely too low",
                "photographed apart from the training images",
                "defectlens evaluate",
            ],
        ),
        ("defective_farther_from_training_auroc", 0.55, False, ["Fine:", "hold on new parts"]),
        ("training_nearest_similarity", 0.97, True, ["near-copies", "more, different good parts"]),
        ("training_nearest_similarity", 0.55, False, ["Fine:"]),
    ],
)
def test_the_similarity_figures_say_what_they_mean_and_what_to_do(
    tmp_path: Path, key: str, value: float, red: bool, words: list[str]
) -> None:
    text = page(tmp_path, **{key: value})
    row = section(text, "<tr", _NEARNESS_CAPTIONS[key])
    assert row.startswith(' class="alert"') == red
    assert ("<b>Next step:</b>" in row) == red
    assert "0.5: not at all" in row or "1: the same picture" in row  # what it means
    for word in words:
        assert word in row, word


# --- calibration warnings are up front ------------------------------------------------------


def test_calibration_warnings_open_the_page(tmp_path: Path) -> None:
    warned = calibration(
        "target_frr", 0.01, 15, "policy best_f1 needs defective images <to calibrate>"
    )
    text = page(tmp_path, calibration=warned)
    first = section(text, '<section class="warnings">', "Read this first")
    assert "policy best_f1 needs defective images &lt;to calibrate&gt;" in first
    assert text.index("Read this first") < text.index('<section class="cards">')
    how = section(text, "<section>", "How the threshold was set")
    assert "target_frr" in how and "15 good and 0 defective images" in how
    assert "policy target_frr, target FRR 1.0%" in card(text, "Threshold")
    assert "Read this first" not in page(tmp_path, calibration=calibration("best_f1", None, 60))


# --- the page as a person sees it ----------------------------------------------------------


def test_the_page_renders_to_png(tmp_path: Path, plots: dict[str, Path]) -> None:
    html_page = write_report(
        tmp_path / "report",
        {**METRICS, "counts": {"good": 44, "defective": 40}, "fn": 1, "fp": 2},
        {**plots, MISSED: plots["worst_misses"]},
        CARD,
        calibration("target_frr", 0.01, 15, "target_frr 1.0% needs at least 100 ..."),
    )
    picture = screenshot(html_page, tmp_path / "page.png")
    assert picture.shape[:2] == (4000, WIDTH)
    assert tuple(picture[5, 5]) == HEADER_BGR  # the page's own style, not a bare document
    # text, tables and the plots' pictures: a blank or plain-text page has a few hundred
    assert distinct_colours(picture) > 1000
