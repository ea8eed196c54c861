"""The report and the calibration record of models trained for real: on good parts alone
(the threshold falls back to target_frr and says so), and the session's model (its panels
hold the parts its verdicts got wrong, and only those)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from browser import distinct_colours, screenshot

from defectlens.datasets.synthetic import generate_dataset
from defectlens.modelcard import ModelCard
from defectlens.train import pipeline
from defectlens.train.evaluate import metrics_table
from defectlens.train.plots import FALSELY_REJECTED, MISSED
from defectlens.train.recipe import load_recipe


def panel(text: str, title: str) -> str:
    return text.split(f"<h3>{title}</h3>")[1].split('<div class="panel">')[0]


def test_a_recipe_for_defects_trains_on_good_parts_alone_and_says_so(
    tmp_path: Path, small_recipe: Path
) -> None:
    data = generate_dataset(
        tmp_path / "good-only", train_good=12, test_good=4, test_defect_per_kind=0, seed=1
    )
    recipe = load_recipe(small_recipe)
    assert recipe.threshold.policy == "best_f1"
    version = pipeline.train_model(recipe, data, tmp_path / "models")

    card = ModelCard.read(version / "model.json")
    calibration = card.calibration
    assert (calibration.policy, calibration.target) == ("target_frr", 0.01)
    # round(15% of 12) train/good and round(40% of 4) test/good images
    assert calibration.validation == {"good": 4, "defective": 0}
    good = 4
    assert len(calibration.warnings) == 2
    fallback, unresolved = calibration.warnings
    assert "policy best_f1 needs defective images" in fallback
    assert f"needs at least 100 good calibration images and there are {good}" in unresolved
    assert f"1 new good part in {good + 1}" in unresolved

    text = (version / "report" / "index.html").read_text(encoding="utf-8")
    opening = text.split('<section class="warnings">')[1].split("</section>")[0]
    for warning in calibration.warnings:
        assert html.escape(warning, quote=True) in opening
    assert "No defective images in the evaluation set, so no miss can be shown" in panel(
        text, MISSED
    )
    f1 = text.split('<div class="label">F1</div>')[1].split('<div class="card')[0]
    assert "—" in f1 and "no defective images in the evaluation set" in f1
    # F1 and precision have no value without defective parts: null in metrics.json and
    # model.json, no line in the command's table (not "F1 0.000")
    saved = json.loads((version / "report" / "metrics.json").read_text(encoding="utf-8"))
    for figures in (saved, card.metrics):
        assert figures["f1"] is None and figures["precision"] is None
    assert not [line for line in metrics_table(card.metrics) if line.lstrip().startswith("F1")]


def test_the_report_of_the_trained_model_renders(trained_model: Path, tmp_path: Path) -> None:
    picture = screenshot(trained_model / "report" / "index.html", tmp_path / "report.png")
    assert distinct_colours(picture) > 1000  # tables, plots and part pictures drawn


def test_the_panels_hold_the_wrong_verdicts_and_only_those(trained_model: Path) -> None:
    report = trained_model / "report"
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    text = (report / "index.html").read_text(encoding="utf-8")
    defective, good = metrics["counts"]["defective"], metrics["counts"]["good"]
    missed, rejected = panel(text, MISSED), panel(text, FALSELY_REJECTED)
    # a picture exactly where the model got parts wrong, none where it did not
    assert (report / "missed.png").is_file() == (metrics["fn"] > 0)
    assert ('src="missed.png"' in missed) == (metrics["fn"] > 0)
    assert (report / "falsely_rejected.png").is_file() == (metrics["fp"] > 0)
    assert ('src="falsely_rejected.png"' in rejected) == (metrics["fp"] > 0)
    if metrics["fn"]:
        assert f"{metrics['fn']} of {defective} defective parts passed as OK" in missed
    else:
        assert f"None: all {defective} defective parts were rejected (NG)." in missed
    if metrics["fp"]:
        assert f"{metrics['fp']} of {good} good parts were rejected (NG)" in rejected
    else:
        assert f"None: all {good} good parts passed (OK)." in rejected
    assert "worst_misses.png" not in text and "false_alarms.png" not in text


@pytest.mark.parametrize("name", ["anomaly", "configs/anomaly.yaml"])
def test_train_takes_a_shipped_recipe_by_name(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from defectlens.cli import main

    monkeypatch.chdir(tmp_path)  # a folder with no configs/ in it
    # the recipe is found; the next thing missing (the data) is what the error names
    assert main(["train", name, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "no data: give --data PATH" in error and "not found" not in error
