"""Choosing the views of a scene, and reading RGB-D scenes from disk.

The released LLaVA-3D samples 20 views with a uniform stride from frame 0, repeats a short frame
list to fill the count, and drops frames whose pose has infinities (ScanNet's mark for lost
tracking). The initial release also ranked frames by CLIP image-text similarity to the question;
:func:`select_frames_by_score` offers that with any scorer the caller supplies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from eightfold.vision3d.geometry import DEPTH_SCALES, RGBDScene, preprocess_scene

logger = logging.getLogger(__name__)

__all__ = [
    "SceneFiles",
    "find_scannet_frames",
    "load_rgbd_scene",
    "sample_frame_indices",
    "select_frames",
    "select_frames_by_score",
    "valid_pose_mask",
]

T = TypeVar("T")


def sample_frame_indices(num_available: int, num_frames: int = 20) -> list[int]:
    """Indices of the views the released model uses.

    ``stride = N // F`` and indices ``(i * stride) mod N`` for ``i = 0..F-1``, starting at frame
    0 (the tail of a sequence whose length is not a multiple of ``F`` is never used); with fewer
    frames than ``F`` the list is repeated and truncated to ``F``.
    """
    if num_available <= 0:
        raise ValueError(
            f"num_available must be positive; got {num_available} (no frames with a valid pose?)"
        )
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive; got {num_frames}")
    if num_available < num_frames:
        return [i % num_available for i in range(num_frames)]
    stride = num_available // num_frames
    return [(i * stride) % num_available for i in range(num_frames)]


def valid_pose_mask(poses: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(N,)`` bool: which of ``(N, 4, 4)`` poses are entirely finite."""
    array = poses.detach().cpu().numpy() if isinstance(poses, torch.Tensor) else np.asarray(poses)
    if array.ndim != 3 or array.shape[1:] != (4, 4):
        raise ValueError(f"poses must be (N, 4, 4); got {tuple(array.shape)}")
    return np.isfinite(array).reshape(len(array), -1).all(axis=1)


def select_frames(
    frames: Sequence[T],
    num_frames: int = 20,
    *,
    poses: np.ndarray | torch.Tensor | None = None,
) -> tuple[list[T], list[int]]:
    """Drop frames with invalid poses, then sample ``num_frames`` of the rest.

    Parameters
    ----------
    frames
        Anything per frame (file names, dicts, tensors), in temporal order.
    poses
        ``(N, 4, 4)`` poses of the frames; frames whose pose has an inf or NaN are dropped first.

    Returns
    -------
    (list, list[int])
        The chosen frames and their indices into ``frames``.
    """
    keep = list(range(len(frames)))
    if poses is not None:
        mask = valid_pose_mask(poses)
        if len(mask) != len(frames):
            raise ValueError(
                f"got {len(mask)} poses for {len(frames)} frames; pass one pose per frame"
            )
        keep = [i for i in keep if mask[i]]
        if len(keep) < len(frames):
            logger.info(
                "dropped %d of %d frames with invalid poses", len(frames) - len(keep), len(frames)
            )
    if not keep:
        raise ValueError(
            f"none of the {len(frames)} frames has a valid (finite) pose; nothing to sample"
        )
    chosen = [keep[i] for i in sample_frame_indices(len(keep), num_frames)]
    return [frames[i] for i in chosen], chosen


def select_frames_by_score(scores: Sequence[float] | torch.Tensor, num_frames: int) -> list[int]:
    """The ``num_frames`` highest-scoring frames, in temporal order (text-conditioned views).

    The initial LLaVA-3D release scored each frame by CLIP ViT-B/32 image-text similarity to the
    question; any relevance score works here. Ties keep the earlier frame. With fewer frames than
    ``num_frames`` all are returned, repeated as :func:`sample_frame_indices` does.
    """
    values = torch.as_tensor(scores, dtype=torch.float64).flatten()
    if values.numel() == 0:
        raise ValueError("scores is empty; give one score per frame")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("scores must be finite numbers; got NaN or inf")
    if values.numel() <= num_frames:
        return sample_frame_indices(values.numel(), num_frames)
    order = sorted(range(values.numel()), key=lambda i: (-float(values[i]), i))
    return sorted(order[:num_frames])


# ---------------------------------------------------------------------------------------------
# Scenes on disk
# ---------------------------------------------------------------------------------------------

_LFS_HEADER = b"version https://git-lfs"


def _check_not_lfs_pointer(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(len(_LFS_HEADER))
    if head == _LFS_HEADER:
        raise ValueError(
            f"{path} is a Git LFS pointer, not an image: the data set was cloned without "
            "git-lfs. Run `git lfs install && git lfs pull` in its folder."
        )


@dataclass
class SceneFiles:
    """File lists of a ScanNet-style RGB-D export (one entry per kept frame)."""

    color: list[Path]
    depth: list[Path]
    pose: list[Path]
    intrinsic: Path
    axis_align: Path | None


def find_scannet_frames(folder: str | os.PathLike[str]) -> SceneFiles:
    """List the frames of a ScanNet-style folder.

    Layout: ``color/<i>.jpg`` (or ``.png``), ``depth/<i>.png`` (uint16 millimetres),
    ``pose/<i>.txt`` (4 x 4 camera-to-world), ``intrinsic/intrinsic_depth.txt`` (4 x 4) and
    optionally ``axis_align_matrix.txt``. Frames are ordered by their numeric name.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"scene folder {str(root)!r} does not exist")
    for sub in ("depth", "pose"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(
                f"scene folder {str(root)!r} has no {sub}/ folder; expected the ScanNet export "
                "layout color/, depth/, pose/, intrinsic/intrinsic_depth.txt"
            )
    intrinsic = root / "intrinsic" / "intrinsic_depth.txt"
    if not intrinsic.is_file():
        raise FileNotFoundError(f"{intrinsic} is missing; it holds the 4 x 4 depth intrinsic")

    def key(p: Path) -> tuple[int, str]:
        return (int(p.stem), p.stem) if p.stem.isdigit() else (1 << 62, p.stem)

    depth = sorted((root / "depth").glob("*.png"), key=key)
    if not depth:
        raise FileNotFoundError(f"{root / 'depth'} has no .png depth images")
    color, pose = [], []
    for d in depth:
        candidates = [root / "color" / f"{d.stem}{ext}" for ext in (".jpg", ".png")]
        found = next((c for c in candidates if c.is_file()), None)
        color.append(found)
        p = root / "pose" / f"{d.stem}.txt"
        if not p.is_file():
            raise FileNotFoundError(f"frame {d.stem} has depth but no pose file {p}")
        pose.append(p)
    have_color = [c is not None for c in color]
    if any(have_color) and not all(have_color):
        missing = [d.stem for d, c in zip(depth, color, strict=True) if c is None]
        raise FileNotFoundError(f"frames {missing[:5]} have depth but no colour image in color/")
    axis = root / "axis_align_matrix.txt"
    return SceneFiles(
        color=[c for c in color if c is not None],
        depth=depth,
        pose=pose,
        intrinsic=intrinsic,
        axis_align=axis if axis.is_file() else None,
    )


def _read_matrix(path: str | os.PathLike[str]) -> np.ndarray:
    """A 4 x 4 matrix from a text file of 16 numbers, with errors that name the file."""
    try:
        values = np.loadtxt(path, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} is not a matrix of numbers ({exc})") from exc
    if values.size != 16:
        raise ValueError(
            f"{str(path)!r} holds {values.size} numbers; expected a 4 x 4 matrix (16 numbers, "
            "four per line)"
        )
    return values.reshape(4, 4)


def load_rgbd_scene(
    folder: str | os.PathLike[str],
    *,
    num_frames: int = 20,
    dataset: str = "scannet",
    with_images: bool = True,
    max_aspect_mismatch: float | None = 0.02,
) -> tuple[RGBDScene, list[int]]:
    """Read, sample and preprocess a ScanNet-style scene folder (see :func:`find_scannet_frames`).

    Frames with invalid poses are dropped, ``num_frames`` are sampled as released, depth is
    divided by the dataset's scale (:data:`~eightfold.vision3d.geometry.DEPTH_SCALES`), the
    depth intrinsic is adjusted to the 336 x 336 crop and poses are axis-aligned when
    ``axis_align_matrix.txt`` exists.

    Returns
    -------
    (RGBDScene, list[int])
        The scene and the indices of the chosen frames in the folder's frame order.
    """
    from PIL import Image

    if dataset not in DEPTH_SCALES:
        raise ValueError(f"dataset must be one of {sorted(DEPTH_SCALES)}; got {dataset!r}")
    files = find_scannet_frames(folder)
    poses = np.stack([_read_matrix(p) for p in files.pose])
    _, chosen = select_frames(list(range(len(files.depth))), num_frames, poses=poses)
    depths = []
    for i in chosen:
        _check_not_lfs_pointer(files.depth[i])
        depths.append(np.asarray(Image.open(files.depth[i])))
    images = None
    if with_images and files.color:
        images = []
        for i in chosen:
            _check_not_lfs_pointer(files.color[i])
            images.append(Image.open(files.color[i]).convert("RGB"))
    intrinsic = _read_matrix(files.intrinsic)
    axis = _read_matrix(files.axis_align) if files.axis_align is not None else None
    scene = preprocess_scene(
        depths,
        intrinsic,
        poses[chosen],
        images=images,
        depth_scale=DEPTH_SCALES[dataset],
        axis_align_matrix=axis,
        max_aspect_mismatch=max_aspect_mismatch,
    )
    return scene, chosen
