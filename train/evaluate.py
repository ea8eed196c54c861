"""Evaluating a model version as it ships: the ONNX graph through the serving engine.

Image metrics come from the normalised scores; pixel metrics compare the model-resolution
anomaly map with the ground-truth mask brought to the same geometry (defect = mask > 127).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from defectlens.datasets.images import read_image, read_mask, to_model_input
from defectlens.datasets.layout import GOOD, Sample
from defectlens.inference.engine import Engine
from defectlens.train import metrics as m
from defectlens.train.plots import plot_overlays, plot_roc, plot_score_histograms
from defectlens.train.similarity import nearest_similarity, thumbnails

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
    for sample in tqdm(samples, desc=desc, unit="img", leave=False):
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
        for s in tqdm(samples, desc="training thumbnails", unit="img", leave=False)
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
    misses = sorted((s for s in scored if s.sample.is_defective), key=lambda s: s.score)
    alarms = sorted((s for s in scored if not s.sample.is_defective), key=lambda s: -s.score)
    for title, group, name in (
        ("Worst misses (defective, lowest scores)", misses, "worst_misses.png"),
        ("Worst false alarms (good, highest scores)", alarms, "false_alarms.png"),
    ):
        items = [
            (
                f"{s.sample.defect_type} {s.sample.path.name}\nscore {s.score:.3f}",
                s.image[..., 0] if s.image.shape[-1] == 1 else s.image,
                s.anomaly_map,
                s.mask,
            )
            for s in group[:WORST_SHOWN]
        ]
        plots[title] = plot_overlays(items, folder / name)
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
