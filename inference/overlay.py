"""Heat-map overlays a person looks at: the part, its anomaly map, the defect boxes, the verdict."""

from __future__ import annotations

import cv2
import numpy as np

from defectlens.prediction import Prediction


def render_overlay(image: np.ndarray, prediction: Prediction, alpha: float = 0.45) -> np.ndarray:
    """A BGR uint8 picture of the original size, ready for `cv2.imencode`."""
    base = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    picture = cv2.cvtColor(np.ascontiguousarray(base), cv2.COLOR_RGB2BGR)
    if prediction.anomaly_map is not None:
        heat = np.clip(np.asarray(prediction.anomaly_map, np.float32), 0.0, 1.0)
        colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        picture = cv2.addWeighted(picture, 1.0 - alpha, colored, alpha, 0.0)
    ng = prediction.verdict == "NG"
    colour = (0, 0, 255) if ng else (0, 200, 0)
    thickness = max(1, round(max(picture.shape[:2]) / 300))
    for defect in prediction.defects:
        x0, y0, x1, y1 = defect.box
        cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), thickness + 1)
        cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
    label = f"{prediction.verdict} {prediction.score:.2f}"
    scale = max(0.4, max(picture.shape[:2]) / 600)
    (width, height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(picture, (0, 0), (width + 8, height + 10), colour, -1)
    cv2.putText(
        picture,
        label,
        (4, height + 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    return picture
