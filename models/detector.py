"""The supervised defect detector: a CenterNet-style heat-map head on the pretrained
backbone's stride-4 and stride-8 stages, with the part's aligned reference (a defect-free
template) as a second input where the recipe gives one.

The backbone sees three channels: the part, its reference and their absolute difference
(or the part three times, without a reference), so a defect is what differs from the
template *and* looks like a defect. The head predicts, at stride 4, a heat map per class
(a peak at each defect's centre) and four numbers per cell: the centre's sub-cell offset
and the log of the box's width and height. Boxes come from peaks, without NMS.

`forward` is what ships to ONNX: uint8 NHWC image (and reference) in, the top-K `boxes`
[N, K, 4] (input pixels), `scores` [N, K] and `labels` [N, K] out, decoding inside the
graph. Training calls `maps` (heat-map logits and box regression) through
`defectlens.train.detection`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from defectlens.models.backbone import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    feature_channels,
    load_feature_extractor,
)

STRIDE = 4
"""Output grid of the heat maps, in input pixels (DeepPCB defects are 10-40 px)."""
HEAT_PRIOR = 0.01
"""Initial probability of a peak anywhere (the focal-loss prior of RetinaNet/CenterNet)."""


def separable(channels: int, dilation: int = 1) -> nn.Sequential:
    """A depthwise 3x3 then pointwise conv: the head's cost at stride 4 stays small."""
    return nn.Sequential(
        nn.Conv2d(
            channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False
        ),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class DefectDetector(nn.Module):
    def __init__(
        self,
        classes: int,
        *,
        reference: bool,
        channels: int = 1,
        width: int = 64,
        top_k: int = 100,
        pretrained: bool = True,
        frozen_stem: bool = True,
    ) -> None:
        super().__init__()
        if reference and channels != 1:
            raise ValueError("a detector with a reference input takes gray images")
        self.classes = classes
        self.reference = reference
        self.channels = channels
        self.top_k = top_k
        self.frozen_stem = frozen_stem
        self.backbone: Any = load_feature_extractor([1, 2]) if pretrained else _bare_extractor()
        # timm's feature extractor runs every block; the stride-16 and -32 ones are unused.
        self.backbone.blocks = self.backbone.blocks[:3]  # type: ignore[index]
        fine, coarse = feature_channels(self.backbone)
        self.lateral_fine = nn.Conv2d(fine, width, 1)
        self.lateral_coarse = nn.Conv2d(coarse, width, 1)
        self.fuse = nn.Sequential(separable(width), separable(width, 2), separable(width, 4))
        self.heat = nn.Conv2d(width, classes, 1)
        self.box = nn.Conv2d(width, 4, 1)
        with torch.no_grad():
            self.heat.bias.fill_(-math.log((1 - HEAT_PRIOR) / HEAT_PRIOR))  # type: ignore[union-attr]
        if frozen_stem:
            for module in self.stem():
                module.requires_grad_(False)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def stem(self) -> list[nn.Module]:
        """The backbone's stride-2 layers: generic edge filters, frozen by default (the
        costliest layers to train, at the highest resolution)."""
        return [self.backbone.conv_stem, self.backbone.bn1, self.backbone.blocks[0]]

    def train(self, mode: bool = True) -> DefectDetector:
        super().train(mode)
        if self.frozen_stem:
            for module in self.stem():
                module.eval()
        return self

    def planes(self, image: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """uint8 NHWC batches to the backbone's normalised NCHW input."""
        x = image.permute(0, 3, 1, 2).float() / 255.0
        if self.reference:
            if reference is None:
                raise ValueError("this detector needs the part's reference image")
            r = reference.permute(0, 3, 1, 2).float() / 255.0
            x = torch.cat([x, r, (x - r).abs()], dim=1)
        elif self.channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def maps(self, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(heat-map logits [N, C, h, w], box regression [N, 4, h, w]) at stride 4."""
        fine, coarse = self.backbone(planes)
        x = self.lateral_fine(fine) + F.interpolate(
            self.lateral_coarse(coarse), size=fine.shape[-2:], mode="nearest"
        )
        x = self.fuse(x)
        return self.heat(x), self.box(x)

    def forward(
        self, image: torch.Tensor, reference: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heat, box = self.maps(self.planes(image, reference))
        return decode(heat, box, self.top_k, (image.shape[1], image.shape[2]))


def decode(
    heat_logits: torch.Tensor, box: torch.Tensor, top_k: int, input_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks to boxes: a cell is a peak when it is the maximum of its 3x3 neighbourhood;
    the K highest peaks over all classes become (boxes [N, K, 4] in input pixels, clipped;
    scores [N, K]; labels [N, K] int64)."""
    heat = torch.sigmoid(heat_logits)
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
    n, classes, h, w = heat.shape
    k = min(top_k, classes * h * w)
    scores, index = peaks.reshape(n, classes * h * w).topk(k, dim=1)
    labels = torch.div(index, h * w, rounding_mode="floor")
    cell = index - labels * (h * w)
    ys = torch.div(cell, w, rounding_mode="floor")
    xs = cell - ys * w
    values = box.reshape(n, 4, h * w).gather(2, cell.unsqueeze(1).expand(n, 4, k))
    cx = (xs.to(heat.dtype) + values[:, 0]) * STRIDE
    cy = (ys.to(heat.dtype) + values[:, 1]) * STRIDE
    half_w = torch.exp(values[:, 2].clamp(max=8.0)) * (STRIDE / 2)
    half_h = torch.exp(values[:, 3].clamp(max=8.0)) * (STRIDE / 2)
    height, width = input_hw
    boxes = torch.stack(
        [
            (cx - half_w).clamp(0, width),
            (cy - half_h).clamp(0, height),
            (cx + half_w).clamp(0, width),
            (cy + half_h).clamp(0, height),
        ],
        dim=2,
    )
    return boxes, scores, labels


def _bare_extractor() -> nn.Module:
    """The backbone's layers without the ImageNet weights (tests that need no accuracy)."""
    import timm

    from defectlens.models.backbone import ARCHITECTURE

    return timm.create_model(ARCHITECTURE, pretrained=False, features_only=True, out_indices=(1, 2))
