"""The synthetic scene: unprojection lands on the known surfaces; pooling ignores view order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eightfold.vision3d import (
    encode_scene,
    lift_click,
    patch_positions,
    point_to_pixel,
    preprocess_scene,
    render_synthetic_scene,
    unproject_depth,
    visible_views,
    voxel_pool,
)
from eightfold.vision3d.assembly import LLaVA3DConfig
from eightfold.vision3d.position import SpatialAwareModule

# Stated errors. Depth is stored in whole millimetres, so a point is off by at most
# 0.5 mm * (ray length / depth) < 1 mm where the depth pixel lines up with its ray (raw frames, and
# the top-left pixel of every patch after the 320x240 -> 448x336 resize). Other pixels of a resized
# frame sample a neighbouring source pixel (PIL nearest vs the intrinsics' scaling), which moves
# points along sloped surfaces by up to about a centimetre.
RAW_MAX_ERROR_M = 1e-3
PATCH_MAX_ERROR_M = 1e-3
PIXEL_P99_ERROR_M = 1e-2


@pytest.fixture(scope="module")
def scene():
    return render_synthetic_scene(6, width=320, height=240, seed=3)


@pytest.fixture(scope="module")
def processed(scene):
    return preprocess_scene(
        list(scene.depth_mm), scene.intrinsic, scene.poses, images=list(scene.images)
    )


def test_render_sees_every_box_and_has_depth_everywhere(scene):
    assert scene.depth_mm.shape == (6, 240, 320)
    assert scene.images.shape == (6, 240, 320, 3)
    assert (scene.depth_mm > 0).all()
    assert set(np.unique(scene.labels)) == {0, 1, 2, 3, 4}


def test_raw_unprojection_lands_on_surfaces(scene):
    depth = torch.from_numpy(scene.depth_mm.astype(np.float32)) / 1000
    k = torch.from_numpy(scene.intrinsic).float().expand(scene.num_views, 4, 4)
    xyz = unproject_depth(depth, k, torch.from_numpy(scene.poses).float())
    error = scene.surface_distance(xyz.reshape(-1, 3).numpy())
    assert error.max() < RAW_MAX_ERROR_M
    # A wrong convention (e.g. a +0.5 pixel offset) moves points off the surfaces.
    shifted = k.clone()
    shifted[:, 0, 2] += 0.5
    shifted[:, 1, 2] += 0.5
    bad = unproject_depth(depth, shifted, torch.from_numpy(scene.poses).float())
    assert scene.surface_distance(bad.reshape(-1, 3).numpy()).max() > 3 * RAW_MAX_ERROR_M


def test_preprocessed_unprojection_lands_on_surfaces(scene, processed):
    assert processed.depths.shape == (6, 336, 336)
    assert processed.images.shape == (6, 3, 336, 336)
    pixel = unproject_depth(processed.depths, processed.intrinsics, processed.poses)
    error = scene.surface_distance(pixel.reshape(-1, 3).numpy())
    assert np.percentile(error, 99) < PIXEL_P99_ERROR_M
    patches = patch_positions(pixel)
    assert patches.shape == (6, 24, 24, 3)
    assert scene.surface_distance(patches.reshape(-1, 3).numpy()).max() < PATCH_MAX_ERROR_M


def test_pooling_is_invariant_to_view_order(processed):
    torch.manual_seed(0)
    features = torch.randn(1, 6, 8, 24, 24)
    module = SpatialAwareModule(8)
    order = torch.tensor([4, 1, 5, 0, 3, 2])

    def run(idx):
        return encode_scene(
            features[:, idx],
            processed.depths[None, idx],
            processed.poses[None, idx],
            processed.intrinsics[None, idx],
            module,
            config=LLaVA3DConfig(vision_hidden_size=8),
        ).pooled

    with torch.no_grad():
        a, b = run(torch.arange(6)), run(order)
    assert a.num_tokens == b.num_tokens
    torch.testing.assert_close(a.features, b.features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.xyz, b.xyz, rtol=1e-5, atol=1e-5)
    assert torch.equal(a.voxel_ijk, b.voxel_ijk)


def test_smaller_voxels_give_more_tokens(processed):
    xyz = patch_positions(unproject_depth(processed.depths, processed.intrinsics, processed.poses))
    feats = torch.zeros(1, xyz[..., 0].numel(), 4)
    counts = [voxel_pool(xyz[None], feats, voxel_size=s).num_tokens[0] for s in (0.4, 0.2, 0.1)]
    assert counts[0] < counts[1] < counts[2] <= xyz[..., 0].numel()


def test_lift_click_then_find_it_again(scene, processed):
    view, u, v = 2, 200, 150
    point = lift_click(
        u, v, processed.depths[view], processed.intrinsics[view], processed.poses[view]
    )
    assert scene.surface_distance(point[None].numpy())[0] < PIXEL_P99_ERROR_M
    pixel = unproject_depth(processed.depths, processed.intrinsics, processed.poses)
    torch.testing.assert_close(point, pixel[view, v, u], rtol=0, atol=0)
    seen = visible_views(point, processed.depths, processed.intrinsics, processed.poses)
    assert any(p.view == view and (p.u, p.v) == (u, v) for p in seen)
    best = point_to_pixel(point, processed.depths, processed.intrinsics, processed.poses)
    assert best.view in {p.view for p in seen}


def test_point_outside_every_view_raises(processed):
    with pytest.raises(ValueError, match="outside every one of the 6 views"):
        point_to_pixel(
            torch.tensor([40.0, 40.0, 1.0]), processed.depths, processed.intrinsics, processed.poses
        )


def test_hidden_point_is_not_visible(scene, processed):
    # The centre of the cabinet is inside a box: every view sees the box's surface in front.
    centre = torch.tensor(scene.boxes[1].centre, dtype=torch.float32)
    assert visible_views(centre, processed.depths, processed.intrinsics, processed.poses) == []


def test_zero_depth_patches_sit_at_the_camera_centre():
    scene = render_synthetic_scene(2, width=160, height=120, hole_fraction=0.3, seed=1)
    processed = preprocess_scene(list(scene.depth_mm), scene.intrinsic, scene.poses)
    pixel = unproject_depth(processed.depths, processed.intrinsics, processed.poses)
    holes = processed.depths == 0
    assert holes.any()
    centres = processed.poses[:, None, None, :3, 3].expand_as(pixel)
    torch.testing.assert_close(pixel[holes], centres[holes])
