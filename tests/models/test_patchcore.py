"""The PatchCore network and its greedy coreset, on tensors small enough to reason about."""

import pytest
import torch

from defectlens.train.fit import greedy_coreset


def test_greedy_coreset_picks_far_apart_points_first() -> None:
    # Two tight clusters and one outlier: three picks must cover all three places.
    cluster_a = torch.zeros(50, 2) + torch.randn(50, 2) * 0.01
    cluster_b = torch.full((50, 2), 5.0) + torch.randn(50, 2) * 0.01
    outlier = torch.tensor([[-9.0, 9.0]])
    points = torch.cat([cluster_a, cluster_b, outlier])
    chosen = greedy_coreset(points, 3, seed=0).tolist()
    groups = {0 if i < 50 else 1 if i < 100 else 2 for i in chosen}
    assert groups == {0, 1, 2}
    assert len(set(chosen)) == 3


def test_greedy_coreset_never_asks_for_more_than_exists() -> None:
    assert len(greedy_coreset(torch.randn(5, 4), 10, seed=1)) == 5


def test_position_moments_match_numpy_mean_and_inverse_covariance() -> None:
    import numpy as np

    from defectlens.train.fit import PositionMoments

    rng = np.random.default_rng(0)
    # 40 images, 3 features, a 2x2 grid; feed them in two batches
    data = rng.normal(size=(40, 3, 2, 2)) * np.array([1.0, 2.0, 0.5])[None, :, None, None]
    moments = PositionMoments()
    moments.add(torch.from_numpy(data[:25]).float())
    moments.add(torch.from_numpy(data[25:]).float())
    mean, precision = moments.gaussian(ridge=0.01)
    at_00 = data[:, :, 0, 0]
    assert np.allclose(mean[0].numpy(), at_00.mean(axis=0), atol=1e-5)
    expected = np.linalg.inv(np.cov(at_00, rowvar=False) + 0.01 * np.eye(3))
    assert np.allclose(precision[0].numpy(), expected, rtol=1e-4, atol=1e-4)
    # position (1, 0) is row-major index 2
    assert np.allclose(mean[2].numpy(), data[:, :, 1, 0].mean(axis=0), atol=1e-5)


def test_standardisation_undoes_exposure_changes() -> None:
    from defectlens.models.patchcore import standardize_intensity

    generator = torch.Generator().manual_seed(0)
    image = 60.0 + 40.0 * torch.rand(2, 1, 32, 32, generator=generator)
    reference = torch.tensor([128.0, 32.0])
    brighter = image * 1.5 + 20.0  # a longer exposure: more gain, more offset
    a, b = standardize_intensity(image, reference), standardize_intensity(brighter, reference)
    assert torch.allclose(a, b, atol=1e-3)
    assert torch.allclose(a.mean(dim=(1, 2, 3)), torch.tensor([128.0, 128.0]), atol=1e-3)
    assert torch.allclose(a.std(dim=(1, 2, 3), correction=0), torch.tensor([32.0, 32.0]), atol=1e-2)
    flat = torch.full((1, 1, 8, 8), 200.0)  # no contrast: shifted only, noise not amplified
    assert torch.equal(standardize_intensity(flat, reference), torch.full((1, 1, 8, 8), 128.0))


def test_context_term_sees_a_wide_window_on_a_coarse_grid() -> None:
    from defectlens.models.backbone import feature_channels, load_feature_extractor
    from defectlens.models.patchcore import CONTEXT_POOL, PatchCore

    extractor = load_feature_extractor([2, 3])
    network = PatchCore(
        extractor,
        input_hw=(128, 128),
        channels=1,
        embed_channels=sum(feature_channels(extractor)),
        feature_dim=None,
        position_gaussian=True,
        context_neighbourhood=7,
    ).eval()
    assert [g.pool for g in network.gaussians] == [2, CONTEXT_POOL]
    with torch.inference_mode():
        local, context = network.embed(torch.zeros(1, 128, 128, 1, dtype=torch.uint8))
    assert context is not None and local.shape == context.shape == (1, 152, 16, 16)
    assert network.context_gaussian.mean.shape == (16 // CONTEXT_POOL * (16 // CONTEXT_POOL), 152)
    with pytest.raises(ValueError, match="2 Gaussian scales"):
        network.set_term_scales(1.0, 2.0)


def test_local_standardisation_evens_out_shading_and_exposure() -> None:
    from defectlens.models.patchcore import (
        LOCAL_STATS_REDUCTION,
        gaussian_kernel1d,
        standardize_intensity,
        standardize_locally,
    )

    generator = torch.Generator().manual_seed(1)
    texture = torch.rand(1, 1, 128, 128, generator=generator) - 0.5
    # Lit from the left: the right side is darker and flatter, the texture is the same.
    light = torch.linspace(1.0, 0.4, 128).view(1, 1, 1, -1)
    shaded = 40.0 + 160.0 * light + 60.0 * light * texture
    reference = torch.tensor([128.0, 32.0])
    kernel = gaussian_kernel1d(12 / LOCAL_STATS_REDUCTION, 128 // LOCAL_STATS_REDUCTION - 1)
    blurs = kernel.view(1, 1, 1, -1), kernel.view(1, 1, -1, 1)
    local = standardize_locally(shaded, reference, *blurs)
    whole = standardize_intensity(shaded, reference)
    left, right = (slice(24, 104), slice(8, 40)), (slice(24, 104), slice(88, 120))

    def spread(x: torch.Tensor, where: tuple[slice, slice]) -> tuple[float, float]:
        patch = x[0, 0][where]
        return float(patch.mean()), float(patch.std())

    (mean_l, std_l), (mean_r, std_r) = spread(local, left), spread(local, right)
    assert abs(mean_l - 128) < 4 and abs(mean_r - 128) < 4
    assert abs(std_l - 32) < 4 and abs(std_r - 32) < 4
    # Whole-image standardisation keeps the shading: the sides still differ.
    assert spread(whole, left)[0] - spread(whole, right)[0] > 40
    # A longer exposure changes nothing; a flat image is only shifted.
    assert torch.allclose(
        local, standardize_locally(shaded * 1.3 + 10, reference, *blurs), atol=0.05
    )
    flat = torch.full((1, 1, 128, 128), 200.0)
    assert torch.allclose(
        standardize_locally(flat, reference, *blurs), torch.full_like(flat, 128.0)
    )


def test_row_profile_term_marks_a_whole_band_across_the_part() -> None:
    from defectlens.models.patchcore import PositionGaussian
    from defectlens.train.fit import PositionMoments

    generator = torch.Generator().manual_seed(2)
    rows = PositionGaussian((8, 8), 1, 4, enabled=True, rows=True)
    assert rows.hw == (8, 1) and rows.mean.shape == (8, 4)
    moments = PositionMoments()
    moments.add(rows.features(torch.randn(300, 4, 8, 8, generator=generator)))
    rows.set(*moments.gaussian())
    part = torch.randn(1, 4, 8, 8, generator=generator)
    band = part.clone()
    band[:, 0, 2:4, :] += 3.0  # rows 2 and 3 differ all the way across
    spot = part.clone()
    spot[:, 0, 6, 1] += 3.0  # one patch: averaged over its row, barely seen
    base, with_band, with_spot = (rows.distances(x)[0] for x in (part, band, spot))
    assert with_band.shape == (8, 8)
    assert torch.all(with_band[2:4] > base[2:4] + 5)  # the whole band, every column
    assert torch.allclose(with_band[[0, 1, 4, 5, 6, 7]], base[[0, 1, 4, 5, 6, 7]], atol=1e-4)
    assert float((with_spot[6] - base[6]).abs().max()) < 3
