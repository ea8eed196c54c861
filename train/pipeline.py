"""One training job: recipe + data -> a new, immutable model version folder.

Everything is written into a hidden temporary folder beside the destination and renamed
into place at the very end, so an interrupted run leaves no half model version behind.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch

import defectlens
from defectlens.datasets.check import check_dataset, in_parallel
from defectlens.datasets.images import read_image, to_model_input
from defectlens.datasets.layout import Sample, open_dataset
from defectlens.errors import DataError, RecipeError
from defectlens.inference.engine import Engine
from defectlens.modelcard import (
    DOCUMENTED_THRESHOLD,
    Calibration,
    InputSpec,
    ModelCard,
    OutputSpec,
    file_sha256,
)
from defectlens.train import thresholds
from defectlens.train.evaluate import evaluate
from defectlens.train.export import OPSET, check_parity, export_onnx
from defectlens.train.fit import build_network, fit_memory_bank, raw_scores
from defectlens.train.recipe import Recipe
from defectlens.train.report import write_report
from defectlens.train.similarity import thumbnails
from defectlens.train.splits import (
    TRAINING_IMAGES_FILE,
    Splits,
    plan_splits,
    without_copies_of_fit,
    write_training_images,
)

log = logging.getLogger(__name__)
PARITY_IMAGES = 4


def input_spec(recipe: Recipe, samples: Sequence[Sample]) -> InputSpec:
    """The model's input contract; `color: auto` looks at the first training images."""
    color = recipe.color
    if color == "auto":
        probe = [read_image(s.path) for s in samples[:8]]
        color = "rgb" if any(image.ndim == 3 for image in probe) else "gray"
    height, width = recipe.image_size
    channels: Literal[1, 3] = 3 if color == "rgb" else 1
    return InputSpec(
        height=height, width=width, channels=channels, color=color, resize=recipe.resize
    )


def load_images(samples: Sequence[Sample], spec: InputSpec, desc: str) -> np.ndarray:
    """The samples decoded and brought to the model's input, a thread a core."""
    images = in_parallel(lambda s: to_model_input(read_image(s.path), spec), samples, desc)
    return (
        np.stack(images)
        if images
        else np.zeros((0, spec.height, spec.width, spec.channels), np.uint8)
    )


def calibrate(recipe: Recipe, raw: np.ndarray, samples: Sequence[Sample]) -> Calibration:
    labels = np.array([s.is_defective for s in samples], dtype=bool)
    if not (~labels).any():
        raise DataError(
            "no good images left to calibrate on; add good images or lower "
            "threshold.good_holdout / validation_fraction"
        )
    # Without defective images, best_f1 / zero_escape fall back to target_frr (a warning).
    choice = thresholds.choose_threshold(
        recipe.threshold.policy, labels, raw, recipe.threshold.target
    )
    for warning in choice.warnings:
        log.warning("threshold calibration: %s", warning)
    scale = thresholds.sigmoid_scale(choice.raw_threshold, raw[~labels])
    return Calibration(
        policy=choice.policy,
        target=choice.target,
        raw_threshold=float(choice.raw_threshold),
        scale=float(scale),
        validation={"good": int((~labels).sum()), "defective": int(labels.sum())},
        warnings=list(choice.warnings),
    )


def software_versions() -> dict[str, str]:
    return {
        "defectlens": defectlens.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "opset": str(OPSET),
        "python": platform.python_version(),
    }


class StagedVersion:
    """A model version being written: its files go in `folder` (hidden, beside the
    versions), and `name(onnx_path)` gives the version its name from the graph's hash."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.version: str | None = None

    def name(self, onnx_path: Path) -> tuple[str, datetime, str]:
        """(version, created, sha256): `<UTC time>-<first 6 hex of the graph's sha256>`."""
        digest = file_sha256(onnx_path)
        created = datetime.now(UTC).replace(microsecond=0)
        self.version = f"{created:%Y%m%dT%H%M%SZ}-{digest[:6]}"
        return self.version, created, digest


@contextmanager
def staged_version(parent: Path) -> Iterator[StagedVersion]:
    """A version folder written in a staging folder under `parent` and renamed to
    `parent/<version>` when the block ends, so a version appears whole or not at all: any
    error (or an interrupt) removes the staging folder. `RecipeError` if the name is taken."""
    parent.mkdir(parents=True, exist_ok=True)
    staged = StagedVersion(Path(tempfile.mkdtemp(prefix=".staging-", dir=parent)))
    try:
        yield staged
        if staged.version is None:
            raise RuntimeError("a staged model version was never named")
        final = parent / staged.version
        if final.exists():
            raise RecipeError(f"{final}: a model version of that name already exists")
        staged.folder.rename(final)
        staged.folder = final
    except BaseException:
        shutil.rmtree(staged.folder, ignore_errors=True)
        raise


def train_model(
    recipe: Recipe,
    data: Path | None,
    out: Path,
    *,
    skip_bad: bool = False,
    say: Callable[[str], None] = log.info,
) -> Path:
    """Check the data, fit, calibrate, export, check parity and evaluate; returns the new
    version folder. Every image is checked before anything is fitted: bad files stop the
    run, all named at once, unless `skip_bad` (then they are left out and recorded in
    model.json's `data.skipped`). `say` gets a line a stage, and the data and split used."""
    data = data or recipe.data
    if data is None:
        raise RecipeError("no data: give --data PATH or set `data:` in the recipe")
    torch.manual_seed(recipe.seed)
    dataset = open_dataset(Path(data))
    checked = check_dataset(dataset, skip_bad=skip_bad, say=say)
    dataset = checked.dataset
    splits: Splits = plan_splits(
        dataset,
        validation_fraction=recipe.threshold.validation_fraction,
        good_holdout=recipe.threshold.good_holdout,
        seed=recipe.seed,
    )
    splits, copies = without_copies_of_fit(splits, checked.sha256)
    say(f"data: {dataset.description}, {dataset.root}")
    for note in dataset.notes:
        say(f"note: {note}")
    say(f"split: {splits.rule}")
    for line in splits.table():
        say(line)
    if copies:
        say(
            f"note: {copies} held-out images are byte-for-byte copies of fit images and are "
            "left out of calibration and evaluation"
        )

    started = time.perf_counter()
    spec = input_spec(recipe, splits.fit)
    say(f"fitting the model on {len(splits.fit)} good images")
    fit_images = load_images(splits.fit, spec, "load fit")
    network = build_network(recipe, spec.channels)
    sizes = fit_memory_bank(network, fit_images, recipe)
    fit_seconds = time.perf_counter() - started

    say(f"calibrating the threshold on {len(splits.calibration)} images")
    calibration_images = load_images(splits.calibration, spec, "load calibration")
    raw = raw_scores(network, calibration_images, recipe.batch_size, "calibrate")
    calibration = calibrate(recipe, raw, splits.calibration)
    network.set_normalisation(calibration.raw_threshold, calibration.scale)
    good = np.array([not s.is_defective for s in splits.calibration], dtype=bool)
    good_quantiles = thresholds.good_score_quantiles(
        thresholds.normalise(raw[good], calibration.raw_threshold, calibration.scale)
    )

    with staged_version(Path(out) / recipe.name) as staged:
        staging = staged.folder
        say("exporting to ONNX and checking it against PyTorch")
        onnx_path = staging / "model.onnx"
        export_onnx(network, onnx_path, spec.channels)
        parity = check_parity(
            network,
            onnx_path,
            calibration_images[:PARITY_IMAGES]
            if len(calibration_images)
            else fit_images[:PARITY_IMAGES],
        )
        version, created, digest = staged.name(onnx_path)
        card = ModelCard(
            name=recipe.name,
            version=version,
            family="anomaly",
            created=created,
            sha256=digest,
            input=spec,
            outputs=[
                OutputSpec(name="score", shape=["N"]),
                OutputSpec(name="anomaly_map", shape=["N", spec.height, spec.width]),
            ],
            threshold=DOCUMENTED_THRESHOLD,
            calibration=calibration,
            classes=["anomaly"],
            parity=parity,
            data={
                "path": str(Path(data).resolve()),
                "layout": dataset.layout,
                "counts": dataset.counts(),
                "splits": splits.counts(),
                "split_rule": splits.rule,
                "memory_bank": sizes,
                "training_images": TRAINING_IMAGES_FILE,
                "skipped": checked.skipped(),
                "notes": list(dataset.notes),
            },
            software=software_versions(),
        )
        card.write(staging / "model.json")
        (staging / "recipe.yaml").write_text(
            recipe.model_copy(update={"data": Path(data).resolve()}).to_yaml(), encoding="utf-8"
        )
        write_training_images(staging, splits, checked.sha256, dataset.root)
        say(f"evaluating on {len(splits.evaluation)} held-out images")
        report_metrics = _evaluate_into(staging, card, splits.evaluation, thumbnails(fit_images))
        report_metrics["fit_seconds"] = round(fit_seconds, 2)
        # What production scores are compared with (reports: model health, score drift).
        report_metrics["good_score_quantiles"] = good_quantiles
        card = card.model_copy(update={"metrics": report_metrics})
        card.write(staging / "model.json")
    final = staged.folder
    log.info("trained %s in %.1f s", final, time.perf_counter() - started)
    return final


def _evaluate_into(
    folder: Path, card: ModelCard, samples: Sequence[Sample], training: np.ndarray
) -> dict[str, Any]:
    """Evaluate the exported graph on held-out images and write report/ into `folder`;
    `training`: thumbnails of the fit images (how close the held-out images are to them)."""
    engine = Engine(folder, threads=2)
    report_dir = folder / "report"
    if samples:
        result, plots = evaluate(engine, samples, report_dir, training)
    else:
        result, plots = {"note": "no held-out images to evaluate on"}, {}
    summary = {
        "name": card.name,
        "version": card.version,
        "family": card.family,
        "created": card.created.isoformat(),
        "data": card.data.get("path", ""),
        "splits": card.data.get("splits", {}),
        "split rule": card.data.get("split_rule", ""),
        "skipped files": "; ".join(
            f"{bad['path']}: {bad['reason']}" for bad in card.data.get("skipped", [])
        )
        or "none",
        "parity (max abs diff)": f"{max(card.parity.get('max_abs_score', 0), card.parity.get('max_abs_map', 0)):.2e}",  # noqa: E501
    }
    write_report(report_dir, result, plots, summary, calibration=card.calibration)
    return result
