"""Fitting the PatchCore network: patch features of good parts, then a greedy coreset bank."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

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
        position_weight=recipe.backbone.position_weight,
    ).eval()


def batches(images: np.ndarray, size: int) -> Iterable[torch.Tensor]:
    for start in range(0, len(images), size):
        yield torch.from_numpy(np.ascontiguousarray(images[start : start + size]))


@torch.inference_mode()
def extract_patches(
    network: PatchCore,
    images: np.ndarray,
    batch_size: int,
    pool_fraction: float,
    seed: int,
) -> tuple[torch.Tensor, int]:
    """Patch embeddings of the images, a random `pool_fraction` of each image's patches.

    Returns the pooled patches [P, D] and the total number of patches seen.
    """
    generator = torch.Generator().manual_seed(seed)
    kept: list[torch.Tensor] = []
    total = 0
    progress = tqdm(total=len(images), desc="features", unit="img", leave=False)
    for batch in batches(images, batch_size):
        embedding = network.embed(batch)
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
    for step in tqdm(range(size), desc="coreset", unit="pt", leave=False, mininterval=0.5):
        chosen[step] = current
        distance = torch.addmv(sq_norm + sq_norm[current], patches, patches[current], alpha=-2.0)
        torch.minimum(nearest, distance, out=nearest)
        current = int(torch.argmax(nearest))
    return chosen


def fit_memory_bank(network: PatchCore, images: np.ndarray, recipe: Recipe) -> dict[str, int]:
    """Fill the network's memory bank from good images; returns the sizes involved."""
    pool, total = extract_patches(
        network, images, recipe.batch_size, recipe.coreset.pool_fraction, recipe.seed
    )
    size = max(16, min(recipe.coreset.max_size, round(total * recipe.coreset.ratio)))
    log.info("coreset: %d of %d pooled patches (%d seen)", size, pool.shape[0], total)
    chosen = greedy_coreset(pool, size, recipe.seed)
    network.set_memory_bank(pool[chosen])
    return {"patches_seen": total, "pool": int(pool.shape[0]), "bank": int(chosen.shape[0])}


@torch.inference_mode()
def raw_scores(
    network: PatchCore, images: np.ndarray, batch_size: int, desc: str = "scoring"
) -> tuple[np.ndarray, np.ndarray]:
    """Raw (unnormalised) image scores and maps [N, H, W] in PyTorch, for calibration."""
    maps: list[np.ndarray] = []
    for batch in tqdm(
        batches(images, batch_size),
        desc=desc,
        unit="batch",
        leave=False,
        total=-(-len(images) // batch_size),
    ):
        maps.append(network.raw_map(batch).numpy())
    stacked = np.concatenate(maps) if maps else np.zeros((0, *network.input_hw), np.float32)
    return stacked.reshape(len(stacked), -1).max(axis=1), stacked
