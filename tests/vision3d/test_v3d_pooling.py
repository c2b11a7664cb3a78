"""Pooling: voxel rules on hand-made points, the seeded cap, farthest point sampling."""

from __future__ import annotations

import pytest
import torch

from eightfold.vision3d import cap_tokens, farthest_point_sampling, fps_pool, voxel_pool, voxelize


def test_voxel_ids_are_lexicographic_and_rounding_is_half_even():
    xyz = torch.tensor(
        [[0.3, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.5, 0.0], [-0.1, 0.0, 0.0], [0.0, 0.0, 0.42]]
    )
    point_to_voxel, ijk = voxelize(xyz)
    # 0.3/0.2 = 1.5 -> 2, 0.1/0.2 = 0.5 -> 0, -0.1/0.2 = -0.5 -> -0 (ties to even).
    assert ijk[0].tolist() == [[0, 0, 0], [0, 0, 2], [0, 2, 0], [2, 0, 0]]
    assert point_to_voxel[0].tolist() == [3, 0, 2, 0, 1]


def test_voxel_mean_and_offsets():
    xyz = torch.tensor(
        [[[0.0, 0, 0], [0.05, 0, 0], [1.0, 0, 0]], [[0.0, 0, 0], [0, 0, 0], [0, 0, 0]]]
    )
    feats = torch.tensor([[[1.0], [3.0], [5.0]], [[2.0], [4.0], [6.0]]])
    pooled = voxel_pool(xyz, feats)
    assert pooled.features.flatten().tolist() == [2.0, 5.0, 4.0]
    assert pooled.batch_offset.tolist() == [2, 3]
    assert pooled.num_tokens == [2, 1]
    assert [t.shape[0] for t in pooled.split()] == [2, 1]
    torch.testing.assert_close(pooled.xyz[0], torch.tensor([0.025, 0.0, 0.0]))


def test_voxelize_does_not_modify_input():
    xyz = torch.rand(1, 50, 3)
    copy = xyz.clone()
    voxelize(xyz)
    assert torch.equal(xyz, copy)


def test_valid_mask_drops_points():
    xyz = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]]])
    feats = torch.tensor([[[1.0], [2.0], [3.0]]])
    pooled = voxel_pool(xyz, feats, valid=torch.tensor([[True, False, True]]))
    assert pooled.features.flatten().tolist() == [1.0, 3.0]
    assert pooled.point_to_token.tolist() == [[0, -1, 1]]
    with pytest.raises(ValueError, match="no valid points"):
        voxel_pool(xyz, feats, valid=torch.zeros(1, 3, dtype=torch.bool))


def test_pool_bad_input():
    with pytest.raises(ValueError, match="NaN or infinite"):
        voxel_pool(torch.full((1, 4, 3), float("nan")), torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="one row per point"):
        voxel_pool(torch.zeros(1, 4, 3), torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="voxel_size"):
        voxelize(torch.zeros(4, 3), voxel_size=0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxelize(torch.zeros(4, 2))


def test_cap_is_seeded_and_optional_global():
    tokens = torch.arange(100, dtype=torch.float32)[:, None]
    a, ia = cap_tokens(tokens, 10)
    _, ib = cap_tokens(tokens, 10)
    assert torch.equal(ia, ib) and a.shape == (10, 1)
    assert ia.unique().numel() == 10
    _, ic = cap_tokens(tokens, 10, seed=1)
    assert not torch.equal(ia, ic)
    _, ordered = cap_tokens(tokens, 10, keep_order=True)
    assert torch.equal(ordered, ia.sort().values)
    torch.manual_seed(5)
    _, g1 = cap_tokens(tokens, 10, seed=None)
    torch.manual_seed(5)
    _, g2 = cap_tokens(tokens, 10, seed=None)
    assert torch.equal(g1, g2)  # the released behaviour: whatever the global RNG holds
    same, idx = cap_tokens(tokens, 200)
    assert same is tokens and torch.equal(idx, torch.arange(100))


def test_fps_first_index_and_max_min_distance():
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(300, 3, generator=g)
    idx = farthest_point_sampling(xyz, 20)
    assert idx[0] == 0 and idx.unique().numel() == 20
    # Each new point is the one farthest from those chosen before it.
    for k in range(1, 20):
        dist = torch.cdist(xyz.double(), xyz[idx[:k]].double()).min(dim=1).values
        assert dist[idx[k]] == dist.max()
    assert farthest_point_sampling(xyz, 20, start=7)[0] == 7
    assert (
        farthest_point_sampling(xyz[:5], 20).tolist()
        == farthest_point_sampling(xyz[:5], 5).tolist()
    )
    random_start = farthest_point_sampling(
        xyz, 3, start=None, generator=torch.Generator().manual_seed(2)
    )
    assert random_start.numel() == 3


def test_fps_on_a_line_picks_the_ends_first():
    xyz = torch.zeros(11, 3)
    xyz[:, 0] = torch.arange(11.0)
    assert farthest_point_sampling(xyz, 3, start=5).tolist() == [5, 0, 10]


def test_fps_pool_gathers_features():
    xyz = torch.rand(2, 40, 3)
    feats = torch.arange(2 * 40 * 2, dtype=torch.float32).reshape(2, 40, 2)
    pooled = fps_pool(xyz, feats, num_samples=8)
    assert pooled.num_tokens == [8, 8]
    first = farthest_point_sampling(xyz[0], 8)
    assert torch.equal(pooled.split()[0], feats[0, first])
    with pytest.raises(ValueError, match="num_samples"):
        fps_pool(xyz, feats, num_samples=0)
