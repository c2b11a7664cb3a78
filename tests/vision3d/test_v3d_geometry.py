"""Geometry: hand-made cases with known answers, the inverse projection and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from eightfold.vision3d import (
    adjust_intrinsics,
    align_poses,
    lift_click,
    patch_positions,
    preprocess_depth,
    preprocess_rgb,
    preprocess_scene,
    project_points,
    unproject_depth,
    unproject_patches,
)
from eightfold.vision3d.geometry import CLIP_MEAN, CLIP_STD, depth_crop_offset, resized_size

K = torch.tensor([[100.0, 0, 20, 0], [0, 100.0, 10, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def test_unproject_hand_made_pixel():
    depth = torch.zeros(1, 28, 42)
    depth[0, 3, 25] = 2.0
    pose = torch.eye(4)[None].clone()
    pose[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    xyz = unproject_depth(depth, K[None], pose)
    # x = (25 - 20) * 2 / 100, y = (3 - 10) * 2 / 100, z = 2, then translated.
    torch.testing.assert_close(xyz[0, 3, 25], torch.tensor([1.1, 1.86, 5.0]))
    torch.testing.assert_close(xyz[0, 0, 0], torch.tensor([1.0, 2.0, 3.0]))  # depth 0: camera


def test_patch_position_modes():
    xyz = torch.arange(28 * 28 * 3, dtype=torch.float32).reshape(28, 28, 3)
    torch.testing.assert_close(patch_positions(xyz)[1, 1], xyz[14, 14])
    torch.testing.assert_close(patch_positions(xyz, mode="center")[1, 0], xyz[21, 7])
    torch.testing.assert_close(patch_positions(xyz, mode="mean")[0, 0], xyz[:14, :14].mean((0, 1)))
    valid = torch.zeros(28, 28, dtype=torch.bool)
    valid[3, 4] = True
    torch.testing.assert_close(patch_positions(xyz, mode="mean", valid=valid)[0, 0], xyz[3, 4])
    with pytest.raises(ValueError, match="multiple of patch_size=14"):
        patch_positions(torch.zeros(30, 28, 3))
    depth = 0.5 + torch.rand(1, 28, 42)
    full = unproject_depth(depth, K[None], torch.eye(4)[None])
    for mode in ("top_left", "center"):
        fast = unproject_patches(depth, K[None], torch.eye(4)[None], mode=mode)
        torch.testing.assert_close(fast, patch_positions(full, mode=mode), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="mode must be"):
        patch_positions(xyz, mode="corner")  # type: ignore[arg-type]


def test_projection_inverts_unprojection():
    g = torch.Generator().manual_seed(0)
    depth = 0.5 + 3 * torch.rand(2, 28, 42, generator=g)
    poses = torch.eye(4).repeat(2, 1, 1)
    poses[1, :3, :3] = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    poses[1, :3, 3] = torch.tensor([0.3, -0.2, 1.0])
    xyz = unproject_depth(depth, K.expand(2, 4, 4), poses)
    uv, z = project_points(xyz[1].reshape(-1, 3), K.expand(2, 4, 4), poses)
    rows, cols = torch.meshgrid(torch.arange(28), torch.arange(42), indexing="ij")
    torch.testing.assert_close(uv[1, :, 0], cols.flatten().float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(uv[1, :, 1], rows.flatten().float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(z[1], depth[1].flatten(), atol=1e-5, rtol=0)


def test_lift_click_errors():
    depth = torch.ones(28, 28)
    depth[5, 6] = 0
    with pytest.raises(ValueError, match="outside the 28 x 28 image"):
        lift_click(40, 3, depth, K, torch.eye(4))
    with pytest.raises(ValueError, match="has no depth"):
        lift_click(6, 5, depth, K, torch.eye(4))


def test_unproject_rejects_bad_input():
    depth = torch.ones(1, 28, 28)
    with pytest.raises(ValueError, match="NaN, infinite or negative"):
        unproject_depth(torch.full((1, 28, 28), float("nan")), K[None], torch.eye(4)[None])
    pose = torch.eye(4)[None].clone()
    pose[0, 0, 3] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite .* view index \[\(0,\)\]"):
        unproject_depth(depth, K[None], pose)
    with pytest.raises(ValueError, match="poses must be"):
        unproject_depth(depth, K[None], torch.eye(4)[None].repeat(2, 1, 1))


def test_depth_resize_matches_pil_nearest():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 5000, size=(250, 333), dtype=np.uint16)
    got, resized = preprocess_depth(raw)
    assert resized == (447, 336)
    left, top = depth_crop_offset(*resized)
    assert (left, top) == (56, 0)  # PIL rounds 55.5 to even
    pil = Image.fromarray(raw).resize(resized, Image.Resampling.NEAREST)
    expected = np.asarray(pil)[top : top + 336, left : left + 336] / 1000.0
    np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))


def test_depth_invalid_values():
    raw = np.full((48, 48), 1.5, dtype=np.float32)  # square: no crop, pixel (0, 0) is kept
    raw[0, 0] = np.nan
    with pytest.raises(ValueError, match="invalid='zero'"):
        preprocess_depth(raw, depth_scale=1)
    fixed, _ = preprocess_depth(raw, depth_scale=1, invalid="zero")
    assert bool(torch.isfinite(fixed).all()) and float(fixed[0, 0]) == 0.0
    with pytest.raises(ValueError, match="one image of shape"):
        preprocess_depth(np.zeros((2, 48, 64)))
    with pytest.raises(ValueError, match="depth_scale"):
        preprocess_depth(np.zeros((48, 64)), depth_scale=0)


def test_resized_size_truncates_long_side():
    assert resized_size(640, 480) == (448, 336)
    assert resized_size(480, 640) == (336, 448)
    assert resized_size(1280, 1024) == (420, 336)


def test_rgb_matches_clip_image_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(250, 333, 3), dtype=np.uint8)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    expected = processor(images=Image.fromarray(image), return_tensors="pt")["pixel_values"][0]
    got = preprocess_rgb(image)
    assert got.shape == (3, 336, 336)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_intrinsics_exact_crop_handles_portrait_and_odd_margins():
    k = np.diag([500.0, 500.0, 1.0, 1.0])
    k[0, 2], k[1, 2] = 240.0, 320.0
    released = adjust_intrinsics(k, (480, 640), (336, 448))
    exact = adjust_intrinsics(k, (480, 640), (336, 448), crop="exact")
    assert released[1, 2] == pytest.approx(224.0)  # vertical crop ignored
    assert exact[1, 2] == pytest.approx(224.0 - 56)
    odd = adjust_intrinsics(np.eye(4), (333, 250), (447, 336), crop="exact")
    assert odd[0, 2] == pytest.approx(-56.0)
    with pytest.raises(ValueError, match="crop must be"):
        adjust_intrinsics(k, (480, 640), (336, 448), crop="center")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="intrinsics must have shape"):
        adjust_intrinsics(np.eye(3), (480, 640), (336, 448))


def test_align_poses():
    align = torch.eye(4)
    align[:3, 3] = torch.tensor([1.0, 0.0, 0.0])
    poses = torch.eye(4)[None]
    assert torch.equal(align_poses(poses, align)[0, :3, 3], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(align_poses(poses, None), poses)


def test_preprocess_scene_bad_input():
    depth = np.full((48, 64), 1000, dtype=np.uint16)
    poses = np.eye(4)[None]
    k = np.diag([50.0, 50.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="one size"):
        preprocess_scene([depth, depth[:40]], k, np.eye(4)[None].repeat(2, 0))
    with pytest.raises(ValueError, match="poses must be"):
        preprocess_scene([depth], k, np.eye(4)[None].repeat(2, 0))
    bad = poses.copy()
    bad[0, 1, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        preprocess_scene([depth], k, bad)
    square = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="different aspect ratios"):
        preprocess_scene([depth], k, poses, images=[square])
    scene = preprocess_scene([depth], k, poses, images=[square], max_aspect_mismatch=None)
    assert scene.images is not None and scene.images.shape == (1, 3, 336, 336)
    with pytest.raises(ValueError, match="1 depth images"):
        preprocess_scene([depth], k, poses, images=[square, square])
