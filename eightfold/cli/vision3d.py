"""``eightfold vision3d``: LLaVA-3D scene tokens from a folder of RGB-D frames."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from eightfold.cli.common import console
from eightfold.storage import read_user_text

logger = logging.getLogger(__name__)

vision3d_app = typer.Typer(
    help="LLaVA-3D: 3D patches and scene tokens from posed RGB-D frames.",
    no_args_is_help=True,
)


@vision3d_app.command("synth")
def synth_command(
    out: Path = typer.Argument(..., help="Folder to write (ScanNet export layout; replaced)."),
    views: int = typer.Option(20, help="Number of views to render."),
    width: int = typer.Option(640, help="Frame width in pixels."),
    height: int = typer.Option(480, help="Frame height in pixels."),
    seed: int = typer.Option(0, help="Seed of the camera placement."),
) -> None:
    """Render the synthetic box room to OUT as colour, depth (uint16 mm), poses and intrinsic."""
    from eightfold.storage import check_output_dir
    from eightfold.vision3d.scene import render_synthetic_scene

    if views <= 0 or width <= 0 or height <= 0:
        raise ValueError(
            f"--views, --width and --height must be positive; got {views}, {width}, {height}"
        )
    check_output_dir(out, kind="scene")
    scene = render_synthetic_scene(views, width=width, height=height, seed=seed)
    folder = scene.write_scannet(out)
    console.print(f"wrote {views} views of {width} x {height} to [bold]{folder}[/bold]")
    typer.echo(str(folder))


@vision3d_app.command("scene")
def scene_command(
    folder: Path = typer.Argument(..., help="Scene folder: color/, depth/, pose/, intrinsic/."),
    frames: int = typer.Option(20, help="Views to sample (uniform stride from frame 0)."),
    dataset: str = typer.Option("scannet", help="Depth scale: scannet, 3rscan or matterport3d."),
    voxel_size: float = typer.Option(0.2, help="Voxel edge in metres."),
    pooling: str = typer.Option("voxelize", help="voxelize (released) or fps (paper)."),
    fps_tokens: int = typer.Option(1152, help="Tokens per scene with --pooling fps."),
    max_tokens: int = typer.Option(2560, help="Cap on scene tokens (0 = no cap)."),
    seed: int = typer.Option(0, help="Seed of the token cap."),
    clip_model: Path = typer.Option(
        None, help="Local CLIPVisionModel folder (with --checkpoint: real scene tokens)."
    ),
    checkpoint: Path = typer.Option(None, help="Local released LLaVA-3D checkpoint folder."),
    out: Path = typer.Option(None, help="Write the result here (.safetensors)."),
) -> None:
    """Build the 3D patches and pooled scene tokens of FOLDER; print a JSON summary.

    Without weights, the geometry is computed (patch positions, the voxel of each patch, token
    positions). With --clip-model and --checkpoint, the projected scene tokens are computed too.
    """
    import dataclasses

    import torch

    from eightfold.storage import atomic_write_bytes
    from eightfold.vision3d.frames import load_rgbd_scene
    from eightfold.vision3d.geometry import patch_positions, unproject_depth
    from eightfold.vision3d.pooling import cap_tokens, fps_pool, voxel_pool

    if pooling not in ("voxelize", "fps"):
        raise ValueError(f"--pooling must be 'voxelize' or 'fps'; got {pooling!r}")
    if (clip_model is None) != (checkpoint is None):
        raise ValueError(
            "--clip-model and --checkpoint go together: scene tokens need both CLIP and the "
            "LLaVA-3D weights; leave both out for geometry only"
        )
    if out is not None and out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors; got {str(out)!r}")
    if clip_model is not None:
        config_file = clip_model / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(
                f"--clip-model {str(clip_model)!r} is not a model folder (no config.json); pass "
                "a local CLIPVisionModel folder such as openai/clip-vit-large-patch14-336 saved "
                "with save_pretrained"
            )
        model_type = json.loads(read_user_text(config_file, "--clip-model config")).get(
            "model_type"
        )
        if model_type not in ("clip", "clip_vision_model"):
            raise ValueError(
                f"--clip-model {str(clip_model)!r} holds a {model_type!r} model; expected a CLIP "
                "vision model (model_type 'clip' or 'clip_vision_model')"
            )
    scene, chosen = load_rgbd_scene(
        folder, num_frames=frames, dataset=dataset, with_images=clip_model is not None
    )
    xyz = patch_positions(unproject_depth(scene.depths, scene.intrinsics, scene.poses))
    points = xyz.reshape(1, -1, 3)
    dummy = torch.zeros(1, points.shape[1], 1)
    if pooling == "voxelize":
        pooled = voxel_pool(points, dummy, voxel_size=voxel_size)
    else:
        pooled = fps_pool(points, dummy, num_samples=fps_tokens)
    token_xyz = pooled.xyz
    kept = torch.arange(token_xyz.shape[0])
    if max_tokens > 0:
        _, kept = cap_tokens(token_xyz, max_tokens, seed=seed)
    summary = {
        "views": scene.num_views,
        "frame_indices": chosen,
        "patches": int(points.shape[1]),
        "pooled_tokens": int(token_xyz.shape[0]),
        "scene_tokens": int(kept.numel()),
        "pooling": pooling,
        "voxel_size": voxel_size if pooling == "voxelize" else None,
        "bounds_min": [round(float(v), 3) for v in points[0].min(0).values],
        "bounds_max": [round(float(v), 3) for v in points[0].max(0).values],
    }
    tensors = {
        "patch_xyz": xyz.contiguous(),
        "token_xyz": token_xyz[kept].contiguous(),
        "depths": scene.depths.contiguous(),
        "intrinsics": scene.intrinsics.contiguous(),
        "poses": scene.poses.contiguous(),
    }
    if pooled.point_to_token is not None:
        tensors["point_to_token"] = pooled.point_to_token[0].contiguous()

    if checkpoint is not None:
        from transformers import CLIPVisionModel

        from eightfold.vision3d.checkpoint import load_llava3d

        model, report = load_llava3d(checkpoint, dtype=torch.float32)
        if not report.ok:
            console.print(f"[yellow]checkpoint: {report.summary()}[/yellow]")
        model.config = dataclasses.replace(
            model.config,
            pooling=pooling,  # type: ignore[arg-type]
            voxel_size=voxel_size,
            num_sample_tokens=fps_tokens,
            max_scene_tokens=max_tokens or None,
            cap_seed=seed,
        )
        model.vision_tower = CLIPVisionModel.from_pretrained(str(clip_model)).eval()
        assert scene.images is not None
        with torch.no_grad():
            feats = model.patch_features(scene.images[None])
            tokens = model.encode_scenes(
                feats, scene.depths[None], scene.poses[None], scene.intrinsics[None]
            )[0]
        tensors["scene_tokens"] = tokens.contiguous()
        summary["scene_tokens"] = int(tokens.shape[0])
        summary["token_width"] = int(tokens.shape[1])

    if out is not None:
        from safetensors.torch import save

        atomic_write_bytes(out, save(tensors, metadata={"summary": json.dumps(summary)}))
        summary["out"] = str(out)
    console.print(
        f"{summary['views']} views -> {summary['patches']} 3D patches -> "
        f"{summary['scene_tokens']} scene tokens"
    )
    typer.echo(json.dumps(summary, indent=2))


@vision3d_app.command("click")
def click_command(
    prompt: str = typer.Argument(..., help="A prompt with coordinates in square brackets."),
    released: bool = typer.Option(
        False, "--released", help="Reproduce the released parser's quirks instead of strict."
    ),
) -> None:
    """Parse the clicks of PROMPT (x, y, z in square brackets); print the new prompt and clicks."""
    from eightfold.vision3d.prompts import parse_click_prompt

    parsed = parse_click_prompt(prompt, mode="released" if released else "strict")
    typer.echo(json.dumps({"prompt": parsed.prompt, "clicks": parsed.clicks.tolist()}))


def register(app: typer.Typer) -> None:
    app.add_typer(vision3d_app, name="vision3d")
