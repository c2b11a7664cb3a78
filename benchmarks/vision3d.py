"""Time to build LLaVA-3D scene tokens for 20 views at 336 x 336 on this machine.

The scene is the synthetic box room rendered at ScanNet's depth resolution (640 x 480, uint16
millimetres), so every stage runs on real-sized input:

1. preprocess: depth resize + crop + scale for 20 frames, intrinsics adjustment;
2. unproject: all 20 x 336 x 336 pixels to world xyz, then the top-left pixel of each 14 x 14
   patch (24 x 24 per view), as released; back-projecting only the patch pixels
   (``unproject="patch_pixels"``) is timed beside it;
3. 3D patches: the position MLP (3 -> 1024 -> 1024) on 11,520 patches, added to the features;
4. pooling: voxelization at 0.2 m with the mean, then the 2560-token cap (seeded);
5. projector: mlp2x_gelu 1024 -> 4096 -> 4096 on the pooled tokens.

CLIP patch features are random here (their values do not change the cost of steps 1-5). The
CLIP ViT-L/14-336 forward pass that produces them in the real model is timed separately with
randomly initialised weights of the real size (no download) on ``--clip-views`` views and scaled
to 20 (it runs per view); on a shared 2-core machine a full 20-view pass takes many minutes.
FPS pooling (1152 tokens, the paper's alternative) and 0.1 m voxels are timed beside the default.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vision3d.py --repeats 3`` (writes
``benchmarks/results/vision3d.json`` and ``vision3d.png``); on a shared machine one thread is
steadier than two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from eightfold.report import markdown_table
from eightfold.storage import atomic_write_bytes, atomic_write_json
from eightfold.vision3d import (
    SpatialAwareModule,
    build_projector,
    cap_tokens,
    fps_pool,
    patch_positions,
    preprocess_scene,
    render_synthetic_scene,
    unproject_depth,
    unproject_patches,
    voxel_pool,
)

RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--clip-repeats", type=int, default=3, help="CLIP-L passes over --clip-views; 0 skips"
    )
    parser.add_argument(
        "--clip-views", type=int, default=2, help="views per CLIP-L pass (scaled to --views)"
    )
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    parser.add_argument("--out", type=Path, default=RESULTS / "vision3d.json")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from --out only")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.out.read_text())
        _plot(
            saved["stages"],
            args.out.with_suffix(".png"),
            saved["views"],
            saved["clip"].get("views_per_pass"),
        )
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    scene = render_synthetic_scene(args.views, seed=0)
    raw_depths = list(scene.depth_mm)
    spatial = SpatialAwareModule(1024).eval()
    projector = build_projector("mlp2x_gelu", 1024, 4096).eval()
    features = torch.randn(1, args.views * 576, 1024)

    stages: dict[str, dict[str, Any]] = {}

    def record(name: str, fn: Callable[[], Any], repeats: int = args.repeats) -> Any:
        median, times, result = _median_time(fn, repeats)
        stages[name] = {"median_s": median, "times_s": times}
        return result

    with torch.no_grad():
        processed = record(
            "preprocess", lambda: preprocess_scene(raw_depths, scene.intrinsic, scene.poses)
        )
        record(
            "unproject_all_pixels",
            lambda: patch_positions(
                unproject_depth(processed.depths, processed.intrinsics, processed.poses)
            ),
        )
        xyz = record(
            "unproject_patch_pixels",
            lambda: unproject_patches(processed.depths, processed.intrinsics, processed.poses),
        ).reshape(1, -1, 3)
        patches = record("3d_patches", lambda: spatial(features, xyz))
        pooled = record("voxel_pool_0.2", lambda: voxel_pool(xyz, patches, voxel_size=0.2))
        capped = record("cap_2560", lambda: cap_tokens(pooled.features, 2560, seed=0)[0])
        record("projector", lambda: projector(capped))
        fine = record("voxel_pool_0.1", lambda: voxel_pool(xyz, patches, voxel_size=0.1))
        record("fps_pool_1152", lambda: fps_pool(xyz, patches, num_samples=1152))

        default_path = [
            "preprocess",
            "unproject_all_pixels",
            "3d_patches",
            "voxel_pool_0.2",
            "cap_2560",
            "projector",
        ]

        def whole() -> torch.Tensor:
            p = preprocess_scene(raw_depths, scene.intrinsic, scene.poses)
            positions = patch_positions(unproject_depth(p.depths, p.intrinsics, p.poses))
            positions = positions.reshape(1, -1, 3)
            pooled_scene = voxel_pool(positions, spatial(features, positions))
            return projector(cap_tokens(pooled_scene.features, 2560, seed=0)[0])

        tokens = record("end_to_end_without_clip", whole)

        clip_info: dict[str, Any] = {"measured": False}
        if args.clip_repeats > 0:
            from transformers import CLIPVisionConfig, CLIPVisionModel

            from eightfold.vision3d import clip_patch_features

            config = CLIPVisionConfig(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=24,
                num_attention_heads=16,
                image_size=336,
                patch_size=14,
            )
            clip = CLIPVisionModel(config).eval()  # random weights of the real size
            pixels = torch.randn(args.clip_views, 3, 336, 336)
            record(
                "clip_vit_l14_336",
                lambda: clip_patch_features(clip, pixels),
                repeats=args.clip_repeats,
            )
            per_view = stages["clip_vit_l14_336"]["median_s"] / args.clip_views
            clip_info = {
                "measured": True,
                "parameters": sum(p.numel() for p in clip.parameters()),
                "views_per_pass": args.clip_views,
                "repeats": args.clip_repeats,
                "seconds_per_view": per_view,
                # Scaled, not measured: the CLIP pass is per view, so 20 views cost 20 times one.
                "scaled_to_all_views_s": per_view * args.views,
            }

    stage_rows = [
        {"stage": name, "median ms": 1000 * s["median_s"], "repeats": len(s["times_s"])}
        for name, s in stages.items()
    ]
    result = {
        "command": shlex.join(["python", "benchmarks/vision3d.py", *sys.argv[1:]]),
        "description": "LLaVA-3D scene tokens for synthetic 640x480 RGB-D views at 336x336",
        "views": args.views,
        "image_size": 336,
        "patches": int(xyz.shape[1]),
        "voxel_tokens_0.2": pooled.num_tokens[0],
        "voxel_tokens_0.1": fine.num_tokens[0],
        "scene_tokens": int(tokens.shape[0]),
        "token_width": int(tokens.shape[1]),
        "stages": stages,
        "default_path": default_path,
        "sum_of_default_stages_s": sum(stages[n]["median_s"] for n in default_path),
        "clip": clip_info,
        "threads": args.threads,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },
        "note": "median of repeats; the machine is shared with other jobs, so expect noise",
    }
    if clip_info["measured"]:
        result["total_with_scaled_clip_s"] = (
            clip_info["scaled_to_all_views_s"] + stages["end_to_end_without_clip"]["median_s"]
        )
    atomic_write_json(args.out, result)
    _plot(stages, args.out.with_suffix(".png"), args.views, clip_info.get("views_per_pass"))
    print(markdown_table(stage_rows))
    print({k: v for k, v in result.items() if k not in ("stages", "machine")})


def _plot(
    stages: dict[str, dict[str, Any]], path: Path, views: int, clip_views: int | None
) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = [n for n in stages if n != "end_to_end_without_clip"]
    fig = Figure(figsize=(7.0, 4.0), dpi=110)
    ax = fig.add_subplot(111)
    values = [1000 * stages[n]["median_s"] for n in names]
    labels = [f"{n} ({clip_views} views)" if "clip" in n else n for n in names]
    ax.barh(labels, values, color=["#4c72b0" if "clip" not in n else "#c44e52" for n in names])
    ax.set_xscale("log")
    ax.set_xlabel("median time (ms, log scale)")
    ax.set_title(f"LLaVA-3D scene tokens: {views} views at 336 x 336 (CPU)")
    ax.invert_yaxis()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


if __name__ == "__main__":
    main()
