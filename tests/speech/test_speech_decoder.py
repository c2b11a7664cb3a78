"""The unit-to-speech decoder: shapes, determinism, style routing, flows, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from eightfold.speech import UnitVITS, UnitVITSConfig, load_state_dict_file
from eightfold.speech.decoder import (
    _RelativeSelfAttention,
    generate_path,
    rational_quadratic_spline,
    sequence_mask,
)


def _model(seed: int = 0, **overrides) -> UnitVITS:
    torch.manual_seed(seed)
    model = UnitVITS(UnitVITSConfig.tiny(**overrides)).eval()
    # The flows and duration predictor are zero-initialised (identity); perturb every parameter
    # so that the tests see a model whose every path is active, like a trained one.
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def _style(dim: int = 8, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(dim, generator=torch.Generator().manual_seed(seed)), dim=0)


UNITS = [5, 17, 4095, 0, 5, 880, 12]


def test_output_length_and_sample_rate() -> None:
    model = _model()
    out = model.synthesize(UNITS, _style(), deterministic=True)
    assert out.sample_rate == 22050
    assert out.durations.shape == (1, len(UNITS))
    assert bool((out.durations >= 0).all())
    frames = int(out.durations.sum())
    assert int(out.lengths[0]) == frames * model.config.hop_length == out.waveform.shape[1]
    assert float(out.waveform.abs().max()) <= 1.0


def test_length_scale_stretches_durations() -> None:
    model = _model()
    base = model.synthesize(UNITS, _style(), deterministic=True)
    slow = model.synthesize(UNITS, _style(), deterministic=True, length_scale=3.0)
    assert int(slow.lengths[0]) > int(base.lengths[0])


def test_deterministic_mode_is_bit_stable_and_sampling_is_seeded() -> None:
    model = _model()
    a = model.synthesize(UNITS, _style(), deterministic=True)
    b = model.synthesize(UNITS, _style(), deterministic=True)
    assert torch.equal(a.waveform, b.waveform)
    s1 = model.synthesize(UNITS, _style(), generator=torch.Generator().manual_seed(3))
    s2 = model.synthesize(UNITS, _style(), generator=torch.Generator().manual_seed(3))
    s3 = model.synthesize(UNITS, _style(), generator=torch.Generator().manual_seed(4))
    assert torch.equal(s1.waveform, s2.waveform)
    assert not torch.equal(s1.waveform, s3.waveform)


def test_training_mode_is_restored_and_dropout_off() -> None:
    model = _model()
    model.train()
    a = model.synthesize(UNITS, _style(), deterministic=True)
    assert model.training
    b = model.synthesize(UNITS, _style(), deterministic=True)
    assert torch.equal(a.waveform, b.waveform)


def test_batch_matches_single_items() -> None:
    model = _model()
    single = [model.synthesize(u, _style(), deterministic=True) for u in (UNITS, [1, 2, 3])]
    batch = model.synthesize([UNITS, [1, 2, 3]], _style(), deterministic=True)
    for i, one in enumerate(single):
        n = int(one.lengths[0])
        assert int(batch.lengths[i]) == n
        torch.testing.assert_close(batch.waveform[i, :n], one.waveform[0], atol=1e-5, rtol=0)
        assert bool((batch.waveform[i, n:] == 0).all())
    padded = torch.tensor([UNITS, [1, 2, 3, 0, 0, 0, 0]])
    from_tensor = model.synthesize(
        padded, _style(), unit_lengths=torch.tensor([7, 3]), deterministic=True
    )
    torch.testing.assert_close(from_tensor.waveform, batch.waveform)


def test_style_conditions_durations_flows_and_generator_but_not_the_unit_encoder() -> None:
    model = _model()
    g1, g2 = _style(seed=1)[None, :, None], _style(seed=2)[None, :, None]
    x, lengths = model._symbol_batch(UNITS, None)
    with torch.no_grad():
        h, _, _, mask = model.enc_p(x, lengths)
        noise = torch.zeros(1, 2, len(UNITS))
        assert not torch.allclose(
            model.dp.infer(h, mask, g1, noise), model.dp.infer(h, mask, g2, noise)
        )
        z = torch.randn(
            1, model.config.inter_channels, 20, generator=torch.Generator().manual_seed(0)
        )
        ymask = torch.ones(1, 1, 20)
        assert not torch.allclose(
            model.flow(z, ymask, g=g1, reverse=True), model.flow(z, ymask, g=g2, reverse=True)
        )
        assert not torch.allclose(model.dec(z, g=g1), model.dec(z, g=g2))
    # the unit encoder takes no style argument at all
    assert "g" not in model.enc_p.forward.__code__.co_varnames


def test_style_shapes_and_errors() -> None:
    model = _model()
    flat = model.synthesize(UNITS, _style(), deterministic=True)
    column = model.synthesize(UNITS, _style()[None, :, None], deterministic=True)
    assert torch.equal(flat.waveform, column.waveform)
    with pytest.raises(ValueError, match=r"style must have shape \(8,\)"):
        model.synthesize(UNITS, torch.zeros(7), deterministic=True)
    with pytest.raises(ValueError, match="2 vectors for 1"):
        model.synthesize(UNITS, torch.zeros(2, 8), deterministic=True)
    unstyled = model.synthesize(UNITS, None, deterministic=True)
    assert unstyled.waveform.shape[0] == 1


def test_unit_containers() -> None:
    import numpy as np

    model = _model()
    ref = model.synthesize([1, 2, 3], deterministic=True)
    for units in (np.array([1, 2, 3]), (1, 2, 3), torch.tensor([1, 2, 3]), [np.int64(1), 2, 3]):
        assert torch.equal(model.synthesize(units, deterministic=True).waveform, ref.waveform)
    both = model.synthesize([np.array([1, 2, 3]), torch.tensor([4, 5])], deterministic=True)
    assert both.waveform.shape[0] == 2


def test_bad_units() -> None:
    model = _model()
    with pytest.raises(ValueError, match="empty"):
        model.synthesize([], deterministic=True)
    with pytest.raises(ValueError, match="4096 is out of range"):
        model.synthesize([1, 4096], deterministic=True)
    with pytest.raises(ValueError, match="length_scale"):
        model.synthesize(UNITS, length_scale=0)
    with pytest.raises(ValueError, match="max_frames"):
        model.synthesize(UNITS, deterministic=True, length_scale=50.0, max_frames=10)


def test_flows_invert_exactly() -> None:
    model = _model()
    g = _style()[None, :, None]
    z = torch.randn(2, model.config.inter_channels, 13, generator=torch.Generator().manual_seed(1))
    mask = sequence_mask(torch.tensor([13, 9]), 13).unsqueeze(1).float()
    z = z * mask
    with torch.no_grad():
        forward = model.flow(z, mask, g=g.expand(2, -1, -1))
        back = model.flow(forward, mask, g=g.expand(2, -1, -1), reverse=True)
    torch.testing.assert_close(back, z, atol=1e-5, rtol=0)


def test_spline_inverse_and_log_determinant() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 9, generator=gen) * 3  # some inputs fall in the identity tails
    w, h = torch.randn(4, 1, 9, 10, generator=gen), torch.randn(4, 1, 9, 10, generator=gen)
    d = torch.randn(4, 1, 9, 9, generator=gen)
    y, logdet = rational_quadratic_spline(x, w, h, d)
    x_back, logdet_inv = rational_quadratic_spline(y, w, h, d, inverse=True)
    torch.testing.assert_close(x_back, x, atol=1e-4, rtol=0)
    torch.testing.assert_close(logdet_inv, -logdet, atol=1e-4, rtol=0)
    # the log-determinant is the log of the derivative (central differences in float64)
    eps = 1e-5
    x64, w64, h64, d64 = x.double(), w.double(), h.double(), d.double()
    up, _ = rational_quadratic_spline(x64 + eps, w64, h64, d64)
    down, _ = rational_quadratic_spline(x64 - eps, w64, h64, d64)
    _, logdet64 = rational_quadratic_spline(x64, w64, h64, d64)
    inside = x.abs() < 5 - 1e-3
    numeric = torch.log((up - down) / (2 * eps))
    torch.testing.assert_close(logdet64[inside], numeric[inside], atol=1e-5, rtol=0)
    outside = x.abs() > 5
    assert torch.equal(y[outside], x[outside])


def test_relative_attention_matches_its_definition() -> None:
    torch.manual_seed(0)
    attn = _RelativeSelfAttention(channels=8, n_heads=2, p_dropout=0.0, window_size=2).eval()
    x = torch.randn(1, 8, 6)
    mask = torch.ones(1, 1, 6)
    attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
    got = attn(x, attn_mask)

    # brute force: scores_ij = q_i.(k_j + E_k[j-i]) / sqrt(d) inside the window, q_i.k_j outside
    d, t, w = 4, 6, 2
    q = attn.conv_q(x).view(2, d, t).transpose(1, 2) / math.sqrt(d)
    k = attn.conv_k(x).view(2, d, t).transpose(1, 2)
    v = attn.conv_v(x).view(2, d, t).transpose(1, 2)
    out = torch.zeros(2, t, d)
    for head in range(2):
        scores = torch.zeros(t, t)
        for i in range(t):
            for j in range(t):
                key = k[head, j] + (attn.emb_rel_k[0, j - i + w] if abs(j - i) <= w else 0)
                scores[i, j] = q[head, i] @ key
        p = scores.softmax(-1)
        for i in range(t):
            for j in range(t):
                value = v[head, j] + (attn.emb_rel_v[0, j - i + w] if abs(j - i) <= w else 0)
                out[head, i] += p[i, j] * value
    expected = attn.conv_o(out.transpose(1, 2).reshape(1, 8, t))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_generate_path() -> None:
    durations = torch.tensor([[[2.0, 0.0, 3.0]]])
    mask = torch.ones(1, 1, 5, 3)
    path = generate_path(durations, mask)[0, 0]
    expected = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]]).float()
    assert torch.equal(path, expected)


def test_parameter_names_follow_the_released_decoder() -> None:
    with torch.device("meta"):
        model = UnitVITS()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "enc_p.emb.weight": (4274, 192),
        "enc_p.encoder.attn_layers.5.emb_rel_k": (1, 9, 96),
        "enc_p.encoder.norm_layers_1.0.gamma": (192,),
        "enc_p.encoder.ffn_layers.0.conv_1.weight": (768, 192, 3),
        "enc_p.proj.weight": (384, 192, 1),
        "dec.conv_pre.weight": (512, 192, 7),
        "dec.cond.weight": (512, 256, 1),
        "dec.ups.0.weight_g": (512, 1, 1),
        "dec.ups.0.weight_v": (512, 256, 16),
        "dec.ups.3.weight_v": (64, 32, 4),
        "dec.resblocks.11.convs2.2.weight_v": (32, 32, 11),
        "dec.conv_post.weight": (1, 32, 7),
        "enc_q.pre.weight": (192, 513, 1),
        "enc_q.enc.in_layers.15.weight_v": (384, 192, 5),
        "enc_q.enc.cond_layer.weight_g": (6144, 1, 1),
        "flow.flows.6.enc.cond_layer.weight_v": (1536, 256, 1),
        "flow.flows.0.post.weight": (96, 192, 1),
        "dp.flows.0.logs": (2, 1),
        "dp.flows.7.convs.norms_2.2.beta": (192,),
        "dp.flows.1.proj.weight": (29, 192, 1),
        "dp.post_flows.7.proj.bias": (29,),
        "dp.cond.weight": (192, 256, 1),
        "emb_g.weight": (1344, 256),
        "enc_r.spectral.3.fc.weight": (192, 192),
        "enc_r.temporal.1.conv1.conv.weight": (384, 192, 5),
        "enc_r.slf_attn.w_qs.weight": (192, 192),
        "enc_r.fc.fc.weight": (256, 192),
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    assert "dec.conv_post.bias" not in shapes
    assert not any(k.startswith("flow.flows.1.") for k in shapes)  # Flip has no parameters


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = _model()
    folder = model.save_pretrained(tmp_path / "u2s")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    loaded = UnitVITS.from_pretrained(folder)
    assert loaded.config == model.config
    a = model.synthesize(UNITS, _style(), deterministic=True)
    b = loaded.synthesize(UNITS, _style(), deterministic=True)
    assert torch.equal(a.waveform, b.waveform)


def test_loads_the_authors_checkpoint_layout(tmp_path: Path) -> None:
    model = _model()
    # G_*.pth as the authors save it: {"model": state_dict, "iteration", ...}, lowercase
    # gamma/beta; and a wrapper with GAMMA/BETA names under a prefix (the hub format).
    state = model.state_dict()
    folder = tmp_path / "release"
    model.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(
        {"model": state, "iteration": 322000, "learning_rate": 2e-4, "optimizer": None},
        folder / "G_322000.pth",
    )
    loaded = UnitVITS.from_pretrained(folder)
    assert torch.equal(loaded.enc_p.emb.weight, model.enc_p.emb.weight)

    wrapped = {
        "u2s_model." + k.replace(".gamma", ".GAMMA").replace(".beta", ".BETA"): v
        for k, v in state.items()
    }
    wrapped["s2u_model.pre_quant.weight"] = torch.zeros(4, 768)
    other = UnitVITS(model.config)
    other.load_official_state_dict(wrapped)
    assert torch.equal(other.dp.convs.norms_1[0].gamma, model.dp.convs.norms_1[0].gamma)


def test_mismatched_checkpoint_lists_keys(tmp_path: Path) -> None:
    model = _model()
    state = dict(model.state_dict())
    state.pop("dec.conv_pre.weight")
    state["dec.extra.weight"] = torch.zeros(1)
    state["enc_p.emb.weight"] = torch.zeros(10, 16)
    with pytest.raises(ValueError) as info:
        model.load_official_state_dict(state)
    message = str(info.value)
    assert "1 missing keys: dec.conv_pre.weight" in message
    assert "1 unexpected keys: dec.extra.weight" in message
    assert "enc_p.emb.weight: checkpoint (10, 16) vs model (4274, 16)" in message


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        UnitVITS.from_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no decoder weights"):
        UnitVITS.from_pretrained(empty)
    pointer = tmp_path / "G_1.pth"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(ValueError, match="git-LFS pointer"):
        load_state_dict_file(pointer)
    bad = tmp_path / "evil.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights-only"):
        load_state_dict_file(bad)


def test_config_validation_and_official_layout() -> None:
    with pytest.raises(ValueError, match="must equal hop_length"):
        UnitVITSConfig(upsample_rates=[8, 8, 2, 1])
    with pytest.raises(ValueError, match="divisible by n_heads"):
        UnitVITSConfig(n_heads=5)
    released = UnitVITSConfig()
    assert released.n_vocab == 4274 and released.spec_channels == 513
    again = UnitVITSConfig.from_official_dict(released.to_official_dict())
    assert again == released
    with pytest.raises(ValueError, match="text_split"):
        UnitVITSConfig.from_official_dict(
            {"data": {"text_cleaners": ["english_cleaners2"]}, "model": {}}
        )
