"""`defectlens train` as a QA engineer meets it: a folder of good images with a few corrupt
files among them, every one named before any fitting, or left out with --skip-bad."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from cli_run import Run, run

from defectlens.datasets.synthetic import generate_dataset
from defectlens.modelcard import ModelCard
from defectlens.train import pipeline
from defectlens.train.splits import TRAINING_IMAGES_FILE, read_training_images

CORRUPT = ("017-truncated.png", "018-empty.png", "019-text.png")


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat folder of 20 good 64 px images, three of them corrupt."""
    tmp = tmp_path_factory.mktemp("cells")
    parts = generate_dataset(
        tmp / "parts", train_good=20, test_good=0, test_defect_per_kind=0, size=64
    )
    folder = tmp / "cells"
    folder.mkdir()
    for i, source in enumerate(sorted((parts / "train" / "good").iterdir())):
        shutil.copy(source, folder / f"{i:03d}.png")
    for name in CORRUPT:
        (folder / name[:3]).with_suffix(".png").unlink()
    whole = (folder / "000.png").read_bytes()
    (folder / CORRUPT[0]).write_bytes(whole[: len(whole) // 2])
    (folder / CORRUPT[1]).write_bytes(b"")
    (folder / CORRUPT[2]).write_text("camera 2 was off")
    return folder


@pytest.fixture(scope="module")
def tiny_recipe(small_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's small recipe at 64 px, its threshold set on good parts alone."""
    raw = yaml.safe_load(small_recipe.read_text())
    raw.update(name="cells", image_size=64)
    raw["backbone"]["context_neighbourhood"] = 3  # the feature map is 4x4
    raw["threshold"] = {"policy": "target_frr", "target": 0.2, "good_holdout": 0.15}
    path = tmp_path_factory.mktemp("recipes") / "cells.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def skipped_run(cells: Path, tiny_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("models")
    return run("train", str(tiny_recipe), "--data", str(cells), "--out", str(out), "--skip-bad")


def test_every_corrupt_file_is_named_before_any_fitting(
    cells: Path, tiny_recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fitting(*args: object, **kwargs: object) -> None:
        raise AssertionError("fitting started before the data was checked")

    monkeypatch.setattr(pipeline, "build_network", no_fitting)
    result = run("train", str(tiny_recipe), "--data", str(cells), "--out", str(tmp_path))
    assert result.code == 2, result.err
    error = result.err[result.err.index("defectlens: error:") :]
    assert "3 files cannot be used" in error and "--skip-bad" in error
    for name in CORRUPT:
        assert f"  {name}: " in error
    assert not (tmp_path / "cells").exists() or not any((tmp_path / "cells").iterdir())


def test_a_flat_folder_of_good_images_trains(skipped_run: Run) -> None:
    assert skipped_run.code == 0, skipped_run.err
    version = Path(skipped_run.out.strip().splitlines()[-1])
    card = ModelCard.read(version / "model.json")
    assert card.data["layout"] == "flat"
    # 17 good images: 80 % (14) are training images, 15 % of those (2) calibrate, 12 fit;
    # of the other 3, 40 % (1) calibrate and 2 evaluate
    assert card.data["splits"] == {
        "fit_good": 12,
        "calibration_good": 3,
        "calibration_defective": 0,
        "evaluation_good": 2,
        "evaluation_defective": 0,
    }
    assert "split: a folder of good images: 80 % of the good images are training images" in (
        skipped_run.out
    )
    rows = [line.split()[:4] for line in skipped_run.out.splitlines()]
    for row in (
        ["fit", "12", "12", "0"],
        ["calibrate", "3", "3", "0"],
        ["evaluate", "2", "2", "0"],
    ):
        assert row in rows
    record = read_training_images(version)
    assert record is not None and len(record.fit) == 12 and len(record.calibration) == 3
    assert (version / TRAINING_IMAGES_FILE).is_file()


def test_skip_bad_records_and_prints_the_files_left_out(skipped_run: Run) -> None:
    assert skipped_run.code == 0, skipped_run.err
    version = Path(skipped_run.out.strip().splitlines()[-1])
    skipped = json.loads((version / "model.json").read_text())["data"]["skipped"]
    assert [entry["path"] for entry in skipped] == list(CORRUPT)
    assert "empty" in skipped[1]["reason"]
    assert "left out 3 bad files (--skip-bad):" in skipped_run.out
    for name in CORRUPT:
        assert f"  {name}: " in skipped_run.out
    report = (version / "report" / "index.html").read_text()
    assert all(name in report for name in CORRUPT)


def test_train_output_is_tables_with_units_not_python_reprs(skipped_run: Run) -> None:
    assert skipped_run.code == 0, skipped_run.err
    assert "{" not in skipped_run.out and "}" not in skipped_run.out
    assert "'" not in skipped_run.out.replace("--skip-bad", "")
    lines = skipped_run.out.splitlines()
    fit_time = next(line for line in lines if line.strip().startswith("fit time"))
    assert fit_time.rstrip().endswith(" s")
    false_rejects = next(line for line in lines if line.strip().startswith("false-reject rate"))
    assert " %" in false_rejects and "good parts rejected" in false_rejects
    # not a terminal: one line a stage and no progress bars (train/fit.py's own bars,
    # "features", "coreset", "calibrate", are not this module's to switch)
    assert "\r" not in skipped_run.out
    for bar in ("check:", "load fit:", "load calibration:", "evaluate:"):
        assert bar not in skipped_run.err
