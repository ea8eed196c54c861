"""The PatchCore network and its greedy coreset, on tensors small enough to reason about."""

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
