"""Evaluate an exported detector (through the ONNX Runtime engine, as it will serve) on
held-out images with their boxes: COCO mAP, the DeepPCB protocol, per-class figures at the
deployed thresholds, the confusion matrix, image-level escape and false-reject rates (the
references, where given, are the defect-free parts), latency; plots for the report."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from defectlens.datasets.detection import DetectionSample, open_detection_dataset
from defectlens.datasets.images import placement, read_image
from defectlens.errors import DataError
from defectlens.inference.engine import Engine
from defectlens.inference.postprocess import class_thresholds
from defectlens.train import detector_metrics as dm
from defectlens.train.detector_metrics import Detections
from defectlens.train.detector_plots import (
    Curve,
    plot_confusion,
    plot_detections,
    plot_pr_curves,
)
from defectlens.train.report import write_report

EXAMPLES = 6
"""Parts shown in the overlays: the worst by missed and wrong boxes, then others."""


def engine_detections(
    engine: Engine, image: np.ndarray, reference: np.ndarray | None
) -> tuple[Detections, float]:
    """All K detections of one decoded image, in its own pixels, and the model's time (ms)."""
    batch = engine.prepare(image)[np.newaxis]
    refs = None if reference is None else engine.prepare(reference)[np.newaxis]
    started = time.perf_counter()
    boxes, scores, labels = engine.run_detector(batch, refs)
    elapsed = (time.perf_counter() - started) * 1000
    where = placement((image.shape[0], image.shape[1]), engine.card.input)
    scale = np.array([where.scale_x, where.scale_y] * 2, np.float32)
    offset = np.array([where.left, where.top] * 2, np.float32)
    return (
        Detections((boxes[0] - offset) / scale, scores[0].astype(np.float32), labels[0]),
        elapsed,
    )


def evaluate_detector(
    engine: Engine, samples: Sequence[DetectionSample], report_dir: Path
) -> tuple[dict[str, Any], dict[str, Path]]:
    classes = engine.card.classes
    thresholds = class_thresholds(engine.card)
    truth, found, good_found, images, latency = [], [], [], [], []
    for sample in tqdm(samples, desc="evaluate", leave=False, disable=None):
        image = read_image(sample.image)
        reference = read_image(sample.reference) if sample.reference is not None else None
        detections, ms = engine_detections(engine, image, reference)
        truth.append(Detections.truth(sample.boxes, sample.labels))
        found.append(detections)
        latency.append(ms)
        images.append(image)
        if reference is not None:  # the defect-free reference, inspected as a part
            good_found.append(engine_detections(engine, reference, reference)[0])
    kept = [d.above(thresholds) for d in found]
    coco = dm.coco_map(truth, found, len(classes))
    deeppcb = dm.deeppcb_protocol(truth, kept)
    per_class = dm.per_class(truth, kept, classes)
    matrix = dm.confusion(truth, kept, len(classes))
    good_truth = [Detections.truth(np.zeros((0, 4)), []) for _ in good_found]
    verdicts = dm.image_verdicts(
        truth + good_truth, kept + [d.above(thresholds) for d in good_found]
    )
    metrics: dict[str, Any] = {
        "family": "detection",
        "map50": coco["map50"],
        "map50_95": coco["map50_95"],
        "deeppcb_precision": deeppcb["precision"],
        "deeppcb_recall": deeppcb["recall"],
        "f1": deeppcb["f1"],
        "escape_rate": verdicts["escape_rate"],
        "false_reject_rate": verdicts["false_reject_rate"],
        "counts": {"good": verdicts["good_images"], "defective": verdicts["defective_images"]},
        "boxes": deeppcb["ground_truths"],
        "detections": deeppcb["detections"],
        "latency_ms_median": float(np.median(latency)) if latency else None,
        "per_type": {
            name: {
                "count": per_class[name]["ground_truths"],
                "ap50": coco.get(f"ap50/{c}"),
                "threshold": thresholds[c],
                "precision": per_class[name]["precision"],
                "recall": per_class[name]["recall"],
                "f1": per_class[name]["f1"],
            }
            for c, name in enumerate(classes)
        },
        "confusion": {"classes": [*classes, "background"], "counts": matrix.tolist()},
    }
    plots = {
        "precision-recall curves": plot_pr_curves(
            _curves(truth, found, kept, classes, coco), report_dir / "pr_curves.png"
        ),
        "confusion matrix": plot_confusion(matrix, classes, report_dir / "confusion.png"),
        "example detections": plot_detections(
            _examples(samples, images, truth, kept), classes, report_dir / "examples.png"
        ),
    }
    return metrics, plots


def _curves(
    truth: list[Detections],
    found: list[Detections],
    kept: list[Detections],
    classes: Sequence[str],
    coco: dict[str, float],
) -> list[Curve]:
    curves = []
    at_threshold = dm.per_class(truth, kept, classes, 0.5)
    for c, name in enumerate(classes):
        _, precision, recall = dm.pr_curve(truth, found, c, 0.5)
        point = at_threshold[name]
        curves.append(
            Curve(
                name,
                precision,
                recall,
                coco.get(f"ap50/{c}", float("nan")),
                (point["recall"], point["precision"]) if point["detections"] else None,
            )
        )
    return curves


def _examples(
    samples: Sequence[DetectionSample],
    images: list[np.ndarray],
    truth: list[Detections],
    kept: list[Detections],
) -> list[tuple[str, np.ndarray, Detections, Detections]]:
    errors = []
    for _i, (t, k) in enumerate(zip(truth, kept, strict=True)):
        right = int((dm.match(t, k, dm.DEEPPCB_IOU) >= 0).sum())
        errors.append((len(t.labels) - right) + (len(k.labels) - right))
    order = sorted(range(len(samples)), key=lambda i: -errors[i])[:EXAMPLES]
    return [
        (
            f"{samples[i].name}: {errors[i]} wrong box{'es' if errors[i] != 1 else ''}",
            images[i] if images[i].ndim == 2 else images[i].mean(axis=2).astype(np.uint8),
            truth[i],
            kept[i],
        )
        for i in order
    ]


def evaluate_detection_data(engine: Engine, data: Path, report_dir: Path | None) -> dict[str, Any]:
    """`defectlens evaluate` for a detector: every image of a detection data set (its
    classes must be the model's), with a report where asked."""
    dataset = open_detection_dataset(data)
    if list(dataset.classes) != engine.card.classes:
        raise DataError(
            f"{data}: classes {', '.join(dataset.classes)} are not the model's "
            f"({', '.join(engine.card.classes)}); evaluate on data labelled with its classes"
        )
    folder = report_dir or Path(tempfile.mkdtemp(prefix="defectlens-evaluate-"))
    try:
        metrics, plots = evaluate_detector(engine, dataset.samples, folder)
        if report_dir is not None:
            card = engine.card
            write_report(
                report_dir,
                metrics,
                plots,
                {"name": card.name, "version": card.version, "data": str(data)},
            )
    finally:
        if report_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    return metrics


def detector_table(metrics: dict[str, Any]) -> list[str]:
    """The detector's figures as aligned lines, for the command line."""
    counts = metrics.get("counts", {})

    def percent(value: float | None) -> str:
        return "" if value is None else f"{value * 100:.1f} %"

    lines = [
        f"  images                {counts.get('defective', 0)} defective, "
        f"{counts.get('good', 0)} defect-free (references)",
        f"  mAP@0.5               {metrics['map50']:.4f}",
        f"  mAP@[.5:.95]          {metrics['map50_95']:.4f}",
        f"  DeepPCB precision     {metrics['deeppcb_precision']:.4f}",
        f"  DeepPCB recall        {metrics['deeppcb_recall']:.4f}",
        f"  DeepPCB F-score       {metrics['f1']:.4f}",
        f"  escape rate           {percent(metrics.get('escape_rate'))}",
        f"  false-reject rate     {percent(metrics.get('false_reject_rate'))}",
        "",
        "  class        boxes  threshold  AP@0.5  precision  recall     F1",
    ]
    for name, row in metrics.get("per_type", {}).items():
        ap = row.get("ap50")
        lines.append(
            f"  {name:<12} {row['count']:>5}  {row['threshold']:>9.2f}  "
            f"{(f'{ap:.3f}' if ap is not None else ''):>6}  {row['precision']:>9.3f}  "
            f"{row['recall']:>6.3f}  {row['f1']:>5.3f}"
        )
    return lines


def evaluate_detector_command(engine: Engine, data: str, report: str | None, as_json: bool) -> int:
    """`defectlens evaluate` for a detector: the figures as a table, or JSON."""
    metrics = evaluate_detection_data(engine, Path(data), Path(report) if report else None)
    if report:
        print(f"report: {Path(report) / 'index.html'}", file=sys.stderr)
    if as_json:
        print(json.dumps(metrics, indent=2, default=float))
        return 0
    print(f"\n{engine.card.name} {engine.card.version} on {data}")
    print("\n".join(detector_table(metrics)))
    return 0
