"""Splicing scene and click tokens into tiny Hugging Face causal LMs of several architectures."""

from __future__ import annotations

import pytest
import torch

from eightfold.models import tiny_causal_lm
from eightfold.vision3d import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    LOC_TOKEN_INDEX,
    LLaVA3D,
    LLaVA3DConfig,
    build_projector,
    conversation_prompt,
    splice_embeddings,
    tokenize_multimodal,
)

S, L = IMAGE_TOKEN_INDEX, LOC_TOKEN_INDEX


def _scene(batch=1, views=2, channels=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, views, channels, 4, 4, generator=g)
    depth = 0.5 + 3 * torch.rand(batch, views, 56, 56, generator=g)
    k = torch.tensor([[50.0, 0, 28, 0], [0, 50, 28, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    poses = torch.eye(4).repeat(batch, views, 1, 1)
    poses[:, 1, :3, 3] = torch.tensor([1.0, 0.0, 0.0])
    return {
        "features": feats,
        "depths": depth,
        "poses": poses,
        "intrinsics": k.expand(batch, views, 4, 4),
    }


def test_splice_positions_labels_and_padding():
    emb = torch.nn.Embedding(10, 4)
    scene = torch.full((3, 4), 7.0)
    click = torch.full((1, 4), -7.0)
    ids = [[1, S, 2, L, 3], [4, 5]]
    labels = [[1, S, 2, L, 3], [4, 5]]
    out = splice_embeddings(
        ids, emb, scene_tokens=[scene, None], click_tokens=[click, None], labels=labels
    )
    assert out.inputs_embeds.shape == (2, 7, 4)
    assert torch.equal(out.inputs_embeds[0, 1:4], scene)
    assert torch.equal(out.inputs_embeds[0, 5], click[0])
    assert torch.equal(out.inputs_embeds[0, 0], emb.weight[1].detach())
    assert out.labels[0].tolist() == [1, -100, -100, -100, 2, -100, 3]
    assert out.attention_mask.tolist() == [[1] * 7, [1, 1] + [0] * 5]
    assert out.labels[1].tolist() == [4, 5] + [IGNORE_INDEX] * 5
    assert out.position_ids[0].tolist()[:7] == list(range(7))
    left = splice_embeddings(
        ids, emb, scene_tokens=[scene, None], click_tokens=[click, None], padding_side="left"
    )
    assert left.attention_mask[1].tolist() == [0] * 5 + [1, 1]
    assert left.position_ids[1].tolist()[-2:] == [0, 1]
    assert left.labels is None


def test_splice_drops_masked_padding_and_truncates():
    emb = torch.nn.Embedding(10, 4)
    ids = torch.tensor([[1, S, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    out = splice_embeddings(
        ids, emb, scene_tokens=[torch.zeros(5, 4)], attention_mask=mask, max_length=4
    )
    assert out.inputs_embeds.shape == (1, 4, 4)


@pytest.mark.parametrize(
    ("ids", "scenes", "clicks", "message"),
    [
        ([[1, S, 2]], None, None, "1 scene placeholder"),
        ([[1, 2]], [torch.zeros(2, 4)], None, "0 scene placeholder"),
        ([[1, L, L]], None, [torch.zeros(1, 4)], "2 <boxes> placeholder"),
        ([[1, -5]], None, None, "negative token id -5"),
        ([[1, S]], [torch.zeros(2, 3)], None, "language model's width"),
    ],
)
def test_splice_mismatches_raise(ids, scenes, clicks, message):
    emb = torch.nn.Embedding(10, 4)
    with pytest.raises(ValueError, match=message):
        splice_embeddings(ids, emb, scene_tokens=scenes, click_tokens=clicks)


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "phi3"])
def test_llava3d_runs_on_any_tiny_lm(arch):
    lm = tiny_causal_lm(arch, seed=0, num_hidden_layers=2)
    model = LLaVA3D(lm, LLaVA3DConfig(vision_hidden_size=16)).eval()
    ids = [[1, 5, 6, S, 7, L, 8, 9]]
    clicks = [torch.tensor([[0.1, 0.2, 0.3]])]
    scene = _scene()
    labels = torch.tensor(ids).clamp_min(0)
    out = model(ids, labels=labels, clicks=clicks, **scene)
    tokens = model.encode_scenes(**scene)[0]
    assert out.logits.shape == (1, 7 + tokens.shape[0], lm.config.vocab_size)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    # The loss reaches the 3D position embedding, the projector and the click encoder.
    for module in (model.spatial_module, model.mm_projector, model.prompt_encoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    new = model.generate(ids, clicks=clicks, max_new_tokens=3, **scene)
    assert new.shape == (1, 3)


def test_scene_changes_the_logits_and_cap_is_repeatable():
    lm = tiny_causal_lm("llama", seed=0, num_hidden_layers=2)
    config = LLaVA3DConfig(vision_hidden_size=16, max_scene_tokens=5)
    model = LLaVA3D(lm, config).eval()
    ids = [[1, S, 7]]
    with torch.no_grad():
        a = model(ids, **_scene(seed=0)).logits
        b = model(ids, **_scene(seed=0)).logits
        c = model(ids, **_scene(seed=1)).logits
    assert a.shape[1] == 2 + 5
    assert torch.equal(a, b)
    assert not torch.allclose(a[:, -1], c[:, -1])


def test_fps_preset_and_2d_path():
    lm = tiny_causal_lm("llama", seed=0, num_hidden_layers=2)
    config = LLaVA3DConfig.from_preset("v3_paper", vision_hidden_size=16, num_sample_tokens=7)
    assert config.num_frames == 32 and config.pooling == "fps"
    model = LLaVA3D(lm, config).eval()
    assert model.encode_scenes(**_scene())[0].shape == (7, 64)
    feats = torch.randn(2, 9, 16)
    model.train()
    with_trick = model.encode_images(feats)
    model.eval()
    torch.testing.assert_close(with_trick, model.encode_images(feats))
    with pytest.raises(ValueError, match="unknown preset"):
        LLaVA3DConfig.from_preset("v2")


def test_config_validation():
    with pytest.raises(ValueError, match="pooling"):
        LLaVA3DConfig(pooling="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="projector_type"):
        LLaVA3DConfig(projector_type="mlp2x_relu")
    with pytest.raises(ValueError, match="max_scene_tokens"):
        LLaVA3DConfig(max_scene_tokens=0)
    proj = build_projector("mlp2x_gelu", 8, 12)
    assert [k for k in proj.state_dict()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(build_projector("mlp3x_gelu", 8, 12)) == 5


def test_missing_geometry_is_reported():
    model = LLaVA3D(
        tiny_causal_lm("llama", seed=0, num_hidden_layers=1), LLaVA3DConfig(vision_hidden_size=16)
    )
    scene = _scene()
    with pytest.raises(ValueError, match="depths, poses and intrinsics"):
        model([[1, S]], features=scene["features"])
    with pytest.raises(ValueError, match="no vision_tower"):
        model(
            [[1, S]],
            pixel_values=torch.zeros(1, 2, 3, 56, 56),
            depths=scene["depths"],
            poses=scene["poses"],
            intrinsics=scene["intrinsics"],
        )


def test_vision_tower_path():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    tower = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=56,
            patch_size=14,
        )
    ).eval()
    model = LLaVA3D(
        tiny_causal_lm("llama", seed=0, num_hidden_layers=1),
        LLaVA3DConfig(vision_hidden_size=16),
        vision_tower=tower,
    ).eval()
    scene = _scene()
    pixels = torch.randn(1, 2, 3, 56, 56)
    feats = model.patch_features(pixels)
    assert feats.shape == (1, 2, 16, 4, 4)
    scene.pop("features")
    with torch.no_grad():
        out = model([[1, S, 3]], pixel_values=pixels, **scene)
    assert torch.isfinite(out.logits).all()


class _CharTokenizer:
    bos_token_id = 1

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) % 50 + 2 for c in text]}


def test_tokenize_multimodal_and_template():
    tok = _CharTokenizer()
    prompt = conversation_prompt("Where is [1, 2, 3]?".replace("[1, 2, 3]", "<boxes>"))
    assert prompt.endswith("USER: <image>\nWhere is <boxes>? ASSISTANT:")
    ids = tokenize_multimodal("ab<video>c<boxes>", tok)
    assert ids == [1, ord("a") % 50 + 2, ord("b") % 50 + 2, S, ord("c") % 50 + 2, L]
    assert tokenize_multimodal("<image>", tok, add_bos=False) == [S]


def test_patch_pixel_unprojection_matches_the_released_path():
    lm = tiny_causal_lm("llama", seed=0, num_hidden_layers=1)
    released = LLaVA3D(lm, LLaVA3DConfig(vision_hidden_size=16)).eval()
    fast = LLaVA3D(lm, LLaVA3DConfig(vision_hidden_size=16, unproject="patch_pixels")).eval()
    fast.load_state_dict(released.state_dict())
    with torch.no_grad():
        a = released.encode_scenes(**_scene())[0]
        b = fast.encode_scenes(**_scene())[0]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unproject must be"):
        LLaVA3DConfig(unproject="some_pixels")  # type: ignore[arg-type]
