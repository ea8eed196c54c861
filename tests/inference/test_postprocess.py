"""`defects_from_map`: regions, peaks, boxes and areas on hand-made maps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from defectlens.inference.postprocess import defects_from_map


def _map(*regions: tuple[int, int, int, int, float]) -> np.ndarray:
    """An 8×10 float map of 0.1 with rectangles (top, left, height, width) set to a value."""
    anomaly_map = np.full((8, 10), 0.1, dtype=np.float32)
    for top, left, height, width, value in regions:
        anomaly_map[top : top + height, left : left + width] = value
    return anomaly_map


@pytest.mark.parametrize(
    ("anomaly_map", "expected"),
    [
        (_map(), []),
        # one 2×3 region at rows 1-2, cols 4-6: box [x0, y0, x1, y1) = (4, 1, 7, 3), area 6
        (_map((1, 4, 2, 3, 0.7)), [(0.7, (4, 1, 7, 3), 6)]),
        # two regions, the stronger first; the background's own maximum is never a defect
        (
            _map((0, 0, 1, 1, 0.6), (5, 6, 3, 4, 0.9)),
            [(0.9, (6, 5, 10, 8), 12), (0.6, (0, 0, 1, 1), 1)],
        ),
    ],
)
def test_regions_peaks_boxes_and_areas(
    anomaly_map: np.ndarray, expected: list[tuple[float, tuple[int, int, int, int], int]]
) -> None:
    defects = defects_from_map(anomaly_map, threshold=0.5, class_name="scratch")
    found = [(round(d.score, 6), d.box, d.area_px) for d in defects]
    assert found == [(round(score, 6), box, area) for score, box, area in expected]
    assert all(d.class_ == "scratch" for d in defects)


def test_the_peak_is_the_highest_pixel_of_its_region() -> None:
    anomaly_map = _map((2, 2, 3, 3, 0.6))
    anomaly_map[3, 3] = 0.95  # a hot centre inside the region
    anomaly_map[7, 9] = 0.4  # below the cut: not a region, and not anyone's peak
    (defect,) = defects_from_map(anomaly_map, threshold=0.5)
    assert defect.score == pytest.approx(0.95)
    assert (defect.box, defect.area_px) == ((2, 2, 5, 5), 9)


def test_at_most_max_defects_strongest_kept() -> None:
    regions = [(0, 2 * i, 1, 1, 0.5 + i / 100) for i in range(5)]
    defects = defects_from_map(_map(*regions), threshold=0.5, max_defects=2)
    assert [round(d.score, 2) for d in defects] == [0.54, 0.53]


@pytest.mark.parametrize("seed", range(6))
def test_labelling_the_box_around_the_cut_finds_what_the_whole_map_has(seed: int) -> None:
    # Regions are labelled inside the box around the pixels above the cut; on blotchy maps
    # with regions anywhere (edges included) the result is the whole map's labelling.
    rng = np.random.default_rng(seed)
    anomaly_map = cv2.GaussianBlur(rng.random((96, 128)).astype(np.float32), (0, 0), 3)
    threshold = float(np.quantile(anomaly_map, 0.9))
    above = (anomaly_map >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    expected = sorted(
        (
            round(float(anomaly_map[labels == k].max()), 6),
            (int(x), int(y), int(x + w), int(y + h)),
            int(area),
        )
        for k, (x, y, w, h, area) in enumerate(stats)
        if k > 0
    )
    found = defects_from_map(anomaly_map, threshold, max_defects=count)
    assert sorted((round(d.score, 6), d.box, d.area_px) for d in found) == expected
    assert len(expected) > 1
