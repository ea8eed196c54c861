"""The `defectlens` command as scripts drive it: output contract and exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from defectlens.datasets.layout import open_dataset


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "defectlens.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_explains_every_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("train", "evaluate", "predict", "demo"):
        assert command in result.stdout


def test_train_prints_the_version_folder_last(
    synthetic_data: Path, small_recipe: Path, tmp_path: Path
) -> None:
    result = run("train", str(small_recipe), "--data", str(synthetic_data), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    version = Path(result.stdout.strip().splitlines()[-1])
    assert version.parent == tmp_path / "test-parts"
    assert (version / "model.onnx").is_file()


def test_predict_json_and_overlays(
    trained_model: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    test = open_dataset(synthetic_data).test
    good = next(s for s in test if not s.is_defective)
    bad = next(s for s in test if s.defect_type == "spot")
    result = run(
        "predict",
        str(trained_model),
        str(good.path),
        str(bad.path),
        "--json",
        "--overlay",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["verdict"] for r in records] == ["OK", "NG"]
    ng = records[1]
    assert ng["defects"] and set(ng["defects"][0]) == {"class", "score", "box", "area_px"}
    assert set(ng["timings_ms"]) == {"decode", "preprocess", "model", "postprocess", "total"}
    assert ng["model"]["version"] == trained_model.name
    overlay = cv2.imread(str(tmp_path / f"{bad.path.stem}_overlay.png"))
    assert overlay is not None and overlay.shape[:2] == (256, 256)


def test_predict_reports_a_corrupt_image_and_still_inspects_the_rest(
    trained_model: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "truncated.png"
    good = next(s for s in open_dataset(synthetic_data).test if not s.is_defective)
    corrupt.write_bytes(good.path.read_bytes()[:200])
    result = run("predict", str(trained_model), str(corrupt), str(good.path))
    assert result.returncode == 2
    assert "truncated.png" in result.stderr
    assert str(good.path) in result.stdout


def test_evaluate_json(trained_model: Path, synthetic_data: Path) -> None:
    result = run("evaluate", str(trained_model), "--data", str(synthetic_data), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["image_auroc"] >= 0.9
    assert metrics["counts"]["good"] == 14
    # The model's training images are still there, so the test images are compared with them.
    assert 0.0 < metrics["per_type"]["good"]["nearest_training_similarity"] < 0.99


def test_bad_recipe_names_the_field(tmp_path: Path, synthetic_data: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\nimage_size: 100\n")
    result = run("train", str(recipe), "--data", str(synthetic_data), "--out", str(tmp_path))
    assert result.returncode == 2
    assert "image_size" in result.stderr and "multiple of 32" in result.stderr


def test_missing_data_folder_is_usage_error(small_recipe: Path, tmp_path: Path) -> None:
    result = run(
        "train", str(small_recipe), "--data", str(tmp_path / "nope"), "--out", str(tmp_path)
    )
    assert result.returncode == 2
    assert "nope" in result.stderr
    assert not (tmp_path / "test-parts").exists() or not any((tmp_path / "test-parts").iterdir())


def test_not_a_model_folder(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((8, 8), np.uint8))
    result = run("predict", str(tmp_path), str(image))
    assert result.returncode == 2
    assert "model.json" in result.stderr
