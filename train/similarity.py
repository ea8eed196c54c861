"""How close evaluation images are to the training images, as a check on the evaluation.

An evaluation image of a part that is also in the training set (the same part shot again,
under other lighting or a moment later) scores lower than a new part would: the model has
seen that very surface. When the good evaluation images are such re-shots and the
defective ones are not, the good scores read low, and the image and pixel figures say more
about the data set than about the parts a line will send.

Each image becomes a small gray thumbnail with its mean removed and its norm set to one.
Two images are compared after taking away what all the training thumbnails share (their
mean: on aligned parts, the part's design), so that what is left is each part's own
surface and lighting: the similarity is 1 for the same picture at any brightness and
contrast, and near 0 for parts that have nothing in common beyond the design.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

THUMBNAIL_SIDE = 48
_CHUNK = 512  # queries per matrix product: bounds the memory of the similarity block


def thumbnails(images: Iterable[np.ndarray], side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """[N, side*side] float32 rows, zero-mean and unit-norm, of HxW or HxWxC images (any
    dtype); a flat image gives a row of zeros (similar to nothing)."""
    rows = []
    for image in images:
        gray = image.astype(np.float32)
        if gray.ndim == 3:
            gray = gray.mean(axis=2)
        small = cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA).ravel()
        rows.append(small - small.mean())
    if not rows:
        return np.zeros((0, side * side), np.float32)
    return _unit_rows(np.stack(rows))


def nearest_similarity(
    queries: np.ndarray, reference: np.ndarray, own_rows: np.ndarray | None = None
) -> np.ndarray:
    """For each query thumbnail, its highest similarity to a reference thumbnail, both
    taken relative to the reference's mean thumbnail.

    `own_rows` (one per query) names each query's own row when the queries are taken from
    the reference itself; that row is left out (the training set against itself)."""
    if len(reference) < (1 if own_rows is None else 2):
        raise ValueError("nearest_similarity needs reference thumbnails to compare with")
    shared = reference.mean(axis=0)
    reference = _unit_rows(reference - shared)
    best = np.empty(len(queries), np.float32)
    for start in range(0, len(queries), _CHUNK):
        block = _unit_rows(queries[start : start + _CHUNK] - shared) @ reference.T
        if own_rows is not None:
            block[np.arange(len(block)), own_rows[start : start + _CHUNK]] = -np.inf
        best[start : start + len(block)] = block.max(axis=1)
    return best


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 1e-6)
