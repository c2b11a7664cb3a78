"""The released-checkpoint adapter, on a tiny checkpoint that uses the released key names."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from eightfold.models import tiny_causal_lm
from eightfold.vision3d import (
    IMAGE_TOKEN_INDEX,
    LLaVA3D,
    LLaVA3DConfig,
    load_llava3d,
    map_released_key,
    released_key,
    save_released_checkpoint,
)


def _released_tensors(model: LLaVA3D) -> dict[str, torch.Tensor]:
    """The model's weights under the released names, spelled out here (not via the adapter)."""
    ours = model.state_dict()
    out = {}
    for layer in ("0", "1", "3"):
        for kind in ("weight", "bias"):
            out[
                f"model.video_tower.video_tower.positional_embedding.position_embedding_head."
                f"{layer}.{kind}"
            ] = ours[f"spatial_module.positional_embedding.position_embedding_head.{layer}.{kind}"]
            out[
                f"model.video_tower.prompt_encoder.pos_emb3d.position_embedding_head.{layer}.{kind}"
            ] = ours[f"prompt_encoder.pos_emb3d.position_embedding_head.{layer}.{kind}"]
    for layer in ("0", "2"):
        for kind in ("weight", "bias"):
            out[f"model.mm_projector.{layer}.{kind}"] = ours[f"mm_projector.{layer}.{kind}"]
    for name, tensor in ours.items():
        if name.startswith("language_model.model."):
            out["model." + name[len("language_model.model.") :]] = tensor
    out["lm_head.weight"] = ours["language_model.lm_head.weight"]
    return {k: v.clone().contiguous() for k, v in out.items()}


def _config(model: LLaVA3D) -> dict:
    config = model.language_model.config.to_dict()
    config.update(
        model_type="llava_llama",
        architectures=["LlavaLlamaForCausalLM"],
        mm_hidden_size=16,
        mm_projector_type="mlp2x_gelu",
        num_frames=20,
        num_sample_tokens=1152,
        mm_vision_select_layer=-2,
        mm_video_tower="SpatialAwareModule",
        tokenizer_model_max_length=4096,
        torch_dtype="float32",
    )
    return config


@pytest.fixture(scope="module")
def source():
    lm = tiny_causal_lm("llama", seed=3, num_hidden_layers=2)
    return LLaVA3D(lm, LLaVA3DConfig(vision_hidden_size=16)).eval()


def _inputs():
    g = torch.Generator().manual_seed(0)
    return dict(
        features=torch.randn(1, 2, 16, 4, 4, generator=g),
        depths=1 + torch.rand(1, 2, 56, 56, generator=g),
        poses=torch.eye(4).repeat(1, 2, 1, 1),
        intrinsics=torch.tensor(
            [[50.0, 0, 28, 0], [0, 50, 28, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
        ).expand(1, 2, 4, 4),
        clicks=[torch.tensor([[0.5, 0.1, 1.0]])],
    )


def test_released_names_load_exactly(tmp_path, source):
    tensors = _released_tensors(source)
    keys = sorted(tensors)
    save_file(
        {k: tensors[k] for k in keys[:20]}, str(tmp_path / "model-00001-of-00002.safetensors")
    )
    save_file(
        {k: tensors[k] for k in keys[20:]}, str(tmp_path / "model-00002-of-00002.safetensors")
    )
    index = {
        "weight_map": {
            k: f"model-0000{1 + (i >= 20)}-of-00002.safetensors" for i, k in enumerate(keys)
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(_config(source)))

    model, report = load_llava3d(tmp_path)
    assert report.ok, report.summary()
    assert len(report.loaded) == len(tensors)
    assert model.config.vision_hidden_size == 16 and model.config.max_length == 4096
    ids = [[1, 4, IMAGE_TOKEN_INDEX, 5, -300, 6]]
    with torch.no_grad():
        expected = source(ids, **_inputs()).logits
        got = model(ids, **_inputs()).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_missing_and_unexpected_keys_are_reported(tmp_path, source):
    tensors = _released_tensors(source)
    tensors.pop("model.mm_projector.2.bias")
    tensors["model.video_tower.cross_view.attn.weight"] = torch.zeros(2, 2)
    tensors["model.mm_projector.0.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(_config(source)))
    _, report = load_llava3d(tmp_path)
    assert report.missing == ["mm_projector.0.weight", "mm_projector.2.bias"]
    assert report.unexpected == ["model.video_tower.cross_view.attn.weight"]
    assert report.mismatched == [("model.mm_projector.0.weight", (3, 3), (64, 16))]
    with pytest.raises(ValueError, match="2 missing, 1 unexpected, 1 with mismatched"):
        load_llava3d(tmp_path, strict=True)


def test_round_trip_through_the_writer(tmp_path, source):
    save_released_checkpoint(source, tmp_path / "ckpt", num_shards=3)
    model, report = load_llava3d(tmp_path / "ckpt")
    assert report.ok
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor)


def test_key_map_is_invertible():
    for key in (
        "model.video_tower.video_tower.positional_embedding.position_embedding_head.3.bias",
        "model.video_tower.prompt_encoder.pos_emb3d.position_embedding_head.0.weight",
        "model.mm_projector.2.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight",
        "lm_head.weight",
    ):
        name = map_released_key(key)
        assert name is not None and released_key(name) == key
    assert map_released_key("something.else") is None


def test_refuses_pickles_and_lfs_pointers(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(FileNotFoundError, match="unpickling can run code"):
        load_llava3d(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ValueError, match="Git LFS pointer"):
        load_llava3d(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_llava3d(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_mistral"}))
    with pytest.raises(NotImplementedError, match="llava_mistral"):
        load_llava3d(tmp_path)


def test_bfloat16_load_runs(tmp_path, source):
    save_released_checkpoint(source, tmp_path / "ckpt")
    model, report = load_llava3d(tmp_path / "ckpt", dtype=torch.bfloat16)
    assert report.ok
    assert model.mm_projector[0].weight.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model([[1, IMAGE_TOKEN_INDEX, 5, -300]], **_inputs()).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
