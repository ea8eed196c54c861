"""The detector report's plots: per-class precision-recall curves, the confusion matrix
with background, and example overlays (ground truth and detections on the part)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from defectlens.train.detector_metrics import Detections
from defectlens.train.plots import _NG_COLOURS, _save


@dataclass(frozen=True)
class Curve:
    name: str
    precision: npt.NDArray[np.float32]
    recall: npt.NDArray[np.float32]
    ap50: float
    threshold_point: tuple[float, float] | None
    """(recall, precision) at the deployed threshold."""


def plot_pr_curves(curves: Sequence[Curve], path: Path) -> Path:
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.subplots()
    for i, curve in enumerate(curves):
        colour = _NG_COLOURS[i % len(_NG_COLOURS)]
        ax.plot(
            curve.recall, curve.precision, color=colour, label=f"{curve.name} (AP {curve.ap50:.3f})"
        )
        if curve.threshold_point is not None:
            ax.plot(*curve.threshold_point, "o", color=colour)
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall per class (IoU 0.5); dots: deployed thresholds", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion(matrix: npt.NDArray[np.int64], classes: Sequence[str], path: Path) -> Path:
    names = [*classes, "background"]
    fig = Figure(figsize=(1.0 + 0.8 * len(names), 0.8 + 0.7 * len(names)), layout="constrained")
    ax = fig.subplots()
    shown = np.log1p(matrix.astype(np.float64))
    ax.imshow(shown, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(
            col,
            row,
            str(value),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if shown[row, col] > shown.max() * 0.6 else "black",
        )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("found")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (IoU > 0.33)", fontsize=10)
    return _save(fig, path)


def plot_detections(
    items: Sequence[tuple[str, npt.NDArray[np.uint8], Detections, Detections]],
    classes: Sequence[str],
    path: Path,
    columns: int = 3,
) -> Path:
    """(title, image, ground truth, detections above threshold) panels: the truth dashed
    green, detections solid in their class's colour with class and score."""
    columns = max(1, min(columns, len(items)))
    rows = max(1, math.ceil(len(items) / columns))
    fig = Figure(figsize=(4.2 * columns, 4.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, (title, image, truth, found) in zip(axes.ravel(), items, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        for x0, y0, x1, y1 in truth.boxes:
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="#2ca02c", lw=1.5, ls="--")
            )
        for (x0, y0, x1, y1), score, label in zip(
            found.boxes, found.scores, found.labels, strict=True
        ):
            colour = _NG_COLOURS[int(label) % len(_NG_COLOURS)]
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.2))
            ax.text(x0, y0 - 2, f"{classes[int(label)]} {score:.2f}", color=colour, fontsize=6.5)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    for ax in axes.ravel()[len(items) :]:
        ax.set_axis_off()
    return _save(fig, path)
