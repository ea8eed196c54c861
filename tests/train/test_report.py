"""The HTML report and its plots, written for real to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from defectlens.errors import InputError
from defectlens.train.plots import plot_overlays, plot_roc, plot_score_histograms
from defectlens.train.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

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
        "Training images, to their nearest other training image</th><td>0.552",
        "by distance from the training images alone</th><td>0.944",
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
