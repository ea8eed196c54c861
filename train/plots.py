"""Evaluation plots for the training report: ROC curve, score histograms per defect type, and
heat-map overlays of the parts the model got wrong. Each function writes PNGs (Agg backend, no
display) and returns their paths."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from defectlens.errors import InputError
from defectlens.train.metrics import as_labels_scores, auroc, roc_curve

# Figures are drawn off screen (training machines and CI have no display); the functions use
# Figure directly, never pyplot's global state, so they are safe to call from worker threads.
matplotlib.use("Agg")

GOOD = "good"
"""The group name of good parts in `plot_score_histograms`."""

OverlayItem = tuple[
    str, npt.NDArray[np.uint8], npt.NDArray[np.floating], npt.NDArray[np.bool_] | None
]
"""(title, image uint8 HxW or HxWx3, anomaly map HxW in [0, 1], ground-truth mask HxW or None)"""

_GOOD_COLOUR = "#2ca02c"
_NG_COLOURS = [
    "#d62728",
    "#1f77b4",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
_DPI = 110

MISSED = "Missed defective parts"
"""The panel of defective parts the model passed (verdict OK); the report's heading."""
FALSELY_REJECTED = "Falsely rejected good parts"
"""The panel of good parts the model failed (verdict NG); the report's heading."""
WRONG_SHOWN = 8
"""At most this many parts a panel: the most confidently wrong ones."""


@dataclass(frozen=True)
class InspectedPart:
    """One evaluated part as the wrong-verdict panels draw it."""

    name: str
    """What the panel calls it, e.g. "scratch 017.png"."""
    defective: bool
    score: float
    image: npt.NDArray[np.uint8]
    """HxW or HxWx3, as the model saw it."""
    anomaly_map: npt.NDArray[np.floating]
    """HxW in [0, 1]."""
    mask: npt.NDArray[np.bool_] | None = None


def wrong_verdicts(
    parts: Sequence[InspectedPart], threshold: float
) -> tuple[list[InspectedPart], list[InspectedPart]]:
    """(missed, falsely rejected) at `threshold` (a score at or above it is NG): defective
    parts scored below it, lowest first, and good parts at or above it, highest first; the
    parts the model is surest of and wrong about come first."""
    missed = sorted((p for p in parts if p.defective and p.score < threshold), key=_score)
    rejected = sorted(
        (p for p in parts if not p.defective and p.score >= threshold), key=_score, reverse=True
    )
    return missed, rejected


def _score(part: InspectedPart) -> float:
    return part.score


def plot_wrong_verdicts(
    parts: Sequence[InspectedPart], threshold: float, folder: Path, shown: int = WRONG_SHOWN
) -> dict[str, Path]:
    """The `MISSED` and `FALSELY_REJECTED` panels (missed.png, falsely_rejected.png), each
    with at most `shown` parts; a panel with no such part is not drawn (the report says so
    in words rather than show other parts)."""
    missed, rejected = wrong_verdicts(parts, threshold)
    plots: dict[str, Path] = {}
    for title, group, verdict, file_name in (
        (MISSED, missed, f"< {threshold:.3g}: OK", "missed.png"),
        (FALSELY_REJECTED, rejected, f"≥ {threshold:.3g}: NG", "falsely_rejected.png"),
    ):
        if not group:
            continue
        items: list[OverlayItem] = [
            (f"{p.name}\nscore {p.score:.3f} {verdict}", p.image, p.anomaly_map, p.mask)
            for p in group[:shown]
        ]
        heading = f"{title}: {len(group)}" + (
            f", the {shown} worst shown" if len(group) > shown else ""
        )
        plots[title] = plot_overlays(items, Path(folder) / file_name, title=heading)
    return plots


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def plot_roc(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    path: Path,
    title: str = "ROC curve",
    threshold: float | None = None,
) -> Path:
    """The image-level ROC curve, its AUROC in the legend, and the operating point that
    `threshold` gives (score >= threshold is NG) marked on it."""
    y, s = as_labels_scores(labels, scores)
    fpr, tpr, _ = roc_curve(y, s)
    fig = Figure(figsize=(5.2, 5.0))
    ax = fig.subplots()
    ax.plot(fpr, tpr, color="#1f4e8c", lw=2, label=f"AUROC = {auroc(y, s):.3f}")
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="chance")
    if threshold is not None:
        ng = s >= threshold
        op_fpr = float(ng[~y].mean())
        op_tpr = float(ng[y].mean())
        ax.plot(
            [op_fpr],
            [op_tpr],
            "o",
            ms=9,
            color="#d62728",
            zorder=5,
            label=f"threshold {threshold:.4g}: FRR {op_fpr:.1%}, escapes {1 - op_tpr:.1%}",
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false-reject rate (good parts rejected)")
    ax.set_ylabel("detection rate (defective parts caught)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_score_histograms(
    scores: npt.ArrayLike,
    groups: Sequence[str],
    threshold: float,
    path: Path,
    title: str = "Scores by defect type",
) -> Path:
    """Overlapping score histograms, one per group (`good` in green, defect types in other
    colours) on shared bins, each scaled to its group's size, with the threshold as a
    vertical line."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size != len(groups):
        raise InputError(
            f"scores and groups must be the same length, got {s.size} scores and "
            f"{len(groups)} groups"
        )
    if s.size == 0 or not np.isfinite(s).all():
        raise InputError("score histograms need a non-empty set of finite scores")
    names = sorted(set(groups), key=lambda name: (name != GOOD, name))
    lo, hi = min(float(s.min()), threshold), max(float(s.max()), threshold)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 41).tolist()
    member = np.asarray(groups)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    colours = iter(_NG_COLOURS * (len(names) // len(_NG_COLOURS) + 1))
    for name in names:
        colour = _GOOD_COLOUR if name == GOOD else next(colours)
        values = s[member == name]
        # each group sums to 1, so a type with 10 images shows beside 300 good ones
        share = np.full(values.size, 1.0 / values.size)
        label = f"{name} ({values.size})"
        ax.hist(values, bins=bins, weights=share, alpha=0.4, color=colour, label=label)
        ax.hist(values, bins=bins, weights=share, histtype="step", lw=1.3, color=colour)
    ax.axvline(threshold, color="black", lw=1.8, ls="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score (at or above the threshold = NG)")
    ax.set_ylabel("share of the group's images")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # beside the axes, where it can cover no bar and not the threshold line
    ax.legend(
        fontsize=8,
        ncols=2 if len(names) > 12 else 1,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
    )
    return _save(fig, path)


def plot_overlays(
    items: Sequence[OverlayItem], path: Path, columns: int = 4, title: str | None = None
) -> Path:
    """A grid of images with the anomaly map blended over them and the ground-truth mask
    outlined in cyan; each panel's title comes with the item (type and score), `title`
    goes above the grid."""
    if columns < 1:
        raise InputError(f"columns must be at least 1, got {columns}")
    if not items:
        fig = Figure(figsize=(4.0, 1.2))
        fig.text(0.5, 0.5, "no images in this group", ha="center", va="center", fontsize=11)
        return _save(fig, path)
    columns = min(columns, len(items))
    rows = math.ceil(len(items) / columns)
    # constrained layout leaves room for the two-line titles between rows
    fig = Figure(figsize=(3.1 * columns, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, item in zip(axes.ravel(), items, strict=False):
        _draw_overlay(ax, *item)
    for ax in axes.ravel()[len(items) :]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _draw_overlay(
    ax: Axes,
    title: str,
    image: npt.NDArray[np.uint8],
    anomaly_map: npt.NDArray[np.floating],
    mask: npt.NDArray[np.bool_] | None,
) -> None:
    image = np.asarray(image)
    heat = np.asarray(anomaly_map, dtype=np.float64)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or heat.ndim != 2:
        raise InputError(
            f"overlay {title!r}: image must be HxW or HxWx3 and the map HxW; got "
            f"{image.shape} and {heat.shape}"
        )
    height, width = image.shape[:2]
    # extent stretches a map or mask of another resolution over the whole image
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    heat = np.clip(heat, 0.0, 1.0)
    # opacity grows with the anomaly, so the part stays visible where nothing is wrong
    ax.imshow(heat, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.2 + 0.5 * heat, extent=extent)
    if mask is not None and np.asarray(mask).any():
        mask_f = np.asarray(mask, dtype=np.float64)
        rows, cols = mask_f.shape
        ax.contour(
            np.linspace(-0.5, width - 0.5, cols),
            np.linspace(-0.5, height - 0.5, rows),
            mask_f,
            levels=[0.5],
            colors="cyan",
            linewidths=1.4,
        )
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
