"""Frame sampling, invalid poses and reading a ScanNet-style folder."""

from __future__ import annotations

import numpy as np
import pytest

from eightfold.vision3d import (
    load_rgbd_scene,
    render_synthetic_scene,
    sample_frame_indices,
    select_frames,
    select_frames_by_score,
)


def test_sampling_stride_and_padding():
    assert sample_frame_indices(45, 20)[:3] == [0, 2, 4]
    assert sample_frame_indices(3, 5) == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError, match="num_available"):
        sample_frame_indices(0, 20)


def test_invalid_poses_are_dropped_before_sampling():
    poses = np.eye(4)[None].repeat(6, 0)
    poses[1, 0, 0] = np.inf
    poses[4, 2, 3] = -np.inf
    frames, idx = select_frames(list("abcdef"), 4, poses=poses)
    assert idx == [0, 2, 3, 5] and frames == ["a", "c", "d", "f"]
    with pytest.raises(ValueError, match="none of the 2 frames"):
        select_frames(["a", "b"], 2, poses=np.full((2, 4, 4), np.inf))
    with pytest.raises(ValueError, match="one pose per frame"):
        select_frames(["a", "b"], 2, poses=np.eye(4)[None])


def test_select_by_score_keeps_temporal_order():
    assert select_frames_by_score([0.1, 0.9, 0.5, 0.9, 0.2], 3) == [1, 2, 3]
    with pytest.raises(ValueError, match="finite"):
        select_frames_by_score([0.1, float("nan")], 1)


def test_load_scannet_layout_round_trip(tmp_path):
    scene = render_synthetic_scene(5, width=160, height=120, seed=2)
    scene.poses[3, 0, 0] = np.inf  # lost tracking: this frame must be skipped
    folder = scene.write_scannet(tmp_path / "scene0000_00")
    loaded, chosen = load_rgbd_scene(folder, num_frames=4)
    assert chosen == [0, 1, 2, 4]
    assert loaded.depths.shape == (4, 336, 336)
    assert loaded.images is not None and loaded.images.shape == (4, 3, 336, 336)
    np.testing.assert_allclose(loaded.poses[3].numpy(), scene.poses[4], atol=1e-6)


def test_load_reports_missing_pieces_and_lfs_pointers(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_rgbd_scene(tmp_path / "nothing")
    scene = render_synthetic_scene(2, width=160, height=120)
    folder = scene.write_scannet(tmp_path / "s")
    (folder / "depth" / "1.png").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid x\n")
    with pytest.raises(ValueError, match="Git LFS pointer"):
        load_rgbd_scene(folder, num_frames=2)
    (folder / "intrinsic" / "intrinsic_depth.txt").unlink()
    with pytest.raises(FileNotFoundError, match="intrinsic_depth.txt"):
        load_rgbd_scene(folder)
