"""Demo section: LLaVA-3D scene tokens of the synthetic box room."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from eightfold.demo import DemoContext, demo_section
from eightfold.report import Section, markdown_table
from eightfold.vision3d.geometry import (
    lift_click,
    patch_positions,
    point_to_pixel,
    preprocess_scene,
    unproject_depth,
)
from eightfold.vision3d.pooling import fps_pool, voxel_pool
from eightfold.vision3d.position import SpatialAwareModule
from eightfold.vision3d.prompts import parse_click_prompt
from eightfold.vision3d.scene import render_synthetic_scene

logger = logging.getLogger(__name__)


@demo_section("LLaVA-3D: 3D patches and scene tokens", order=70)
def llava3d_section(ctx: DemoContext) -> Section:
    """Render the box room, build 3D patches, pool them at two voxel sizes and by FPS."""
    views, width, height = (4, 160, 120) if ctx.quick else (20, 640, 480)
    channels = 32 if ctx.quick else 1024
    scene = render_synthetic_scene(views, width=width, height=height, seed=ctx.seed)

    start = time.perf_counter()
    processed = preprocess_scene(
        list(scene.depth_mm), scene.intrinsic, scene.poses, images=list(scene.images)
    )
    pixel_xyz = unproject_depth(processed.depths, processed.intrinsics, processed.poses)
    patch_xyz = patch_positions(pixel_xyz).reshape(1, -1, 3)
    torch.manual_seed(ctx.seed)
    # Random stand-ins for CLIP features: pooling and positions do not depend on their values.
    features = torch.randn(1, patch_xyz.shape[1], channels)
    with torch.no_grad():
        patches = SpatialAwareModule(channels)(features, patch_xyz)
        pooled = {size: voxel_pool(patch_xyz, patches, voxel_size=size) for size in (0.2, 0.1)}
    seconds = time.perf_counter() - start
    with torch.no_grad():
        # 1152 tokens as in the initial release's FPS setting (fewer in quick mode).
        fps = fps_pool(patch_xyz, patches, num_samples=256 if ctx.quick else 1152)

    # How far the 3D patches are from the true surfaces of the room and boxes.
    error = scene.surface_distance(patch_xyz[0].numpy())

    # Round trip of a click: the top centre of the table -> the pixel of the view that sees it
    # best -> back to 3D by reading the depth under that pixel.
    table = scene.boxes[0]
    target = torch.tensor([*table.centre[:2], table.high[2]], dtype=torch.float32)
    seen = point_to_pixel(target, processed.depths, processed.intrinsics, processed.poses)
    clicked = lift_click(
        seen.u,
        seen.v,
        processed.depths[seen.view],
        processed.intrinsics[seen.view],
        processed.poses[seen.view],
    )
    click_error = float((clicked - target).norm())
    point = [round(float(v), 3) for v in clicked]
    parsed = parse_click_prompt(f"The related object is located at {point}. Describe it.")

    rows = [
        {"tokens from": "3D patches (no pooling)", "count": int(patch_xyz.shape[1])},
        {"tokens from": "voxel pooling, 0.2 m (released)", "count": pooled[0.2].num_tokens[0]},
        {"tokens from": "voxel pooling, 0.1 m", "count": pooled[0.1].num_tokens[0]},
        {"tokens from": "farthest point sampling", "count": fps.num_tokens[0]},
    ]
    body = (
        f"{views} synthetic RGB-D views ({width} x {height}, uint16 millimetres, ScanNet "
        "intrinsics) of a room with four boxes, preprocessed as the released LLaVA-3D does "
        "(336 x 336 crop, 24 x 24 patches, each patch placed at its top-left pixel's 3D point). "
        f"The 3D patches lie on the known surfaces: median error {1000 * np.median(error):.2f} "
        f"mm, max {1000 * error.max():.2f} mm. Building them and pooling at both voxel sizes "
        f"took {seconds:.2f} s here (feature width {channels}; random features stand in for "
        "CLIP). The released cap keeps at most 2560 tokens.\n\n"
        + markdown_table(rows)
        + f"\nThe top centre of the {table.name} projects to pixel ({seen.u}, {seen.v}) of view "
        f"{seen.view}; a click there lifts back to {point}, {1000 * click_error:.1f} mm from "
        f"the true point. Written into a prompt, the click becomes `{parsed.prompt}` plus one "
        "click token.\n"
    )

    def draw(fig: Any) -> None:
        grid = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.06])
        axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])]
        dots = None
        for ax, size in zip(axes, (0.2, 0.1), strict=True):
            xyz = pooled[size].xyz.numpy()
            order = np.argsort(xyz[:, 2])  # draw high points last so furniture stays visible
            dots = ax.scatter(xyz[order, 0], xyz[order, 1], c=xyz[order, 2], s=3, cmap="viridis")
            cams = scene.poses[:, :3, 3]
            ax.scatter(cams[:, 0], cams[:, 1], marker="^", c="red", s=18, label="cameras")
            ax.set_aspect("equal")
            ax.set_title(f"{pooled[size].num_tokens[0]} tokens, {size} m voxels", fontsize=9)
            ax.set_xlabel("x (m)")
        axes[0].set_ylabel("y (m)")
        axes[0].legend(loc="lower left", fontsize=7)
        fig.colorbar(dots, cax=fig.add_subplot(grid[0, 2]), label="height z (m)")

    return Section(
        title="LLaVA-3D: 3D patches and scene tokens",
        body=body,
        figures={"llava3d_topdown.png": draw},
        data={
            "views": views,
            "frame_size": [width, height],
            "patches": int(patch_xyz.shape[1]),
            "voxel_tokens": {str(k): v.num_tokens[0] for k, v in pooled.items()},
            "fps_tokens": fps.num_tokens[0],
            "patch_surface_error_m": {"median": float(np.median(error)), "max": float(error.max())},
            "build_seconds": seconds,
            "click_xyz": point,
            "click_view_pixel": [seen.view, seen.u, seen.v],
            "click_error_m": click_error,
        },
    )
