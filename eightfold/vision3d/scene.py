"""A synthetic RGB-D scene with known geometry: a room with a few boxes, rendered from known poses.

Every pixel is ray-cast exactly (float64) against the room's inner walls and the boxes, so the 3D
position of every depth pixel is known. Unprojecting the rendered depth must land on the box and
wall surfaces; the tests, the demo and the benchmark use it in place of a real scan (which cannot
be downloaded here). Frames are rendered at ScanNet's depth resolution (640 x 480) and intrinsics,
stored as uint16 millimetres, so they go through the same preprocessing as real frames.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eightfold.storage import atomic_dir

logger = logging.getLogger(__name__)

__all__ = ["Box", "SyntheticScene", "default_boxes", "look_at_pose", "render_synthetic_scene"]

# ScanNet's typical depth intrinsic at 640 x 480.
SCANNET_DEPTH_INTRINSIC = np.array(
    [
        [577.59, 0.0, 318.91, 0.0],
        [0.0, 578.73, 242.68, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: ``centre`` and ``size`` in metres, a name and an RGB colour."""

    name: str
    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    color: tuple[int, int, int] = (200, 120, 60)

    @property
    def low(self) -> np.ndarray:
        return np.asarray(self.centre) - np.asarray(self.size) / 2

    @property
    def high(self) -> np.ndarray:
        return np.asarray(self.centre) + np.asarray(self.size) / 2


def default_boxes() -> list[Box]:
    """Four pieces of furniture standing on the floor of the default room."""
    return [
        Box("table", (1.0, 0.8, 0.375), (1.2, 0.8, 0.75), (180, 110, 50)),
        Box("cabinet", (-1.5, -1.0, 0.5), (0.6, 0.6, 1.0), (60, 120, 200)),
        Box("shelf", (-1.8, 1.4, 0.9), (0.5, 0.9, 1.8), (90, 170, 80)),
        Box("bed", (1.6, -1.3, 0.25), (1.0, 1.4, 0.5), (200, 70, 90)),
    ]


def look_at_pose(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world ``(4, 4)`` pose of a camera at ``eye`` looking at ``target``.

    OpenCV camera axes: x right, y down, z forward; ``up`` is the world's up (z).
    """
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError("the viewing direction is parallel to 'up'; choose another target")
    right /= norm
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def _box_hits(
    origin: np.ndarray, dirs: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # Slab method. A zero direction component is nudged so 0 * inf never makes a NaN.
    safe = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
    inv = 1.0 / safe
    t0 = (low - origin) * inv
    t1 = (high - origin) * inv
    return np.minimum(t0, t1).max(axis=1), np.maximum(t0, t1).min(axis=1)


@dataclass
class SyntheticScene:
    """Rendered views of a box room with known geometry.

    Attributes
    ----------
    depth_mm
        ``(V, H, W)`` uint16 depth in millimetres (0 = no reading), as a depth PNG stores it.
    images
        ``(V, H, W, 3)`` uint8 colour frames (flat-shaded surfaces).
    labels
        ``(V, H, W)`` int: 0 for the room's walls, floor and ceiling, ``i + 1`` for ``boxes[i]``.
    intrinsic
        ``(4, 4)`` intrinsic of the raw ``H x W`` frames.
    poses
        ``(V, 4, 4)`` camera-to-world poses (z up, metres).
    room_low, room_high
        Corners of the room.
    """

    depth_mm: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    intrinsic: np.ndarray
    poses: np.ndarray
    boxes: list[Box]
    room_low: np.ndarray = field(default_factory=lambda: np.array([-3.0, -2.5, 0.0]))
    room_high: np.ndarray = field(default_factory=lambda: np.array([3.0, 2.5, 2.8]))

    @property
    def num_views(self) -> int:
        return int(self.depth_mm.shape[0])

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        """Distance (metres) from each of ``(N, 3)`` points to the nearest wall or box face."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        # Inside the room, the distance to its boundary is the smallest gap to a wall.
        best = np.minimum(p - self.room_low, self.room_high - p).min(axis=1)
        best = np.abs(best)
        for box in self.boxes:
            outside = np.maximum(np.maximum(box.low - p, p - box.high), 0.0)
            dist_out = np.linalg.norm(outside, axis=1)
            inside_gap = np.minimum(p - box.low, box.high - p).min(axis=1)
            dist = np.where(dist_out > 0, dist_out, np.abs(inside_gap))
            best = np.minimum(best, dist)
        return best

    def write_scannet(self, folder: str | os.PathLike[str]) -> Path:
        """Write the views in ScanNet's export layout (read back by ``load_rgbd_scene``).

        ``color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm), ``pose/<i>.txt``,
        ``intrinsic/intrinsic_depth.txt``; the folder is written atomically.
        """
        from PIL import Image

        target = Path(folder)
        with atomic_dir(target, kind="scene") as tmp:
            for sub in ("color", "depth", "pose", "intrinsic"):
                (tmp / sub).mkdir()
            for i in range(self.num_views):
                Image.fromarray(self.images[i]).save(tmp / "color" / f"{i}.jpg", quality=92)
                Image.fromarray(self.depth_mm[i]).save(tmp / "depth" / f"{i}.png")
                np.savetxt(tmp / "pose" / f"{i}.txt", self.poses[i], fmt="%.9f")
            np.savetxt(tmp / "intrinsic" / "intrinsic_depth.txt", self.intrinsic, fmt="%.6f")
        return target


def render_synthetic_scene(
    num_views: int = 20,
    *,
    width: int = 640,
    height: int = 480,
    intrinsic: np.ndarray | None = None,
    boxes: list[Box] | None = None,
    radius: float = 2.2,
    eye_height: float = 2.0,
    hole_fraction: float = 0.0,
    seed: int = 0,
) -> SyntheticScene:
    """Render depth, colour and labels of the box room from ``num_views`` cameras.

    Cameras stand on a circle of ``radius`` at ``eye_height`` (above every box) and look at
    jittered points near the room's centre. Pixel ``(row v, column u)`` is cast along
    ``K^-1 [u, v, 1]`` (integer coordinates, the unprojection's convention), so depth is exact up
    to the millimetre rounding of uint16 storage.

    Parameters
    ----------
    intrinsic
        ``(4, 4)``; default ScanNet's depth intrinsic scaled to ``width x height``.
    hole_fraction
        Fraction of pixels set to 0 (no depth), like a real sensor's holes.
    """
    if num_views <= 0:
        raise ValueError(f"num_views must be positive; got {num_views}")
    if not 0.0 <= hole_fraction < 1.0:
        raise ValueError(f"hole_fraction must be in [0, 1); got {hole_fraction}")
    rng = np.random.default_rng(seed)
    boxes = default_boxes() if boxes is None else boxes
    if intrinsic is None:
        intrinsic = SCANNET_DEPTH_INTRINSIC.copy()
        intrinsic[0] *= width / 640
        intrinsic[1] *= height / 480
    room_low, room_high = np.array([-3.0, -2.5, 0.0]), np.array([3.0, 2.5, 2.8])
    palette = np.array([(225, 225, 215)] + [b.color for b in boxes], dtype=np.float64)

    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    k_inv = np.linalg.inv(intrinsic[:3, :3])
    rays_cam = np.stack([cols.ravel(), rows.ravel(), np.ones(rows.size)], axis=1) @ k_inv.T

    depth_mm = np.zeros((num_views, height, width), dtype=np.uint16)
    images = np.zeros((num_views, height, width, 3), dtype=np.uint8)
    labels = np.zeros((num_views, height, width), dtype=np.int64)
    poses = np.zeros((num_views, 4, 4))
    for view in range(num_views):
        angle = 2 * np.pi * view / num_views + rng.uniform(-0.1, 0.1)
        eye = np.array([radius * np.cos(angle), radius * np.sin(angle), eye_height])
        target = np.array([0.0, 0.0, 0.6]) + rng.uniform(-0.4, 0.4, size=3) * [1, 1, 0.5]
        pose = look_at_pose(eye, target)
        poses[view] = pose
        dirs = rays_cam @ pose[:3, :3].T  # world directions with unit camera-z component

        # The room is seen from inside: the visible wall is where the ray leaves it.
        _, t_best = _box_hits(eye, dirs, room_low, room_high)
        label = np.zeros(dirs.shape[0], dtype=np.int64)
        for i, box in enumerate(boxes):
            t_near, t_far = _box_hits(eye, dirs, box.low, box.high)
            hit = (t_near <= t_far) & (t_near > 0) & (t_near < t_best)
            t_best = np.where(hit, t_near, t_best)
            label = np.where(hit, i + 1, label)

        # t multiplies a direction whose camera z is 1, so t is the depth along the optical axis.
        mm = np.round(t_best * 1000.0)
        if hole_fraction > 0:
            mm[rng.random(mm.shape) < hole_fraction] = 0
        depth_mm[view] = np.clip(mm, 0, 65535).astype(np.uint16).reshape(height, width)
        labels[view] = label.reshape(height, width)

        # Flat shading by the face normal, so faces are distinguishable in the colour frames.
        points = eye + dirs * t_best[:, None]
        lows = np.stack([room_low] + [b.low for b in boxes])[label]
        highs = np.stack([room_high] + [b.high for b in boxes])[label]
        face_axis = np.minimum(np.abs(points - lows), np.abs(points - highs)).argmin(axis=1)
        shade = np.array([0.7, 0.85, 1.0])[face_axis]
        colour = palette[label] * shade[:, None]
        images[view] = np.clip(colour, 0, 255).astype(np.uint8).reshape(height, width, 3)

    logger.info("rendered %d synthetic views of %d x %d", num_views, width, height)
    return SyntheticScene(
        depth_mm=depth_mm,
        images=images,
        labels=labels,
        intrinsic=np.asarray(intrinsic, dtype=np.float64),
        poses=poses,
        boxes=list(boxes),
        room_low=room_low,
        room_high=room_high,
    )
