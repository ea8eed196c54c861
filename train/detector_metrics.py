"""Detection metrics. Pure functions on boxes, scores and labels per image.

- COCO mAP@0.5 and mAP@[.5:.95] by pycocotools (the reference implementation);
- the DeepPCB protocol: a detection is right when its IoU with a not yet matched
  ground-truth box of its class exceeds 0.33; precision = right detections / detections,
  recall = matched ground truths / ground truths, F-score their harmonic mean;
- per-class precision, recall and F1 at the deployed per-class thresholds (same matching);
- a confusion matrix with a "background" row and column;
- image-level escape rate (a defective part with no defect found) and false-reject rate
  (a defect-free part with a defect found);
- per-class precision-recall curves, and the per-class thresholds of best F1.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DEEPPCB_IOU = 0.33
Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Detections:
    """One image's boxes [n, 4] (x0, y0, x1, y1), scores [n] and class indices [n]."""

    boxes: Floats
    scores: Floats
    labels: Ints

    @classmethod
    def truth(cls, boxes: npt.ArrayLike, labels: npt.ArrayLike) -> Detections:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        return cls(boxes, np.ones(len(boxes), np.float32), np.asarray(labels, np.int64))

    def above(self, thresholds: Sequence[float]) -> Detections:
        """The detections at or above their class's threshold."""
        cut = np.asarray(thresholds, np.float32)[self.labels]
        keep = self.scores >= cut
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


def iou(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Pairwise IoU of boxes [n, 4] and [m, 4] (continuous coordinates): [n, m]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(truth: Detections, found: Detections, min_iou: float) -> npt.NDArray[np.int64]:
    """For each detection (taken highest score first), the ground-truth box of its class it
    matches (IoU > min_iou, the best not yet matched), or -1."""
    matched = np.full(len(found.scores), -1, np.int64)
    if len(found.scores) == 0 or len(truth.labels) == 0:
        return matched
    overlaps = iou(found.boxes, truth.boxes)
    overlaps[found.labels[:, None] != truth.labels[None, :]] = 0.0
    taken = np.zeros(len(truth.labels), bool)
    for d in np.argsort(-found.scores, kind="stable"):
        candidates = np.where(taken, 0.0, overlaps[d])
        best = int(np.argmax(candidates))
        if candidates[best] > min_iou:
            matched[d] = best
            taken[best] = True
    return matched


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def prf(truth: Sequence[Detections], found: Sequence[Detections], min_iou: float) -> dict[str, Any]:
    """Precision, recall and F-score over images: right detections / detections, matched
    ground truths / ground truths (counts included). No detections: precision 1."""
    right = detections = ground = 0
    for t, f in zip(truth, found, strict=True):
        right += int((match(t, f, min_iou) >= 0).sum())
        detections += len(f.scores)
        ground += len(t.labels)
    precision = right / detections if detections else 1.0
    recall = right / ground if ground else 1.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "true_positives": right,
        "detections": detections,
        "ground_truths": ground,
    }


def deeppcb_protocol(truth: Sequence[Detections], found: Sequence[Detections]) -> dict[str, Any]:
    """The DeepPCB paper's figures on thresholded detections (IoU > 0.33, class-aware)."""
    return prf(truth, found, DEEPPCB_IOU)


def _only(d: Detections, label: int) -> Detections:
    keep = d.labels == label
    return Detections(d.boxes[keep], d.scores[keep], d.labels[keep])


def per_class(
    truth: Sequence[Detections],
    found: Sequence[Detections],
    classes: Sequence[str],
    min_iou: float = DEEPPCB_IOU,
) -> dict[str, dict[str, Any]]:
    """Precision, recall and F1 of each class (on already thresholded detections)."""
    return {
        name: prf([_only(t, c) for t in truth], [_only(f, c) for f in found], min_iou)
        for c, name in enumerate(classes)
    }


def confusion(
    truth: Sequence[Detections],
    found: Sequence[Detections],
    classes: int,
    min_iou: float = DEEPPCB_IOU,
) -> Ints:
    """[classes + 1, classes + 1] counts, rows the true class, columns the found one; the
    last row and column are background. A ground-truth box pairs with the highest-scoring
    free detection of any class overlapping it by more than `min_iou` (each detection
    pairs once); unpaired boxes count as found "background", unpaired detections as true
    "background"."""
    matrix = np.zeros((classes + 1, classes + 1), np.int64)
    for t, f in zip(truth, found, strict=True):
        overlaps = iou(t.boxes, f.boxes)
        used = np.zeros(len(f.scores), bool)
        for g in range(len(t.labels)):
            free = (overlaps[g] > min_iou) & ~used
            if free.any():
                d: int = int(np.flatnonzero(free)[np.argmax(f.scores[free])])
                used[d] = True
                matrix[t.labels[g], f.labels[d]] += 1
            else:
                matrix[t.labels[g], classes] += 1
        for unused in np.flatnonzero(~used):
            matrix[classes, f.labels[unused]] += 1
    return matrix


def image_verdicts(
    truth: Sequence[Detections], found: Sequence[Detections]
) -> dict[str, float | int | None]:
    """Image-level rates: escape = defective images with nothing found / defective images;
    false reject = defect-free images with something found / defect-free images (None when
    there are no images of that kind)."""
    defective = np.array([len(t.labels) > 0 for t in truth], bool)
    flagged = np.array([len(f.scores) > 0 for f in found], bool)
    escapes, rejects = int((defective & ~flagged).sum()), int((~defective & flagged).sum())
    return {
        "defective_images": int(defective.sum()),
        "good_images": int((~defective).sum()),
        "escapes": escapes,
        "false_rejects": rejects,
        "escape_rate": escapes / defective.sum() if defective.any() else None,
        "false_reject_rate": rejects / (~defective).sum() if (~defective).any() else None,
    }


def pr_curve(
    truth: Sequence[Detections], found: Sequence[Detections], label: int, min_iou: float
) -> tuple[Floats, Floats, Floats]:
    """(scores descending, precision, recall) of one class as its threshold is lowered."""
    scores, right, ground = [], [], 0
    for t, f in zip(truth, found, strict=True):
        t, f = _only(t, label), _only(f, label)
        ground += len(t.labels)
        scores.append(f.scores)
        right.append(match(t, f, min_iou) >= 0)
    all_scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    all_right = np.concatenate(right) if right else np.zeros(0, bool)
    order = np.argsort(-all_scores, kind="stable")
    hits = np.cumsum(all_right[order])
    precision = hits / np.arange(1, len(order) + 1)
    recall = hits / max(ground, 1)
    return (
        all_scores[order].astype(np.float32),
        precision.astype(np.float32),
        recall.astype(np.float32),
    )


def best_f1_thresholds(
    truth: Sequence[Detections],
    found: Sequence[Detections],
    classes: int,
    minimum: float,
    min_iou: float = DEEPPCB_IOU,
) -> list[float]:
    """Per class, the score threshold of best F1 (ties: the highest threshold), no lower
    than `minimum`; a class never found keeps 0.5."""
    chosen = []
    for c in range(classes):
        scores, precision, recall = pr_curve(truth, found, c, min_iou)
        usable = scores >= minimum
        if not usable.any():
            chosen.append(0.5)
            continue
        f1 = np.where(
            precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0
        )[usable]
        # The last index of a run of equal scores is where the cut at that score lands.
        last = np.r_[scores[usable][1:] != scores[usable][:-1], True]
        f1 = np.where(last, f1, -1.0)
        best = int(np.argmax(f1[::-1]))  # the highest threshold among equal F1s
        chosen.append(float(scores[usable][len(f1) - 1 - best]))
    return chosen


def coco_map(
    truth: Sequence[Detections], found: Sequence[Detections], classes: int
) -> dict[str, float]:
    """COCO mAP@0.5 and mAP@[.5:.95] over classes with ground truth (pycocotools), and each
    class's AP@0.5 as `ap50/<index>`."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, (t, f) in enumerate(zip(truth, found, strict=True)):
        images.append({"id": i})
        for box, label in zip(t.boxes, t.labels, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": int(label),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(f.boxes, f.scores, f.labels, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append(
                {
                    "image_id": i,
                    "category_id": int(label),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                }
            )
    if not annotations:
        return {"map50": 0.0, "map50_95": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO()
        ground.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c} for c in range(classes)],
        }
        ground.createIndex()
        if not results:
            return {"map50": 0.0, "map50_95": 0.0}
        detected = ground.loadRes(results)
        check = COCOeval(ground, detected, "bbox")
        check.params.maxDets = [1, 10, 100]
        check.evaluate()
        check.accumulate()
        check.summarize()
    precision = check.eval["precision"]  # [iou, recall, class, area, maxdets]
    figures = {"map50": float(check.stats[1]), "map50_95": float(check.stats[0])}
    for c in range(classes):
        values = precision[0, :, c, 0, -1]
        values = values[values > -1]
        figures[f"ap50/{c}"] = float(values.mean()) if values.size else float("nan")
    return figures
