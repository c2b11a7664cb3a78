"""``eightfold vision3d``: synth, scene (geometry and with weights) and click."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from eightfold.cli import main
from eightfold.models import tiny_causal_lm
from eightfold.vision3d import LLaVA3D, LLaVA3DConfig, save_released_checkpoint


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_synth_then_scene_geometry(tmp_path, capsys):
    folder = tmp_path / "room"
    assert (
        main(
            ["vision3d", "synth", str(folder), "--views", "3", "--width", "160", "--height", "120"]
        )
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "scene.safetensors"
    rc = main(["vision3d", "scene", str(folder), "--frames", "3", "--out", str(out)])
    assert rc == 0
    summary = _json(capsys)
    assert summary["views"] == 3 and summary["patches"] == 3 * 576
    assert 0 < summary["scene_tokens"] == summary["pooled_tokens"] < 3 * 576
    with safe_open(str(out), framework="pt") as f:
        assert f.get_tensor("patch_xyz").shape == (3, 24, 24, 3)
        assert f.get_tensor("token_xyz").shape == (summary["scene_tokens"], 3)
        assert int(f.get_tensor("point_to_token").max()) + 1 == summary["pooled_tokens"]

    assert (
        main(
            [
                "vision3d",
                "scene",
                str(folder),
                "--frames",
                "3",
                "--pooling",
                "fps",
                "--fps-tokens",
                "50",
            ]
        )
        == 0
    )
    assert _json(capsys)["scene_tokens"] == 50
    assert main(["vision3d", "scene", str(folder), "--max-tokens", "10"]) == 0
    assert _json(capsys)["scene_tokens"] == 10


def test_scene_with_weights(tmp_path, capsys):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=336,
            patch_size=14,
        )
    ).save_pretrained(tmp_path / "clip")
    model = LLaVA3D(
        tiny_causal_lm("llama", seed=0, num_hidden_layers=1), LLaVA3DConfig(vision_hidden_size=16)
    )
    save_released_checkpoint(model, tmp_path / "llava3d")
    assert (
        main(
            [
                "vision3d",
                "synth",
                str(tmp_path / "room"),
                "--views",
                "2",
                "--width",
                "160",
                "--height",
                "120",
            ]
        )
        == 0
    )
    capsys.readouterr()
    rc = main(
        [
            "vision3d",
            "scene",
            str(tmp_path / "room"),
            "--frames",
            "2",
            "--clip-model",
            str(tmp_path / "clip"),
            "--checkpoint",
            str(tmp_path / "llava3d"),
            "--out",
            str(tmp_path / "t.safetensors"),
        ]
    )
    assert rc == 0
    summary = _json(capsys)
    assert summary["token_width"] == 64
    with safe_open(str(tmp_path / "t.safetensors"), framework="pt") as f:
        assert f.get_tensor("scene_tokens").shape == (summary["scene_tokens"], 64)


def test_scene_errors_exit_2(tmp_path, capsys):
    assert main(["vision3d", "scene", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["vision3d", "scene", str(tmp_path), "--pooling", "mean"]) == 2
    assert main(["vision3d", "scene", str(tmp_path), "--clip-model", str(tmp_path)]) == 2
    assert "go together" in capsys.readouterr().err
    both = ["--checkpoint", str(tmp_path)]
    assert main(["vision3d", "scene", str(tmp_path), "--clip-model", str(tmp_path), *both]) == 2
    assert "not a model folder" in capsys.readouterr().err
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text('{"model_type": "llama"}')
    assert main(["vision3d", "scene", str(tmp_path), "--clip-model", str(lm), *both]) == 2
    assert "holds a 'llama' model; expected a CLIP" in capsys.readouterr().err


def test_click(capsys):
    assert main(["vision3d", "click", "Look at [1.23456, 2, -3]."]) == 0
    got = _json(capsys)
    assert got["prompt"] == "Look at <boxes>."
    assert got["clicks"][0][0] == torch.tensor(1.235).item()
    assert main(["vision3d", "click", "Look at [1, 2]."]) == 2
    assert main(["vision3d", "click", "--released", "Look at [1, 2]."]) == 0
