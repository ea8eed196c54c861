"""Shared fixtures: a synthetic parts data set and one small model trained on it per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from defectlens.datasets.synthetic import generate_dataset

SMALL_RECIPE = {
    "name": "test-parts",
    "image_size": 256,
    "backbone": {"stages": [2, 3], "neighbourhood": 3, "feature_dim": 64},
    "coreset": {"ratio": 0.05, "max_size": 1000, "pool_fraction": 0.5},
    "map_sigma": 4,
    "threshold": {"policy": "best_f1", "validation_fraction": 0.4, "good_holdout": 0.15},
    "batch_size": 4,
}


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "parts"
    return generate_dataset(out, train_good=40, test_good=14, test_defect_per_kind=5, seed=3)


@pytest.fixture(scope="session")
def small_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL_RECIPE))
    return path


@pytest.fixture(scope="session")
def trained_model(
    synthetic_data: Path, small_recipe: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A model version folder, trained once through the same function the CLI calls."""
    from defectlens.train.pipeline import train_model
    from defectlens.train.recipe import load_recipe

    out = tmp_path_factory.mktemp("models")
    return train_model(load_recipe(small_recipe), synthetic_data, out)


@pytest.fixture
def model_copy(trained_model: Path, tmp_path: Path) -> Path:
    """A private copy of the trained version, for tests that damage it."""
    return Path(shutil.copytree(trained_model, tmp_path / trained_model.name))


SMALL_DETECTOR = {
    "name": "test-boards",
    "family": "detection",
    "image_size": 128,
    "crop": 64,
    "width": 16,
    "top_k": 20,
    "batch_size": 8,
    "evaluation_fraction": 0.25,
    "validation_fraction": 0.2,
    "schedule": {"epochs": 2, "max_minutes": 5},
}


@pytest.fixture(scope="session")
def synthetic_boards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic PCB-like boards with boxes (COCO file), one golden template for all."""
    from defectlens.datasets.synthetic_pcb import write_pcb_dataset

    return write_pcb_dataset(tmp_path_factory.mktemp("boards") / "boards", 24, size=128, seed=1)


@pytest.fixture(scope="session")
def trained_detector(synthetic_boards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector version folder (two short epochs: the contract, not the accuracy), trained
    once through the function `defectlens train` calls."""
    from defectlens.train.detector_pipeline import train_detector
    from defectlens.train.detector_recipe import DetectorRecipe

    recipe = DetectorRecipe.model_validate(SMALL_DETECTOR)
    return train_detector(recipe, synthetic_boards, tmp_path_factory.mktemp("detectors"))
