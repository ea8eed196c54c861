"""From model outputs to `Defect`s in original image pixels. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from defectlens.datasets.images import Placement
from defectlens.modelcard import DOCUMENTED_THRESHOLD, ModelCard
from defectlens.prediction import Defect

MAX_DEFECTS = 32


def defects_from_map(
    anomaly_map: np.ndarray,
    threshold: float,
    class_name: str = "anomaly",
    max_defects: int = MAX_DEFECTS,
) -> list[Defect]:
    """Connected regions of the map at or above the threshold, strongest first.

    Each region's score is the map's peak inside it, its box is [x0, y0, x1, y1) in the
    map's pixels (the original image's, once the engine has resized the map back).
    """
    mask = anomaly_map >= threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    # Label only the box around the pixels above the cut: the same regions, and on an NG
    # part that is usually a small share of the map (labelling costs per pixel).
    top, left = int(rows[0]), int(cols[0])
    window = (slice(top, int(rows[-1]) + 1), slice(left, int(cols[-1]) + 1))
    above = mask[window].astype(np.uint8)
    values = anomaly_map[window]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    # Peak per component in one pass over the pixels above the cut only (the background,
    # label 0, is never reported).
    inside = np.flatnonzero(above)
    peaks = np.zeros(count, dtype=np.float64)
    np.maximum.at(
        peaks,
        labels.ravel()[inside].astype(np.intp),
        values.ravel()[inside].astype(np.float64),
    )
    defects = [
        Defect(
            **{"class": class_name},
            score=float(peaks[index]),
            box=(
                left + int(stats[index, cv2.CC_STAT_LEFT]),
                top + int(stats[index, cv2.CC_STAT_TOP]),
                left + int(stats[index, cv2.CC_STAT_LEFT] + stats[index, cv2.CC_STAT_WIDTH]),
                top + int(stats[index, cv2.CC_STAT_TOP] + stats[index, cv2.CC_STAT_HEIGHT]),
            ),
            area_px=int(stats[index, cv2.CC_STAT_AREA]),
        )
        for index in range(1, count)
    ]
    defects.sort(key=lambda defect: defect.score, reverse=True)
    return defects[:max_defects]


@dataclass(frozen=True)
class FoundDefects:
    defects: list[Defect]
    """The detections at or above their class's threshold, strongest first."""
    score: float
    """The part's score: the highest normalised detection score (0 with none)."""


def defect_code(card: ModelCard, defect_class: str) -> int:
    """The PLC defect code of a class: the card's `codes`, else its 1-based place in the
    card's classes; a class the card does not know is 1 (a defect)."""
    if defect_class in card.codes:
        return card.codes[defect_class]
    return card.classes.index(defect_class) + 1 if defect_class in card.classes else 1


def class_thresholds(card: ModelCard) -> list[float]:
    """A detector's per-class score thresholds in the order of its classes (a class the
    card gives none keeps the documented 0.5)."""
    return [card.class_thresholds.get(name, DOCUMENTED_THRESHOLD) for name in card.classes]


def normalised_score(score: float, threshold: float) -> float:
    """A detection's score in the normalised space every model family shares: its class
    threshold lands on 0.5 (sigmoid of the logit margin), the order within a class kept."""
    eps = 1e-6
    s = min(max(score, eps), 1 - eps)
    t = min(max(threshold, eps), 1 - eps)
    margin = math.log(s / (1 - s)) - math.log(t / (1 - t))
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, margin))))


def detections_to_defects(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    thresholds: Sequence[float],
    where: Placement,
    original_hw: tuple[int, int],
    max_defects: int = MAX_DEFECTS,
) -> FoundDefects:
    """A detector's top-K ([K, 4] boxes in model input pixels, [K] scores, [K] labels) as
    `Defect`s in original image pixels: those at or above their class threshold, with
    their normalised score; the box is [x0, y0, x1, y1) rounded outwards."""
    height, width = original_hw
    defects, best = [], 0.0
    for box, raw, label in zip(boxes, scores, labels, strict=True):
        index = int(label)
        if not 0 <= index < len(classes):
            continue
        score = normalised_score(float(raw), thresholds[index])
        best = max(best, score)
        if float(raw) < thresholds[index]:
            continue
        x0 = max(0, math.floor((float(box[0]) - where.left) / where.scale_x))
        y0 = max(0, math.floor((float(box[1]) - where.top) / where.scale_y))
        x1 = min(width, math.ceil((float(box[2]) - where.left) / where.scale_x))
        y1 = min(height, math.ceil((float(box[3]) - where.top) / where.scale_y))
        if x1 <= x0 or y1 <= y0:
            continue
        defects.append(
            Defect(
                **{"class": classes[index]},
                score=max(score, DOCUMENTED_THRESHOLD),
                box=(x0, y0, x1, y1),
                area_px=(x1 - x0) * (y1 - y0),
            )
        )
    defects.sort(key=lambda defect: defect.score, reverse=True)
    if defects:
        best = max(best, DOCUMENTED_THRESHOLD)
    return FoundDefects(defects[:max_defects], best)
