"""Fitting's progress bars (features, coreset, calibrate) show on a terminal and stay out of a
log file: the same fitting run once with stderr a terminal, once with it a file."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from defectlens.train.fit import build_network, fit_memory_bank, raw_scores
from defectlens.train.recipe import load_recipe

BARS = ("features", "coreset", "calibrate")


class Terminal(io.StringIO):
    """What stderr is when a person runs the command in a terminal, as far as tqdm asks."""

    def isatty(self) -> bool:
        return True


def fit_and_score(recipe_path: Path) -> None:
    recipe = load_recipe(recipe_path)
    images = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 1), dtype=np.uint8)
    network = build_network(recipe, channels=1)
    fit_memory_bank(network, images, recipe)
    raw_scores(network, images, recipe.batch_size, "calibrate")


@pytest.fixture(scope="module")
def tiny_recipe(small_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = yaml.safe_load(small_recipe.read_text())
    raw.update(image_size=64)
    raw["backbone"]["context_neighbourhood"] = 3  # the feature map is 4x4
    path = tmp_path_factory.mktemp("recipes") / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("stderr", "shown"), [(Terminal(), True), (io.StringIO(), False)], ids=["terminal", "log file"]
)
def test_progress_bars_only_on_a_terminal(
    tiny_recipe: Path, monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO, shown: bool
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr)
    fit_and_score(tiny_recipe)
    written = stderr.getvalue()
    for bar in BARS:
        assert (f"{bar}:" in written) == shown, (bar, written)
    if not shown:
        assert "\r" not in written and "it/s" not in written
