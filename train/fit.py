"""Fitting the PatchCore network: patch features of good parts, then a greedy coreset bank.

Progress bars go to a terminal only (tqdm `disable=None`): a log file gets no bar lines."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from defectlens.errors import DefectLensError
from defectlens.models.backbone import feature_channels, load_feature_extractor
from defectlens.models.patchcore import PatchCore
from defectlens.train.recipe import Recipe

log = logging.getLogger(__name__)


def build_network(recipe: Recipe, channels: int) -> PatchCore:
    extractor = load_feature_extractor(recipe.backbone.stages)
    return PatchCore(
        extractor,
        input_hw=recipe.image_size,
        channels=channels,
        embed_channels=sum(feature_channels(extractor)),
        feature_dim=recipe.backbone.feature_dim,
        neighbourhood=recipe.backbone.neighbourhood,
        map_sigma=recipe.map_sigma,
        seed=recipe.seed,
        position_gaussian=recipe.backbone.position_gaussian,
        context_neighbourhood=recipe.backbone.context_neighbourhood,
        context_weight=recipe.backbone.context_weight,
        position_weight=recipe.backbone.position_weight,
        row_profile_weight=recipe.backbone.row_profile_weight,
        standardize=recipe.standardize,
        local_sigma=recipe.standardize_sigma,
    ).eval()


def batches(images: np.ndarray, size: int) -> Iterable[torch.Tensor]:
    for start in range(0, len(images), size):
        yield torch.from_numpy(np.ascontiguousarray(images[start : start + size]))


class PositionMoments:
    """Running first and second moments of the patch features at each grid position."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def add(self, embedding: torch.Tensor) -> None:
        n, d, h, w = embedding.shape
        x = embedding.permute(2, 3, 0, 1).reshape(h * w, n, d).double()
        batch_sum, batch_outer = x.sum(dim=1), torch.bmm(x.transpose(1, 2), x)
        if self.sum is None or self.outer is None:
            self.sum, self.outer = batch_sum, batch_outer
        else:
            self.sum += batch_sum
            self.outer += batch_outer
        self.count += n

    def gaussian(self, ridge: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [P, D] and precision [P, D, D]; a ridge keeps every covariance invertible."""
        if self.sum is None or self.outer is None or self.count < 2:
            raise DefectLensError("the position Gaussian needs at least two good images")
        mean = self.sum / self.count
        covariance = (self.outer - self.count * mean[:, :, None] * mean[:, None, :]) / (
            self.count - 1
        )
        eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype)
        precision = torch.empty_like(covariance)
        # One position at a time: batched inverses fail on this CPU with several threads.
        for index in range(covariance.shape[0]):
            factor = torch.linalg.cholesky(covariance[index] + ridge * eye)
            precision[index] = torch.cholesky_inverse(factor)
        return mean.float(), precision.float()


@torch.inference_mode()
def extract_patches(
    network: PatchCore,
    images: np.ndarray,
    batch_size: int,
    pool_fraction: float,
    seed: int,
    moments: list[PositionMoments] | None = None,
) -> tuple[torch.Tensor, int]:
    """Patch embeddings of the images, a random `pool_fraction` of each image's patches.

    Returns the pooled patches [P, D] and the total number of patches seen; when `moments`
    is given (one per enabled Gaussian of the network), every patch also goes into them.
    """
    generator = torch.Generator().manual_seed(seed)
    kept: list[torch.Tensor] = []
    total = 0
    progress = tqdm(total=len(images), desc="features", unit="img", leave=False, disable=None)
    for batch in batches(images, batch_size):
        embedding, context = network.embed(batch)
        if moments is not None:
            for gaussian, running in zip(network.gaussians, moments, strict=True):
                source = context if gaussian is network.context_gaussian else embedding
                assert source is not None
                running.add(gaussian.features(source))
        patches = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])
        total += patches.shape[0]
        take = max(1, round(patches.shape[0] * pool_fraction))
        chosen = torch.randperm(patches.shape[0], generator=generator)[:take]
        kept.append(patches[chosen].clone())
        progress.update(batch.shape[0])
    progress.close()
    return torch.cat(kept).contiguous(), total


def greedy_coreset(patches: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of `size` rows chosen by farthest-point (k-center greedy) selection.

    Each step is one matrix-vector product over the pool and an in-place minimum: the
    distance of every patch to its nearest chosen centre is kept up to date instead of
    being recomputed.
    """
    count = patches.shape[0]
    size = min(size, count)
    sq_norm = (patches * patches).sum(dim=1)
    nearest = torch.full((count,), float("inf"))
    chosen = torch.empty(size, dtype=torch.long)
    current = int(torch.randint(count, (1,), generator=torch.Generator().manual_seed(seed)))
    steps = tqdm(range(size), desc="coreset", unit="pt", leave=False, mininterval=0.5, disable=None)
    for step in steps:
        chosen[step] = current
        distance = torch.addmv(sq_norm + sq_norm[current], patches, patches[current], alpha=-2.0)
        torch.minimum(nearest, distance, out=nearest)
        current = int(torch.argmax(nearest))
    return chosen


def fit_memory_bank(network: PatchCore, images: np.ndarray, recipe: Recipe) -> dict[str, int]:
    """Fill the network's memory bank (and position Gaussians) from good images."""
    if network.standardize != "off":
        network.set_intensity_reference(*intensity_reference(images))
    moments = [PositionMoments() for _ in network.gaussians]
    pool, total = extract_patches(
        network, images, recipe.batch_size, recipe.coreset.pool_fraction, recipe.seed, moments
    )
    size = max(16, min(recipe.coreset.max_size, round(total * recipe.coreset.ratio)))
    log.info("coreset: %d of %d pooled patches (%d seen)", size, pool.shape[0], total)
    chosen = greedy_coreset(pool, size, recipe.seed)
    network.set_memory_bank(pool[chosen])
    for gaussian, running in zip(network.gaussians, moments, strict=True):
        gaussian.set(*running.gaussian())
    if moments:
        _balance_terms(network, images, recipe.batch_size)
    return {"patches_seen": total, "pool": int(pool.shape[0]), "bank": int(chosen.shape[0])}


SCALE_IMAGES = 64


@torch.inference_mode()
def _balance_terms(network: PatchCore, images: np.ndarray, batch_size: int) -> None:
    """Divide each score term by its spread on good patches so neither drowns the other."""
    step = max(1, len(images) // SCALE_IMAGES)
    terms: list[list[torch.Tensor]] = [[] for _ in range(1 + len(network.gaussians))]
    for batch in batches(images[::step], batch_size):
        for seen, distances in zip(
            terms, network.term_distances(*network.embed(batch)), strict=True
        ):
            seen.append(distances.flatten())
    network.set_term_scales(*(float(torch.cat(seen).std()) or 1.0 for seen in terms))


def intensity_reference(images: np.ndarray) -> tuple[float, float]:
    """The training images' median brightness and contrast (grey levels), which
    standardisation brings every image to."""
    brightness = [float(image.mean()) for image in images]
    contrast = [float(image.std()) for image in images]
    return float(np.median(brightness)), float(np.median(contrast))


@torch.inference_mode()
def raw_scores(
    network: PatchCore, images: np.ndarray, batch_size: int, desc: str = "scoring"
) -> np.ndarray:
    """Raw (unnormalised) image scores in PyTorch, for calibration."""
    scores = [
        network.raw_scores(batch).numpy()
        for batch in tqdm(
            batches(images, batch_size),
            desc=desc,
            unit="batch",
            leave=False,
            total=-(-len(images) // batch_size),
            disable=None,
        )
    ]
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)
