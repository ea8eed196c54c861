"""`defectlens evaluate` on the folders a QA engineer brings: a new batch in the MVTec layout
without train/, the training folder itself (its training images left out), bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import run

from defectlens.modelcard import ModelCard


@pytest.fixture
def batch(synthetic_data: Path, tmp_path: Path) -> Path:
    """A new batch of parts with masks: test/ and ground_truth/, no train/."""
    root = tmp_path / "batch"
    for part in ("test", "ground_truth"):
        shutil.copytree(synthetic_data / part, root / part)
    return root


@pytest.fixture(scope="module")
def class_folders(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model's own training data as class folders: train/good and test/good in good/."""
    root = tmp_path_factory.mktemp("folders") / "parts"
    for source in sorted(synthetic_data.glob("t*/*/*.png")):
        target = root / source.parent.name / f"{source.parent.parent.name}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return root


def test_a_test_only_mvtec_folder_is_evaluated_with_its_masks(
    trained_model: Path, batch: Path
) -> None:
    result = run("evaluate", str(trained_model), "--data", str(batch), "--json")
    assert result.code == 0, result.err
    metrics = json.loads(result.out)
    assert metrics["counts"] == {"good": 14, "defective": 25}
    assert metrics["data"]["layout"] == "mvtec"
    assert metrics["pixel_auroc"] > 0.8  # the masks of ground_truth/ were read
    assert "data: MVTec layout, test only" in result.err


def test_evaluate_output_is_a_table_with_units(trained_model: Path, batch: Path) -> None:
    result = run("evaluate", str(trained_model), "--data", str(batch))
    assert result.code == 0, result.err
    assert "{" not in result.out and "}" not in result.out
    lines = result.out.splitlines()
    escape = next(line for line in lines if line.strip().startswith("escape rate"))
    assert escape.split()[3] == "%" and "of 25 defective parts passed as good" in escape
    assert any(line.split()[:2] == ["image", "AUROC"] for line in lines)
    assert "\r" not in result.out and "evaluate:" not in result.err  # no bars in a log


def test_the_training_folder_is_evaluated_without_the_images_fitted_on(
    trained_model: Path, class_folders: Path
) -> None:
    fitted = ModelCard.read(trained_model / "model.json").data["splits"]["fit_good"]
    total_good = len(list((class_folders / "good").iterdir()))

    result = run("evaluate", str(trained_model), "--data", str(class_folders), "--json")

    assert result.code == 0, result.err
    metrics = json.loads(result.out)
    assert metrics["data"]["training_images_left_out"] == fitted
    assert metrics["counts"]["good"] == total_good - fitted
    assert f"warning: {fitted} of the {total_good + 25} images are images the model was fitted" in (
        result.err
    )
    assert "--include-training-images" in result.err
    # the training images are found by the record in the version, whatever the layout
    assert 0.0 < metrics["per_type"]["good"]["nearest_training_similarity"] < 0.99

    kept = run(
        "evaluate",
        str(trained_model),
        "--data",
        str(class_folders),
        "--json",
        "--include-training-images",
    )
    assert kept.code == 0, kept.err
    assert json.loads(kept.out)["counts"]["good"] == total_good
    assert "they are kept (--include-training-images)" in kept.err


def test_every_bad_file_of_an_evaluation_set_is_named(trained_model: Path, batch: Path) -> None:
    bad = [batch / "test" / "good" / "000.png", batch / "test" / "crack" / "001.png"]
    for path in bad:
        path.write_bytes(path.read_bytes()[:100])
    result = run("evaluate", str(trained_model), "--data", str(batch))
    assert result.code == 2
    assert "2 files cannot be used" in result.err
    assert "test/good/000.png: " in result.err and "test/crack/001.png: " in result.err

    skipped = run("evaluate", str(trained_model), "--data", str(batch), "--json", "--skip-bad")
    assert skipped.code == 0, skipped.err
    metrics = json.loads(skipped.out)
    assert [entry["path"] for entry in metrics["data"]["skipped"]] == [
        "test/crack/001.png",
        "test/good/000.png",
    ]
    assert metrics["counts"] == {"good": 13, "defective": 24}
