"""PatchCore-style anomaly network: pretrained patch features against a memory bank of good ones.

A patch's score is its distance to the nearest entry of a coreset memory bank (PatchCore)
plus, optionally, its Mahalanobis distance to the Gaussian of good patches at the same
place in the image (PaDiM-style): on aligned parts, where a patch is matters as much as
what it looks like. A second, wide-context Gaussian (features averaged over a large
window, on a coarser grid) catches defects larger than a patch, such as a whole region of
uneven surface, whose inside looks locally normal. A row-profile Gaussian (the features
of each row of patches averaged across the image) catches bands that run across the part,
such as a strip ground differently. Each term is divided by its spread on good patches and
weighted, and they add up.

Images can be standardised first: each image's brightness and contrast are brought to
those of the training images, so exposure drift on the line does not read as a defect;
`local` standardisation does it within a window around each pixel, which also evens out
uneven lighting across the part.

`forward` is exactly what ships to ONNX: uint8 NHWC image in, normalised image score and
anomaly map out, with pre- and post-processing inside. Fitting (coreset selection,
calibration) lives in `defectlens.train.fit`: it calls `embed`, then `set_memory_bank`,
`PositionGaussian.set`, `set_intensity_reference` and `set_term_scales`; the pipeline then
calls `set_normalisation`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from defectlens.models.backbone import IMAGENET_MEAN, IMAGENET_STD, fix_same_padding

Standardize = Literal["off", "global", "local"]
LOCAL_STATS_REDUCTION = 4
"""Local brightness and contrast are smooth at the window's scale, so they are computed on a
grid four times as coarse as the image (a sixteenth of the work) and brought back."""


def gaussian_kernel1d(sigma: float, max_radius: int | None = None) -> torch.Tensor:
    radius = max(1, math.ceil(4.0 * sigma))
    if max_radius is not None:
        radius = max(1, min(radius, max_radius))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


GAUSSIAN_POOL = 2
"""The local Gaussians sit on a grid twice as coarse as the patches: a quarter of the
precision matrices to read per image, and (measured) no loss of accuracy."""
CONTEXT_POOL = 4
"""The context Gaussians see a wide window already, so a grid four times as coarse does."""
MAP_REDUCTION = 4


def aggregate(features: list[torch.Tensor], window: int) -> torch.Tensor:
    """Average each stage's map over a window, bring all to the finest grid, stack them."""
    size = features[0].shape[-2:]
    pooled = []
    for feature in features:
        if window > 1:
            feature = F.avg_pool2d(
                feature, window, stride=1, padding=window // 2, count_include_pad=False
            )
        if feature.shape[-2:] != size:
            feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
        pooled.append(feature)
    return torch.cat(pooled, dim=1)


class PositionGaussian(nn.Module):
    """The Gaussian of good patch features at each place of a coarse grid (PaDiM-style).

    `distances` is the Mahalanobis distance of each patch to its place's Gaussian, brought
    back to the patch grid. With `rows`, a place is a whole row of patches, its features
    averaged across the image (a row profile). Disabled instances hold placeholder buffers
    and are skipped.
    """

    mean: torch.Tensor
    precision: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self, grid_hw: tuple[int, int], pool: int, dim: int, enabled: bool, rows: bool = False
    ) -> None:
        super().__init__()
        self.enabled = enabled
        self.pool = pool
        self.rows = rows
        self.grid_hw = grid_hw
        self.hw = (grid_hw[0] // pool, 1 if rows else grid_hw[1] // pool)
        positions = self.hw[0] * self.hw[1] if enabled else 1
        width = dim if enabled else 1
        self.register_buffer("mean", torch.zeros(positions, width))
        self.register_buffer("precision", torch.zeros(positions, width, width))
        self.register_buffer("scale", torch.tensor(1.0))

    def features(self, embedding: torch.Tensor) -> torch.Tensor:
        """Patch embeddings averaged onto this Gaussian's grid: [N, D, h/pool, w/pool], or
        [N, D, h/pool, 1] for a row profile."""
        pooled = F.avg_pool2d(embedding, self.pool) if self.pool > 1 else embedding
        return pooled.mean(dim=3, keepdim=True) if self.rows else pooled

    def set(self, mean: torch.Tensor, precision: torch.Tensor) -> None:
        """Per-position mean [h*w, D] and inverse covariance [h*w, D, D] of good patches."""
        self.mean = mean.detach().float().contiguous()
        self.precision = precision.detach().float().contiguous()

    def distances(self, embedding: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance to each position's Gaussian, on the patch grid: [N, h, w]."""
        coarse = self.features(embedding)
        n, d, h, w = coarse.shape
        centred = coarse.permute(2, 3, 0, 1).reshape(h * w, n, d) - self.mean[:, None]
        whitened = torch.bmm(centred, self.precision)
        distance2 = (whitened * centred).sum(dim=2).clamp_min(0.0)
        distance = distance2.sqrt().reshape(h, w, n).permute(2, 0, 1).unsqueeze(1)
        return F.interpolate(distance, size=self.grid_hw, mode="bilinear").squeeze(1)


class PatchCore(nn.Module):
    """Nearest-neighbour patch distances to a bank of good-part patch features.

    Args:
        extractor: backbone returning feature maps of two (or more) stages, coarsest last.
        input_hw: the model input size (height, width) the graph is exported for.
        channels: 1 for gray images (replicated to the backbone's 3), 3 for RGB.
        feature_dim: the embedding width kept after random projection (None keeps all).
        neighbourhood: side of the local average pooling window on each feature map.
        map_sigma: Gaussian smoothing of the anomaly map, in input pixels.
        bank_size: rows of the memory bank (filled by `set_memory_bank`).
        position_gaussian: add the per-position Mahalanobis term (`local_gaussian`).
        context_neighbourhood: pooling window of the wide-context Gaussian term
            (`context_gaussian`); 0 leaves it out.
        context_weight: its weight against the other (spread-normalised) terms.
        position_weight: the weight of the per-position Gaussian term.
        row_profile_weight: the weight of the row-profile Gaussian term; 0 leaves it out.
        standardize: bring each image's brightness and contrast to the training images'
            (set by `set_intensity_reference`) before the backbone: "global" over the whole
            image, "local" within a Gaussian window of `local_sigma` pixels, or "off".
    """

    mean: torch.Tensor
    std: torch.Tensor
    projection: torch.Tensor
    memory_bank: torch.Tensor
    bank_sq_norm: torch.Tensor
    blur_x: torch.Tensor
    blur_y: torch.Tensor
    local_blur_x: torch.Tensor
    local_blur_y: torch.Tensor
    raw_threshold: torch.Tensor
    scale: torch.Tensor
    nn_scale: torch.Tensor
    intensity_reference: torch.Tensor

    def __init__(
        self,
        extractor: nn.Module,
        *,
        input_hw: tuple[int, int],
        channels: int,
        embed_channels: int,
        feature_dim: int | None,
        neighbourhood: int = 3,
        map_sigma: float = 4.0,
        bank_size: int = 1,
        seed: int = 0,
        position_gaussian: bool = False,
        context_neighbourhood: int = 0,
        context_weight: float = 1.0,
        position_weight: float = 1.0,
        row_profile_weight: float = 0.0,
        standardize: Standardize = "off",
        local_sigma: float = 24.0,
    ) -> None:
        super().__init__()
        fix_same_padding(extractor, input_hw)
        self.extractor = extractor
        self.input_hw = input_hw
        self.channels = channels
        self.neighbourhood = neighbourhood
        self.context_neighbourhood = context_neighbourhood
        self.context_weight = context_weight
        self.position_weight = position_weight
        self.row_profile_weight = row_profile_weight
        self.standardize = standardize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)
        # Brightness and contrast (grey levels) every image is brought to when standardising.
        self.register_buffer("intensity_reference", torch.tensor([128.0, 32.0]))
        dim = embed_channels if feature_dim is None else feature_dim
        if feature_dim is None:
            projection = torch.empty(0, 0)  # nothing to store: `embed` skips the product
        else:
            # A fixed Gaussian projection keeps distances (Johnson-Lindenstrauss) and makes
            # both the coreset search and the per-image nearest-neighbour search cheaper.
            generator = torch.Generator().manual_seed(seed)
            projection = torch.randn(embed_channels, dim, generator=generator) / math.sqrt(dim)
        self.register_buffer("projection", projection)
        self.projects = feature_dim is not None
        self.register_buffer("memory_bank", torch.zeros(bank_size, dim))
        self.register_buffer("bank_sq_norm", torch.zeros(bank_size))
        self.smooth_hw = (input_hw[0] // MAP_REDUCTION, input_hw[1] // MAP_REDUCTION)
        kernel = gaussian_kernel1d(map_sigma / MAP_REDUCTION)
        self.register_buffer("blur_x", kernel.view(1, 1, 1, -1))
        self.register_buffer("blur_y", kernel.view(1, 1, -1, 1))
        # Local standardisation's window on the coarse grid; the kernel stops short of the
        # grid's size (reflect padding needs that on small inputs).
        stats_hw = (input_hw[0] // LOCAL_STATS_REDUCTION, input_hw[1] // LOCAL_STATS_REDUCTION)
        local = gaussian_kernel1d(local_sigma / LOCAL_STATS_REDUCTION, min(stats_hw) - 1)
        self.register_buffer("local_blur_x", local.view(1, 1, 1, -1).repeat(channels, 1, 1, 1))
        self.register_buffer("local_blur_y", local.view(1, 1, -1, 1).repeat(channels, 1, 1, 1))
        # Normalisation: sigmoid((raw - raw_threshold) / scale); set by calibration.
        self.register_buffer("raw_threshold", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("nn_scale", torch.tensor(1.0))
        with torch.no_grad():
            grid = self.extractor(torch.zeros(1, 3, *input_hw))[0].shape[-2:]
        self.grid_hw = (int(grid[0]), int(grid[1]))
        self.local_gaussian = PositionGaussian(self.grid_hw, GAUSSIAN_POOL, dim, position_gaussian)
        self.context_gaussian = PositionGaussian(
            self.grid_hw, CONTEXT_POOL, dim, context_neighbourhood > 0
        )
        self.row_gaussian = PositionGaussian(
            self.grid_hw, 1, dim, row_profile_weight > 0, rows=True
        )

    @property
    def gaussians(self) -> list[PositionGaussian]:
        """The enabled Gaussian terms: per position, wide context, row profile."""
        return [
            g for g in (self.local_gaussian, self.context_gaussian, self.row_gaussian) if g.enabled
        ]

    def weight_of(self, gaussian: PositionGaussian) -> float:
        """A Gaussian term's weight against the nearest-neighbour term (weight 1)."""
        if gaussian is self.context_gaussian:
            return self.context_weight
        if gaussian is self.row_gaussian:
            return self.row_profile_weight
        return self.position_weight

    # -- pieces, each usable on its own -------------------------------------------------
    def set_intensity_reference(self, brightness: float, contrast: float) -> None:
        self.intensity_reference = torch.tensor([float(brightness), float(contrast)])

    def to_backbone_input(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW with three channels."""
        x = image.permute(0, 3, 1, 2).float()
        if self.standardize == "global":
            x = standardize_intensity(x, self.intensity_reference)
        elif self.standardize == "local":
            x = standardize_locally(
                x, self.intensity_reference, self.local_blur_x, self.local_blur_y
            )
        if self.channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def embed(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Patch embeddings [N, D, h, w] at the finest requested stage's resolution: the
        local one (`neighbourhood` window) and the wide-context one (None when off)."""
        features = self.extractor(self.to_backbone_input(image))
        local = self._project(aggregate(features, self.neighbourhood))
        if not self.context_gaussian.enabled:
            return local, None
        return local, self._project(aggregate(features, self.context_neighbourhood))

    def _project(self, stacked: torch.Tensor) -> torch.Tensor:
        if not self.projects:
            return stacked
        return torch.einsum("ndhw,dk->nkhw", stacked, self.projection)

    def set_memory_bank(self, bank: torch.Tensor) -> None:
        self.memory_bank = bank.detach().float().contiguous()
        self.bank_sq_norm = (self.memory_bank**2).sum(dim=1)

    def set_normalisation(self, raw_threshold: float, scale: float) -> None:
        self.raw_threshold = torch.tensor(float(raw_threshold))
        self.scale = torch.tensor(float(scale))

    def patch_distances(self, embedding: torch.Tensor) -> torch.Tensor:
        """Distance of every patch to its nearest bank entry: [N, h, w]."""
        n, d, h, w = embedding.shape
        queries = embedding.permute(0, 2, 3, 1).reshape(-1, d)
        sq = (queries**2).sum(dim=1, keepdim=True)
        dist2 = sq - 2.0 * queries @ self.memory_bank.T + self.bank_sq_norm
        nearest = dist2.min(dim=1).values.clamp_min(0.0).sqrt()
        return nearest.reshape(n, h, w)

    def set_term_scales(self, nn_scale: float, *gaussian_scales: float) -> None:
        """Each term's spread on good patches: nearest neighbour, then each enabled Gaussian."""
        if len(gaussian_scales) != len(self.gaussians):
            raise ValueError(f"{len(self.gaussians)} Gaussian scales expected")
        self.nn_scale = torch.tensor(float(nn_scale))
        for gaussian, spread in zip(self.gaussians, gaussian_scales, strict=True):
            gaussian.scale = torch.tensor(float(spread))

    def term_distances(
        self, local: torch.Tensor, context: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Each term's raw patch distances [N, h, w]: nearest neighbour, then each Gaussian."""
        terms = [self.patch_distances(local)]
        for gaussian in self.gaussians:
            source = context if gaussian is self.context_gaussian else local
            assert source is not None  # the context embedding exists when its term is on
            terms.append(gaussian.distances(source))
        return terms

    def patch_scores(self, local: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """The combined patch anomaly score [N, h, w] (raw units): each term over its spread."""
        terms = self.term_distances(local, context)
        scores = terms[0] / self.nn_scale
        for gaussian, term in zip(self.gaussians, terms[1:], strict=True):
            scores = scores + self.weight_of(gaussian) * term / gaussian.scale
        return scores

    def smoothed_scores(self, image: torch.Tensor) -> torch.Tensor:
        """Patch scores upsampled to a quarter of the input size and Gaussian-smoothed.

        Smoothing at a quarter of the resolution costs a sixteenth of doing it at full size
        and loses nothing: the scores come on a stride-8 grid and are smooth at that scale.
        Returns raw scores [N, 1, H/4, W/4].
        """
        distances = self.patch_scores(*self.embed(image)).unsqueeze(1)
        upsampled = F.interpolate(distances, size=self.smooth_hw, mode="bilinear")
        pad = self.blur_x.shape[-1] // 2
        smoothed = F.conv2d(F.pad(upsampled, (pad, pad, 0, 0), mode="replicate"), self.blur_x)
        return F.conv2d(F.pad(smoothed, (0, 0, pad, pad), mode="replicate"), self.blur_y)

    def raw_scores(self, image: torch.Tensor) -> torch.Tensor:
        """Raw image scores [N] before normalisation (what calibration works on)."""
        return self.smoothed_scores(image).flatten(1).amax(dim=1)

    # -- what ships ---------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [N, H, W, C] -> (score [N], anomaly_map [N, H, W]), both normalised to (0, 1).

        The score is the peak of the map, so a part is NG exactly when some pixel is.
        """
        coarse = torch.sigmoid((self.smoothed_scores(image) - self.raw_threshold) / self.scale)
        score = coarse.flatten(1).amax(dim=1)
        anomaly_map = F.interpolate(coarse, size=self.input_hw, mode="bilinear").squeeze(1)
        return score, anomaly_map


def standardize_intensity(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Shift and scale each image [N, C, H, W] (grey levels) to the reference brightness and
    contrast, over all its pixels and channels (colour balance is kept)."""
    brightness = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (x - brightness).square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    # A flat image (contrast near 0) is only shifted: its noise is not blown up.
    scaled = (x - brightness) / contrast.clamp_min(1.0) * reference[1] + reference[0]
    return scaled.clamp(0.0, 255.0)


def standardize_locally(
    x: torch.Tensor, reference: torch.Tensor, blur_x: torch.Tensor, blur_y: torch.Tensor
) -> torch.Tensor:
    """Bring each pixel's neighbourhood to the reference brightness and contrast. The
    neighbourhood is a Gaussian window: `blur_x` [C, 1, 1, K] and `blur_y` [C, 1, K, 1]
    (one row per channel) on a grid `LOCAL_STATS_REDUCTION` times as coarse as the image.

    The local mean is taken first; the contrast is then the local mean square of the
    difference from it, so shading (a slope in brightness) is not counted as contrast.
    Both are averaged onto the coarse grid (the fine texture still counts), blurred there
    and brought back. A flat neighbourhood (contrast under two grey levels) is only
    shifted."""
    mean = _local_mean(x, blur_x, blur_y)
    spread = _local_mean((x - mean).square(), blur_x, blur_y)
    contrast = spread.clamp_min(0.0).sqrt().clamp_min(2.0)
    return ((x - mean) / contrast * reference[1] + reference[0]).clamp(0.0, 255.0)


def _local_mean(x: torch.Tensor, blur_x: torch.Tensor, blur_y: torch.Tensor) -> torch.Tensor:
    coarse = F.avg_pool2d(x, LOCAL_STATS_REDUCTION)
    pad, channels = blur_x.shape[-1] // 2, blur_x.shape[0]
    coarse = F.conv2d(F.pad(coarse, (pad, pad, 0, 0), mode="reflect"), blur_x, groups=channels)
    coarse = F.conv2d(F.pad(coarse, (0, 0, pad, pad), mode="reflect"), blur_y, groups=channels)
    return F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
