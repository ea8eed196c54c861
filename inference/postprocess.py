"""From model outputs to `Defect`s in original image pixels. Pure functions."""

from __future__ import annotations

import cv2
import numpy as np

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
