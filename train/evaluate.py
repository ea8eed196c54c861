"""Evaluating a model version as it ships: the ONNX graph through the serving engine.

Image metrics come from the normalised scores; pixel metrics compare the model-resolution
anomaly map with the ground-truth mask brought to the same geometry (defect = mask > 127).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from defectlens.datasets.check import BadFile, check_dataset
from defectlens.datasets.images import read_image, read_mask, to_model_input
from defectlens.datasets.layout import GOOD, Dataset, Sample, open_dataset
from defectlens.errors import DefectLensError, InputError
from defectlens.inference.engine import Engine
from defectlens.train import metrics as m
from defectlens.train.plots import (
    InspectedPart,
    plot_roc,
    plot_score_histograms,
    plot_wrong_verdicts,
)
from defectlens.train.report import write_report
from defectlens.train.similarity import nearest_similarity, thumbnails
from defectlens.train.splits import TrainingImages, read_training_images

log = logging.getLogger(__name__)
WORST_SHOWN = 8
SELF_SIMILARITY_QUERIES = 512  # training images compared with the rest of the training set


@dataclass
class Scored:
    """One evaluated image, kept at model resolution for metrics and plots."""

    sample: Sample
    score: float
    image: np.ndarray
    anomaly_map: np.ndarray
    mask: np.ndarray | None


def score_samples(
    engine: Engine, samples: Sequence[Sample], desc: str = "evaluate"
) -> list[Scored]:
    spec = engine.card.input
    mask_spec = spec.model_copy(update={"channels": 1, "color": "gray"})
    scored: list[Scored] = []
    for sample in tqdm(samples, desc=desc, unit="img", leave=False, disable=None):
        image = read_image(sample.path)
        prepared = engine.prepare(image)
        score, anomaly_map = engine.run(prepared[np.newaxis])
        mask = None  # a defective image without a mask counts for image metrics only
        if sample.mask_path is not None:
            full = read_mask(sample.mask_path, (image.shape[0], image.shape[1]))
            mask = to_model_input(full.astype(np.uint8) * 255, mask_spec)[..., 0] > 127
        elif not sample.is_defective:
            mask = np.zeros(anomaly_map.shape[1:], dtype=bool)
        scored.append(Scored(sample, float(score[0]), prepared, anomaly_map[0], mask))
    return scored


def training_thumbnails(engine: Engine, samples: Sequence[Sample]) -> np.ndarray:
    """Thumbnails (`train.similarity`) of training images as the model sees them."""
    return thumbnails(
        engine.prepare(read_image(s.path))
        for s in tqdm(samples, desc="training thumbnails", unit="img", leave=False, disable=None)
    )


def compute_metrics(
    scored: Sequence[Scored], threshold: float, training: np.ndarray | None = None
) -> dict[str, Any]:
    """Image, pixel and per-type figures; with `training` (thumbnails of the training
    images), also how close the evaluation images are to them (`_nearness`)."""
    labels = np.array([s.sample.is_defective for s in scored], dtype=bool)
    scores = np.array([s.score for s in scored], dtype=np.float64)
    result: dict[str, Any] = {
        "threshold": threshold,
        "counts": {"good": int((~labels).sum()), "defective": int(labels.sum())},
    }
    result.update(m.confusion_at(labels, scores, threshold))
    if labels.any() and (~labels).any():
        result["image_auroc"] = m.auroc(labels, scores)
        result["image_auroc_ci"] = list(m.auroc_ci(labels, scores))
        with_masks = [s for s in scored if s.mask is not None]
        if any(s.sample.is_defective for s in with_masks):
            masks = np.stack([s.mask for s in with_masks if s.mask is not None])
            maps = np.stack([s.anomaly_map for s in with_masks])
            result["pixel_auroc"] = m.pixel_auroc(masks, maps)
            result["aupro"] = m.aupro(masks, maps)
            pixel_types = np.array([s.sample.defect_type for s in with_masks])
            result.update(_against_good_images(pixel_types == GOOD, masks, maps))
    nearest = None
    if training is not None and len(training) >= 2:
        nearest = nearest_similarity(thumbnails(s.image for s in scored), training)
        result.update(_nearness(labels, nearest, training))
    per_type: dict[str, dict[str, Any]] = {}
    for defect_type in sorted({s.sample.defect_type for s in scored}):
        chosen = np.array([s.sample.defect_type == defect_type for s in scored])
        table = m.confusion_at(labels[chosen], scores[chosen], threshold)
        entry: dict[str, Any] = {"count": int(chosen.sum())}
        if defect_type == "good":
            entry["false_reject_rate"] = table["false_reject_rate"]
        else:
            entry["escape_rate"] = table["escape_rate"]
            versus = chosen | ~labels
            if (~labels).any():
                entry["auroc"] = m.auroc(labels[versus], scores[versus])
            if "pixel_auroc" in result:
                entry.update(_type_pixels(defect_type, pixel_types, masks, maps))
        if nearest is not None:
            entry["nearest_training_similarity"] = float(np.median(nearest[chosen]))
        per_type[defect_type] = entry
    result["per_type"] = per_type
    return result


def _type_pixels(
    defect_type: str, types: np.ndarray, masks: np.ndarray, maps: np.ndarray
) -> dict[str, float]:
    """Pixel AUROC of one defect type (its images and the good ones) and its share of all
    defect pixels: the pooled pixel AUROC weighs each type by its pixels, so one type with
    large masks can dominate it."""
    chosen = (types == defect_type) | (types == GOOD)
    pixels = int(np.count_nonzero(masks[types == defect_type]))
    if pixels == 0 or not (types == GOOD).any():
        return {}
    return {
        "pixel_auroc": m.pixel_auroc(masks[chosen], maps[chosen]),
        "defect_pixel_share": pixels / int(np.count_nonzero(masks)),
    }


def _against_good_images(good: np.ndarray, masks: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    """The pooled pixel AUROC taken apart. The defect pixels against the pixels of good
    images alone, and against the defect-free pixels of defective images alone; and those
    defect-free pixels against the good images' (0.5 when the model sees a defective
    image's normal area as it sees a good image; above it, those areas score high: a halo
    around each defect, or the whole image unusual, and ranked against every defect pixel
    they pull the pooled figure down)."""
    in_good = np.broadcast_to(good[:, None, None], masks.shape)
    normal_area = ~masks & ~in_good
    if not good.any() or not normal_area.any():
        return {}
    return {
        "pixel_auroc_vs_good_images": m.pixel_group_auroc(maps, masks, in_good),
        "pixel_auroc_vs_normal_areas": m.pixel_group_auroc(maps, masks, normal_area),
        "normal_area_vs_good_images_auroc": m.pixel_group_auroc(maps, normal_area, in_good),
    }


def _nearness(labels: np.ndarray, nearest: np.ndarray, training: np.ndarray) -> dict[str, float]:
    """How close the evaluation images are to the training images (`train.similarity`):
    the training images' own median similarity to their nearest other training image, and
    how well being far from every training image alone tells the defective evaluation
    images from the good ones. Near 0.5 the good evaluation images are new parts, as the
    defective ones are; near 1 they are re-shots of training parts (or the defects change
    whole images), and the good scores read lower than new parts would."""
    own = np.arange(0, len(training), -(-len(training) // SELF_SIMILARITY_QUERIES))
    result = {
        "training_nearest_similarity": float(
            np.median(nearest_similarity(training[own], training, own))
        )
    }
    if labels.any() and (~labels).any():
        result["defective_farther_from_training_auroc"] = m.auroc(labels, -nearest)
    return result


def write_plots(scored: Sequence[Scored], threshold: float, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.array([s.sample.is_defective for s in scored], dtype=bool)
    scores = np.array([s.score for s in scored])
    plots: dict[str, Path] = {}
    if labels.any() and (~labels).any():
        plots["ROC curve"] = plot_roc(labels, scores, folder / "roc.png", threshold=threshold)
    plots["Scores by defect type"] = plot_score_histograms(
        scores, [s.sample.defect_type for s in scored], threshold, folder / "histogram.png"
    )
    parts = [
        InspectedPart(
            f"{s.sample.defect_type} {s.sample.path.name}",
            s.sample.is_defective,
            s.score,
            s.image[..., 0] if s.image.shape[-1] == 1 else s.image,
            s.anomaly_map,
            s.mask,
        )
        for s in scored
    ]
    # only parts the model got wrong: defective ones it passed, good ones it failed
    plots.update(plot_wrong_verdicts(parts, threshold, folder, WORST_SHOWN))
    return plots


def evaluate(
    engine: Engine,
    samples: Sequence[Sample],
    plots_dir: Path | None = None,
    training: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Figures (and plots into `plots_dir`) of the model on `samples`; `training`:
    thumbnails of the training images, to tell how close the samples are to them."""
    scored = score_samples(engine, samples)
    threshold = engine.card.threshold
    result = compute_metrics(scored, threshold, training)
    plots = write_plots(scored, threshold, plots_dir) if plots_dir is not None else {}
    return result, plots


@dataclass
class FolderEvaluation:
    """`defectlens evaluate` on a folder: the figures, the images they are on, what was
    left out and why."""

    result: dict[str, Any]
    dataset: Dataset
    evaluated: list[Sample]
    fitted_left_out: int = 0
    """Images the model was fitted on (by content) left out of the figures."""
    fitted_kept: int = 0
    """...kept in them (`include_training_images`)."""
    calibration_kept: int = 0
    """Images the threshold was chosen on at training, among those evaluated."""
    skipped: list[BadFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: Path | None = None


def evaluate_folder(
    engine: Engine,
    data: Path,
    *,
    report_dir: Path | None = None,
    include_training_images: bool = False,
    skip_bad: bool = False,
    say: Callable[[str], None] = log.info,
) -> FolderEvaluation:
    """The model on every test image of `data`, in any layout, checked first as training
    checks its data (`skip_bad` as there). Images the model was fitted on are recognised
    by their sha256 (the version's `training_images.txt`) and left out of the figures
    unless `include_training_images`; images it was calibrated on are kept, with a
    warning."""
    dataset = open_dataset(data)
    if not dataset.test:
        raise InputError(
            f"{data}: no test images to evaluate on (train/good/ holds training images); "
            "put labeled images in test/<good|defect type>/"
        )
    checked = check_dataset(dataset, samples=dataset.test, skip_bad=skip_bad, say=say)
    say(f"data: {dataset.description}, {dataset.root}")
    for note in dataset.notes:
        say(f"note: {note}")
    samples = checked.dataset.test
    run = FolderEvaluation({}, checked.dataset, samples, skipped=checked.bad)
    record = read_training_images(engine.model_dir)
    if record is None:
        run.warnings.append(
            "this model version keeps no record of its training images (it was trained by "
            "an older defectlens), so images it was fitted on cannot be recognised and left "
            "out"
        )
    else:
        _leave_out_training_images(run, record, checked.sha256, include_training_images)
    if not run.evaluated:
        raise InputError(
            f"{data}: every image is one the model was fitted on; evaluate on parts it has "
            "not seen, or pass --include-training-images to measure it on these anyway"
        )
    training = _training_thumbnails(engine, record, run.warnings)
    say(f"scoring {len(run.evaluated)} images")
    result, plots = evaluate(engine, run.evaluated, report_dir, training)
    result["data"] = {
        "path": str(dataset.root),
        "layout": dataset.layout,
        "evaluated": len(run.evaluated),
        "training_images_left_out": run.fitted_left_out,
        "training_images_kept": run.fitted_kept,
        "calibration_images": run.calibration_kept,
        "skipped": checked.skipped(),
    }
    if run.warnings:
        result["warnings"] = list(run.warnings)
    run.result = result
    if report_dir is not None:
        card = engine.card
        run.report = write_report(
            report_dir,
            result,
            plots,
            {"name": card.name, "version": card.version, "data": str(dataset.root)},
        )
    return run


def _leave_out_training_images(
    run: FolderEvaluation,
    record: TrainingImages,
    sha256: dict[Path, str],
    include: bool,
) -> None:
    """Recognise the model's own training images among `run.evaluated` by content."""
    total = len(run.evaluated)
    fitted = [s for s in run.evaluated if sha256.get(s.path) in record.fit]
    if fitted and include:
        run.fitted_kept = len(fitted)
        run.warnings.append(
            f"{len(fitted)} of the {total} images are images the model was fitted on (the "
            "same file content); they are kept (--include-training-images), so the figures "
            "read better than new parts will"
        )
    elif fitted:
        run.fitted_left_out = len(fitted)
        chosen = {s.path for s in fitted}
        run.evaluated = [s for s in run.evaluated if s.path not in chosen]
        run.warnings.append(
            f"{len(fitted)} of the {total} images are images the model was fitted on (the "
            "same file content): left out of the figures (--include-training-images keeps "
            "them)"
        )
    calibrated = sum(sha256.get(s.path) in record.calibration for s in run.evaluated)
    if calibrated:
        run.calibration_kept = calibrated
        run.warnings.append(
            f"{calibrated} of the images evaluated chose the model's threshold at training: "
            "the escape and false-reject rates at the threshold lean their way"
        )


def _training_thumbnails(
    engine: Engine, record: TrainingImages | None, warnings: list[str]
) -> np.ndarray | None:
    """Thumbnails of the images the model was fitted on, where they still are, to tell how
    close the evaluation images are to them; None (and why, in `warnings`) where not."""
    trained_on = Path(str(engine.card.data.get("path", "")))
    if not trained_on.name or not trained_on.is_dir():
        return None
    try:
        if record is None:  # an older model version: its data set's train/good, if any
            samples = open_dataset(trained_on).train
        else:
            samples = [Sample(trained_on / name, GOOD) for name in sorted(record.fit.values())]
            samples = [s for s in samples if s.path.is_file()]
        if len(samples) < 2:
            return None
        return training_thumbnails(engine, samples)
    except DefectLensError as error:
        warnings.append(f"the evaluation images were not compared with the training ones: {error}")
        return None


def metrics_table(result: dict[str, Any]) -> list[str]:
    """The figures of `compute_metrics` as aligned lines with units, for the command line."""
    counts = result.get("counts", {})
    good, defective = int(counts.get("good", 0)), int(counts.get("defective", 0))
    rows: list[tuple[str, str, str]] = [
        ("images", f"{good + defective}", f"{good} good, {defective} defective")
    ]
    if "image_auroc" in result:
        low, high = result.get("image_auroc_ci", [None, None])[:2]
        interval = f"95 % CI {low:.3f} – {high:.3f}" if low is not None else ""
        rows.append(("image AUROC", f"{result['image_auroc']:.3f}", interval))
    for key, label in (("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO"), ("f1", "F1")):
        if result.get(key) is not None:
            rows.append((label, f"{result[key]:.3f}", ""))
    missed, rejected = result.get("fn"), result.get("fp")
    if result.get("escape_rate") is not None:
        rows.append(
            (
                "escape rate",
                _percent(result["escape_rate"]),
                f"{missed} of {defective} defective parts passed as good",
            )
        )
    if result.get("false_reject_rate") is not None:
        rows.append(
            (
                "false-reject rate",
                _percent(result["false_reject_rate"]),
                f"{rejected} of {good} good parts rejected",
            )
        )
    if result.get("threshold") is not None:
        rows.append(("threshold", f"{result['threshold']:.3f}", "a score at or above it is NG"))
    if result.get("fit_seconds") is not None:
        rows.append(("fit time", f"{result['fit_seconds']:.1f} s", ""))
    lines = _aligned(rows)
    per_type = result.get("per_type") or {}
    if per_type:
        header = ("defect type", "images", "escape rate", "false-reject rate", "AUROC")
        table = [header]
        for name in sorted(per_type, key=lambda name: (name != GOOD, name)):
            entry = per_type[name]
            table.append(
                (
                    name,
                    str(entry.get("count", "")),
                    _percent(entry.get("escape_rate")),
                    _percent(entry.get("false_reject_rate")),
                    f"{entry['auroc']:.3f}" if entry.get("auroc") is not None else "",
                )
            )
        lines += ["", *_aligned(table)]
    return lines


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines, the first column left-aligned and the others right-aligned, except a
    last column of words (left-aligned)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    words_last = len(rows[0]) == 3
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        for i, cell in enumerate(row[1:], start=1):
            last = i == len(row) - 1
            cells.append(cell.ljust(widths[i]) if words_last and last else cell.rjust(widths[i]))
        lines.append(("  " + "   ".join(cells)).rstrip())
    return lines


def _percent(rate: float | None) -> str:
    if rate is None:
        return ""
    return f"{rate * 100:.2f} %" if 0 < rate < 0.01 else f"{rate * 100:.1f} %"
