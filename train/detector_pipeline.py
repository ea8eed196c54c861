"""The detector's train job: split, fit (resumable), per-class thresholds, ONNX export with
parity, evaluation and report; the version folder is written to a temporary folder, then
renamed. Training checkpoints live in `<out>/<name>/.training/` until the version exists."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectlens.datasets.detection import (
    DetectionDataset,
    DetectionSample,
    open_detection_dataset,
    seeded_split,
)
from defectlens.errors import DataError, RecipeError
from defectlens.inference.engine import REFERENCE_FILE, Engine
from defectlens.modelcard import (
    DOCUMENTED_THRESHOLD,
    Calibration,
    InputSpec,
    ModelCard,
    OutputSpec,
)
from defectlens.models.detector import DefectDetector
from defectlens.train.detector_evaluate import evaluate_detector
from defectlens.train.detector_export import check_detector_parity, export_detector
from defectlens.train.detector_fit import Pair, detect, fit_detector, load_pair
from defectlens.train.detector_metrics import Detections, best_f1_thresholds
from defectlens.train.detector_recipe import DetectorRecipe
from defectlens.train.pipeline import software_versions, staged_version
from defectlens.train.report import write_report

log = logging.getLogger(__name__)
CHECKPOINTS = ".training"
PARITY_IMAGES = 2


def uses_reference(recipe: DetectorRecipe, dataset: DetectionDataset) -> bool:
    if recipe.reference == "no":
        return False
    if recipe.reference == "yes" and not dataset.has_references:
        missing = next(s.image for s in dataset.samples if s.reference is None)
        raise DataError(
            f"{missing}: has no reference image, and the recipe says reference: yes; give "
            "every image one (COCO: a 'reference' field) or set reference: auto"
        )
    return dataset.has_references


def plan(
    dataset: DetectionDataset, recipe: DetectorRecipe
) -> tuple[list[DetectionSample], list[DetectionSample], list[DetectionSample]]:
    """(fit, validation, evaluation) samples: the data set's own splits when every image
    has one (a dataset version's train / val / test; an empty val is carved from train);
    else seeded, `evaluation_fraction` of the data held out for the report, then
    `validation_fraction` of the rest for early stopping and the thresholds."""
    if dataset.samples and all(s.split is not None for s in dataset.samples):
        train = [s for s in dataset.samples if s.split == "train"]
        validation = [s for s in dataset.samples if s.split == "val"]
        if not validation:
            picked, kept = seeded_split(len(train), recipe.validation_fraction, recipe.seed)
            train, validation = [train[i] for i in kept], [train[i] for i in picked]
        return train, validation, [s for s in dataset.samples if s.split == "test"]
    held_out, rest = seeded_split(len(dataset.samples), recipe.evaluation_fraction, recipe.seed)
    validated, fit = seeded_split(len(rest), recipe.validation_fraction, recipe.seed)
    pick = dataset.samples
    return (
        [pick[rest[i]] for i in fit],
        [pick[rest[i]] for i in validated],
        [pick[i] for i in held_out],
    )


def load_pairs(
    samples: Sequence[DetectionSample], reference: bool, hw: tuple[int, int]
) -> list[Pair]:
    return [load_pair(sample, reference, hw) for sample in samples]


def fixed_reference(samples: Sequence[DetectionSample]) -> Path | None:
    """The one reference every sample shares (a line's golden part), if so."""
    paths = {s.reference for s in samples}
    return next(iter(paths)) if len(paths) == 1 and None not in paths else None


def train_detector(
    recipe: DetectorRecipe,
    data: Path | None,
    out: Path,
    *,
    resume: bool = False,
    say: Callable[[str], None] = log.info,
) -> Path:
    """Train, calibrate the per-class thresholds, export, check parity, evaluate; returns
    the new version folder."""
    data = data or recipe.data
    if data is None:
        raise RecipeError("no data: give --data PATH or set `data:` in the recipe")
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    dataset = open_detection_dataset(Path(data))
    reference = uses_reference(recipe, dataset)
    fit, validation, evaluation = plan(dataset, recipe)
    if not fit or not validation:
        raise DataError(
            f"{data}: {len(dataset.samples)} images leave {len(fit)} to fit and "
            f"{len(validation)} to validate on; a detector needs both (add images or lower "
            "evaluation_fraction)"
        )
    say(f"data: {dataset.layout}, {dataset.root}, classes {', '.join(dataset.classes)}")
    say(
        f"split (seed {recipe.seed}): {len(fit)} fit, {len(validation)} validation, "
        f"{len(evaluation)} evaluation; reference images: {'yes' if reference else 'no'}"
    )
    hw = recipe.image_size
    fit_pairs = load_pairs(fit, reference, hw)
    validation_pairs = load_pairs(validation, reference, hw)
    network = DefectDetector(
        len(dataset.classes),
        reference=reference,
        width=recipe.width,
        top_k=recipe.top_k,
        frozen_stem=recipe.frozen_stem,
    )
    parent = Path(out) / recipe.name
    checkpoints = parent / CHECKPOINTS
    if not resume and checkpoints.exists():
        shutil.rmtree(checkpoints)
    fit_started = time.perf_counter()
    progress = fit_detector(
        network, fit_pairs, validation_pairs, recipe, checkpoints, resume=resume, say=say
    )
    fit_wall = time.perf_counter() - fit_started
    found = detect(network, validation_pairs)
    truth = [Detections.truth(p.boxes, p.labels) for p in validation_pairs]
    thresholds = best_f1_thresholds(truth, found, len(dataset.classes), recipe.min_threshold)
    say(
        "thresholds: "
        + ", ".join(f"{c} {t:.2f}" for c, t in zip(dataset.classes, thresholds, strict=True))
    )

    with staged_version(parent) as staged:
        staging = staged.folder
        say("exporting to ONNX and checking it against PyTorch")
        onnx_path = staging / "model.onnx"
        export_detector(network, onnx_path, hw)
        sample = validation_pairs[:PARITY_IMAGES]
        parity = check_detector_parity(
            network,
            onnx_path,
            np.stack([p.image for p in sample])[..., None],
            np.stack([p.reference for p in sample])[..., None] if reference else None,  # type: ignore[misc]
        )
        golden = fixed_reference(dataset.samples) if reference else None
        if golden is not None:
            shutil.copyfile(golden, staging / REFERENCE_FILE)
        version, created, digest = staged.name(onnx_path)
        k = recipe.top_k
        card = ModelCard(
            name=recipe.name,
            version=version,
            family="detection",
            created=created,
            sha256=digest,
            input=InputSpec(height=hw[0], width=hw[1], channels=1, color="gray"),
            outputs=[
                OutputSpec(name="boxes", shape=["N", k, 4]),
                OutputSpec(name="scores", shape=["N", k]),
                OutputSpec(name="labels", shape=["N", k]),
            ],
            threshold=DOCUMENTED_THRESHOLD,
            calibration=Calibration(
                policy="best_f1",
                raw_threshold=DOCUMENTED_THRESHOLD,
                scale=1.0,
                validation={"images": len(validation), "boxes": sum(len(t.labels) for t in truth)},
            ),
            class_thresholds={
                c: round(t, 4) for c, t in zip(dataset.classes, thresholds, strict=True)
            },
            classes=list(dataset.classes),
            parity=parity,
            data={
                "path": str(Path(data).resolve()),
                "layout": dataset.layout,
                "counts": dataset.counts(),
                "splits": {
                    "fit": len(fit),
                    "validation": len(validation),
                    "evaluation": len(evaluation),
                },
                "split_rule": "the data set's own train / val / test"
                if all(s.split is not None for s in dataset.samples)
                else f"seeded ({recipe.seed}): evaluation {recipe.evaluation_fraction:.0%}, "
                f"validation {recipe.validation_fraction:.0%} of the rest",
                "reference": "fixed"
                if golden is not None
                else ("per part" if reference else "none"),
            },
            software=software_versions(),
        )
        card.write(staging / "model.json")
        (staging / "recipe.yaml").write_text(
            recipe.model_copy(update={"data": Path(data).resolve()}).to_yaml(), encoding="utf-8"
        )
        training = {
            "epochs": progress.epoch,
            "train_minutes": round(progress.elapsed_s / 60, 2),
            "clock": recipe.schedule.clock,
            "wall_minutes_this_run": round(fit_wall / 60, 2),
            "stopped": progress.stopped,
            "best_epoch": progress.best_epoch,
            "validation_map50": round(progress.best_map50, 4),
        }
        say(f"evaluating on {len(evaluation)} held-out images")
        metrics = _evaluate_into(staging, card, evaluation, training)
        card = card.model_copy(update={"metrics": metrics})
        card.write(staging / "model.json")
    final = staged.folder
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("trained %s in %.1f s", final, time.perf_counter() - started)
    return final


def _evaluate_into(
    folder: Path, card: ModelCard, samples: Sequence[DetectionSample], training: dict[str, Any]
) -> dict[str, Any]:
    report_dir = folder / "report"
    if samples:
        metrics, plots = evaluate_detector(Engine(folder, threads=2), samples, report_dir)
    else:
        metrics, plots = {"note": "no held-out images to evaluate on"}, {}
    metrics["training"] = training
    summary = {
        "name": card.name,
        "version": card.version,
        "family": card.family,
        "created": card.created.isoformat(),
        "data": card.data.get("path", ""),
        "splits": card.data.get("splits", {}),
        "split rule": card.data.get("split_rule", ""),
        "classes and thresholds": ", ".join(f"{c} {t}" for c, t in card.class_thresholds.items()),
        "parity (max abs diff)": f"score {card.parity.get('max_abs_score', 0):.2e}, "
        f"box {card.parity.get('max_abs_box_px', 0):.2f} px",
    }
    write_report(report_dir, metrics, plots, summary)
    return metrics


def train_detector_command(recipe: DetectorRecipe, data: str | None, out: str, resume: bool) -> int:
    """`defectlens train` for a detector recipe: stage lines, the held-out figures, the
    report, and the version folder last."""
    from defectlens.train.detector_evaluate import detector_table

    version_dir = train_detector(
        recipe,
        Path(data) if data else None,
        Path(out),
        resume=resume,
        say=partial(print, flush=True),
    )
    metrics = ModelCard.read(version_dir / "model.json").metrics
    print(f"\nheld-out evaluation of {version_dir.name}")
    if "map50" in metrics:
        print("\n".join(detector_table(metrics)))
    else:
        print(f"  {metrics.get('note', 'no held-out images to evaluate on')}")
    print(f"report: {version_dir / 'report' / 'index.html'}")
    print(version_dir)
    return 0
