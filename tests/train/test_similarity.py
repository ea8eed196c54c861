"""How close evaluation images are to the training images (train.similarity, _nearness)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defectlens.datasets.layout import Sample
from defectlens.datasets.synthetic import make_part
from defectlens.train.evaluate import Scored, compute_metrics
from defectlens.train.similarity import nearest_similarity, thumbnails


def _parts(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make_part(rng, size=96, defect=None)[0] for _ in range(count)]


def test_a_reshot_part_is_near_its_training_picture_and_a_new_part_is_not() -> None:
    training = _parts(0, 6)
    # The same part again, darker, with less contrast and sensor noise: a re-shot.
    noise = np.random.default_rng(9).normal(0, 3, training[2].shape)
    reshot = np.clip(training[2] * 0.7 + 20 + noise, 0, 255).astype(np.uint8)
    new = _parts(1, 1)[0]
    reference = thumbnails(training)
    near = nearest_similarity(thumbnails([reshot, new, np.dstack([new] * 3)]), reference)
    assert near[0] > 0.97
    assert near[1] < near[0] - 0.1
    assert near[2] == pytest.approx(near[1], abs=1e-5)  # colour or gray: the same picture
    # Against itself, each training image's own row is left out.
    own = np.arange(len(reference))
    assert np.all(nearest_similarity(reference, reference, own) < 0.999)
    assert np.allclose(nearest_similarity(reference, reference), 1.0, atol=1e-5)


def test_a_flat_image_is_near_no_part_and_an_empty_reference_is_refused() -> None:
    flat = thumbnails([np.full((40, 40), 128, np.uint8)])
    assert not flat.any()
    assert nearest_similarity(flat, thumbnails(_parts(0, 4)))[0] < 0.5
    with pytest.raises(ValueError, match="reference"):
        nearest_similarity(flat, thumbnails([]))


def test_good_evaluation_images_that_are_reshots_of_training_parts_are_flagged() -> None:
    training_parts = _parts(0, 12)
    training = thumbnails(training_parts)
    rng = np.random.default_rng(3)

    def scored(image: np.ndarray, defect_type: str, score: float) -> Scored:
        sample = Sample(Path(f"{defect_type}-{score}.png"), defect_type)
        return Scored(sample, score, image[..., None], np.zeros((96, 96)), None)

    new_good = [scored(image, "good", 0.2) for image in _parts(5, 6)]
    defective = [scored(image, "dent", 0.8) for image in _parts(6, 6)]
    reshots = [
        scored(np.clip(image * 0.9 + rng.normal(0, 2, image.shape), 0, 255), "good", 0.2)
        for image in training_parts[:6]
    ]

    fair = compute_metrics(new_good + defective, threshold=0.5, training=training)
    leaky = compute_metrics(reshots + defective, threshold=0.5, training=training)
    assert 0.2 < fair["defective_farther_from_training_auroc"] < 0.8
    assert leaky["defective_farther_from_training_auroc"] == pytest.approx(1.0)
    assert leaky["per_type"]["good"]["nearest_training_similarity"] > 0.97
    assert leaky["per_type"]["dent"]["nearest_training_similarity"] < 0.95
    assert 0.0 < leaky["training_nearest_similarity"] < 0.99
    # Without training thumbnails the figures are left out, not made up.
    assert "defective_farther_from_training_auroc" not in compute_metrics(
        reshots + defective, threshold=0.5
    )
