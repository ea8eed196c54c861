"""The detector's train job end to end on synthetic boards: the version folder (model.onnx,
model.json with classes and per-class thresholds, reference.png, report), the engine
serving it (classes, scores, boxes in the part's pixels), `defectlens train --resume`,
`evaluate` and `predict`, and the benchmark's smoke mode."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from defectlens.cli import main
from defectlens.datasets.detection import open_detection_dataset
from defectlens.datasets.images import read_image
from defectlens.errors import InputError
from defectlens.inference.engine import REFERENCE_FILE, Engine
from defectlens.modelcard import ModelCard
from defectlens.train.detector_fit import CHECKPOINT
from defectlens.train.detector_pipeline import CHECKPOINTS

ROOT = Path(__file__).resolve().parents[2]


def lowered(version: Path, folder: Path, threshold: float = 1e-4) -> Path:
    """A copy of a version whose class thresholds let the smoke model's peaks through (two
    epochs teach it little), so the NG path of the contract is exercised."""
    copy = Path(shutil.copytree(version, folder / version.name))
    card = ModelCard.read(copy / "model.json")
    card.class_thresholds = {name: threshold for name in card.classes}
    card.write(copy / "model.json")
    return copy


def test_the_version_folder_carries_classes_thresholds_and_report(trained_detector: Path) -> None:
    card = ModelCard.read(trained_detector / "model.json")
    assert card.family == "detection"
    assert card.classes == ["open", "short", "copper"]
    assert set(card.class_thresholds) == set(card.classes)
    assert all(0 < t < 1 for t in card.class_thresholds.values())
    assert [o.name for o in card.outputs] == ["boxes", "scores", "labels"]
    assert card.parity["max_abs_score"] < 1e-3
    assert card.data["reference"] == "fixed"  # one golden board: it ships with the model
    assert (trained_detector / REFERENCE_FILE).is_file()
    for name in ("model.onnx", "recipe.yaml", "report/index.html", "report/pr_curves.png"):
        assert (trained_detector / name).is_file(), name
    metrics = json.loads((trained_detector / "report" / "metrics.json").read_text())
    assert {"map50", "map50_95", "f1", "escape_rate", "per_type", "confusion"} <= set(metrics)
    assert set(metrics["per_type"]) == set(card.classes)
    assert len(metrics["confusion"]["counts"]) == len(card.classes) + 1
    assert not (trained_detector.parent / CHECKPOINTS).exists()  # removed once done


def test_the_engine_serves_classes_scores_and_boxes(
    trained_detector: Path, synthetic_boards: Path, tmp_path: Path
) -> None:
    engine = Engine(lowered(trained_detector, tmp_path), threads=1)
    sample = open_detection_dataset(synthetic_boards).samples[0]
    image = read_image(sample.image)
    # twice the size: boxes come back in the part's own pixels
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    prediction = engine.predict(big)
    assert prediction.verdict == "NG" and prediction.score >= prediction.threshold == 0.5
    assert prediction.defects
    for defect in prediction.defects:
        assert defect.class_ in engine.card.classes
        assert 0.5 <= defect.score <= 1.0
        x0, y0, x1, y1 = defect.box
        assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256
        assert defect.area_px == (x1 - x0) * (y1 - y0)
    payload = prediction.model_dump(mode="json", by_alias=True)
    assert {"class", "score", "box", "area_px"} <= set(payload["defects"][0])


def test_a_part_with_nothing_above_its_class_threshold_is_ok(
    trained_detector: Path, synthetic_boards: Path, tmp_path: Path
) -> None:
    engine = Engine(lowered(trained_detector, tmp_path, threshold=0.999999), threads=1)
    prediction = engine.predict(
        read_image(open_detection_dataset(synthetic_boards).samples[0].image)
    )
    assert prediction.verdict == "OK" and prediction.defects == []
    assert prediction.score < 0.5


def test_a_reference_model_without_one_says_what_to_give(
    trained_detector: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(trained_detector, tmp_path / "v"))
    (copy / REFERENCE_FILE).unlink()
    engine = Engine(copy, threads=1)
    with pytest.raises(InputError, match="reference image"):
        engine.predict(np.zeros((128, 128), np.uint8))
    # given one, it runs
    assert engine.predict(np.zeros((128, 128), np.uint8), reference=np.zeros((128, 128), np.uint8))


def test_train_resume_evaluate_and_predict_from_the_command_line(
    synthetic_boards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "boards.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "boards",
                "family": "detection",
                "image_size": 128,
                "crop": 64,
                "width": 8,
                "top_k": 10,
                "batch_size": 8,
                "evaluation_fraction": 0.25,
                "validation_fraction": 0.2,
                "schedule": {"epochs": 1, "max_minutes": 5},
            }
        )
    )
    out = tmp_path / "models"
    assert main(["train", str(recipe), "--data", str(synthetic_boards), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    version = Path(printed[-1])
    assert version.parent == out / "boards" and (version / "model.onnx").is_file()
    assert any(line.strip().startswith("mAP@0.5") for line in printed)

    # an interrupted run leaves its checkpoint; --resume continues from it (here: one
    # epoch more of a two-epoch schedule)
    longer = yaml.safe_load(recipe.read_text())
    longer["schedule"]["epochs"] = 2
    recipe.write_text(yaml.safe_dump(longer))
    from defectlens.datasets.detection import open_detection_dataset as open_data
    from defectlens.models.detector import DefectDetector
    from defectlens.train.detector_fit import fit_detector, load_pair
    from defectlens.train.detector_pipeline import plan
    from defectlens.train.recipe import load_any_recipe

    loaded = load_any_recipe(recipe)
    fit, validation, _ = plan(open_data(synthetic_boards), loaded)  # type: ignore[arg-type]
    pairs = [load_pair(s, True, (128, 128)) for s in fit]
    checks = [load_pair(s, True, (128, 128)) for s in validation]
    one_epoch = loaded.model_copy(
        update={"schedule": loaded.schedule.model_copy(update={"epochs": 1})}
    )
    network = DefectDetector(3, reference=True, width=8, top_k=10)
    fit_detector(network, pairs, checks, one_epoch, out / "boards" / CHECKPOINTS)  # type: ignore[arg-type]
    assert (out / "boards" / CHECKPOINTS / CHECKPOINT).is_file()
    with pytest.raises(InputError, match="another recipe"):  # epochs differ: refused
        fit_detector(
            DefectDetector(3, reference=True, width=8, top_k=10),
            pairs,
            checks,
            loaded,  # type: ignore[arg-type]
            out / "boards" / CHECKPOINTS,
            resume=True,
        )
    said: list[str] = []
    progress = fit_detector(
        DefectDetector(3, reference=True, width=8, top_k=10),
        pairs,
        checks,
        one_epoch,  # type: ignore[arg-type]
        out / "boards" / CHECKPOINTS,
        resume=True,
        say=said.append,
    )
    assert said[0].startswith("resumed from") and progress.epoch == 1  # nothing left to do

    assert main(["evaluate", str(version), "--data", str(synthetic_boards), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert {"map50", "f1", "per_type"} <= set(figures)

    sample = open_detection_dataset(synthetic_boards).samples[0]
    assert main(["predict", str(version), str(sample.image), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["verdict"] in ("OK", "NG") and record["model"]["name"] == "boards"


def test_evaluate_refuses_data_of_other_classes(trained_detector: Path, tmp_path: Path) -> None:
    data = tmp_path / "other.json"
    data.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "dent"}]})
    )
    assert main(["evaluate", str(trained_detector), "--data", str(data)]) == 2


@pytest.mark.slow
def test_the_benchmark_smoke_mode_prints_its_table(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "benchmark_detector.py"),
            *("--smoke", "--out", str(tmp_path), "--minutes", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert any(line.startswith("mAP@0.5") for line in lines)
    assert any(line.startswith("DeepPCB F-score") for line in lines)
    assert lines[-1].startswith("command: scripts/benchmark_detector.py")
    assert json.loads((tmp_path / "ours.json").read_text())["onnx_graph_ms"] > 0


def test_init_refuses_a_detector_recipe_and_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "ws"), "--recipe", "deeppcb"]) == 2
    assert "defectlens train deeppcb --data" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()
