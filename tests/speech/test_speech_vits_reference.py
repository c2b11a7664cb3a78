"""Cross-check of the decoder against an independent VITS: transformers' ``VitsModel``.

Both implement VITS inference (relative-attention text encoder, stochastic duration predictor
with spline flows, residual-coupling flows, HiFi-GAN). With the same weights, a style vector
passed to ``VitsModel`` as its speaker embedding, and both noises at zero, the waveforms must
agree. This checks everything except the reference (style) encoder, which VitsModel lacks.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eightfold.speech import UnitVITS, UnitVITSConfig
from eightfold.speech.decoder import _WeightNorm

transformers = pytest.importorskip("transformers")


def _perturbed_decoder(seed: int = 0) -> UnitVITS:
    torch.manual_seed(seed)
    model = UnitVITS(UnitVITSConfig.tiny(n_layers=2)).eval()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for p in model.parameters():  # activate the zero-initialised flows
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def _hf_model(ours: UnitVITS, style: torch.Tensor):
    c = ours.config
    config = transformers.VitsConfig(
        vocab_size=c.n_vocab,
        hidden_size=c.hidden_channels,
        num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads,
        ffn_dim=c.filter_channels,
        ffn_kernel_size=c.kernel_size,
        window_size=c.window_size,
        flow_size=c.inter_channels,
        spectrogram_bins=c.spec_channels,
        upsample_initial_channel=c.upsample_initial_channel,
        upsample_rates=c.upsample_rates,
        upsample_kernel_sizes=c.upsample_kernel_sizes,
        resblock_kernel_sizes=c.resblock_kernel_sizes,
        resblock_dilation_sizes=c.resblock_dilation_sizes,
        prior_encoder_num_flows=c.n_flows,
        prior_encoder_num_wavenet_layers=c.flow_layers,
        posterior_encoder_num_wavenet_layers=c.posterior_layers,
        num_speakers=2,
        speaker_embedding_size=c.gin_channels,
        use_stochastic_duration_prediction=True,
        duration_predictor_num_flows=4,
        noise_scale=0.0,
        noise_scale_duration=0.0,
        sampling_rate=c.sampling_rate,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        duration_predictor_dropout=0.0,
        layer_norm_eps=1e-5,
    )
    hf = transformers.VitsModel(config).eval()
    target = hf.state_dict()
    new: dict[str, torch.Tensor] = {}

    def put(name: str, value: torch.Tensor) -> None:
        assert name in target, name
        assert tuple(target[name].shape) == tuple(value.shape), (name, value.shape)
        new[name] = value.detach().clone()

    def conv(ours_module, hf_prefix: str) -> None:
        if isinstance(ours_module, _WeightNorm):
            if f"{hf_prefix}.parametrizations.weight.original0" in target:
                put(f"{hf_prefix}.parametrizations.weight.original0", ours_module.weight_g)
                put(f"{hf_prefix}.parametrizations.weight.original1", ours_module.weight_v)
            else:
                put(f"{hf_prefix}.weight", ours_module.weight())
        else:
            put(f"{hf_prefix}.weight", ours_module.weight)
        if ours_module.bias is not None:
            put(f"{hf_prefix}.bias", ours_module.bias)

    def norm(ours_module, hf_prefix: str) -> None:
        put(f"{hf_prefix}.weight", ours_module.gamma)
        put(f"{hf_prefix}.bias", ours_module.beta)

    def wavenet(ours_wn, prefix: str) -> None:
        for i, layer in enumerate(ours_wn.in_layers):
            conv(layer, f"{prefix}.in_layers.{i}")
        for i, layer in enumerate(ours_wn.res_skip_layers):
            conv(layer, f"{prefix}.res_skip_layers.{i}")
        conv(ours_wn.cond_layer, f"{prefix}.cond_layer")

    def dds(ours_dds, prefix: str) -> None:
        for i in range(len(ours_dds.convs_sep)):
            conv(ours_dds.convs_sep[i], f"{prefix}.convs_dilated.{i}")
            conv(ours_dds.convs_1x1[i], f"{prefix}.convs_pointwise.{i}")
            norm(ours_dds.norms_1[i], f"{prefix}.norms_1.{i}")
            norm(ours_dds.norms_2[i], f"{prefix}.norms_2.{i}")

    # unit (text) encoder
    put("text_encoder.embed_tokens.weight", ours.enc_p.emb.weight)
    for i, attn in enumerate(ours.enc_p.encoder.attn_layers):
        p = f"text_encoder.encoder.layers.{i}"
        for mine, theirs in (
            ("conv_q", "q_proj"),
            ("conv_k", "k_proj"),
            ("conv_v", "v_proj"),
            ("conv_o", "out_proj"),
        ):
            put(f"{p}.attention.{theirs}.weight", getattr(attn, mine).weight[:, :, 0])
            put(f"{p}.attention.{theirs}.bias", getattr(attn, mine).bias)
        put(f"{p}.attention.emb_rel_k", attn.emb_rel_k)
        put(f"{p}.attention.emb_rel_v", attn.emb_rel_v)
        norm(ours.enc_p.encoder.norm_layers_1[i], f"{p}.layer_norm")
        conv(ours.enc_p.encoder.ffn_layers[i].conv_1, f"{p}.feed_forward.conv_1")
        conv(ours.enc_p.encoder.ffn_layers[i].conv_2, f"{p}.feed_forward.conv_2")
        norm(ours.enc_p.encoder.norm_layers_2[i], f"{p}.final_layer_norm")
    conv(ours.enc_p.proj, "text_encoder.project")

    # prior flows (ours interleave Flip modules; VitsModel flips in code)
    couplings = [f for f in ours.flow.flows if hasattr(f, "enc")]
    for k, layer in enumerate(couplings):
        conv(layer.pre, f"flow.flows.{k}.conv_pre")
        wavenet(layer.enc, f"flow.flows.{k}.wavenet")
        conv(layer.post, f"flow.flows.{k}.conv_post")

    # stochastic duration predictor
    dp = ours.dp
    conv(dp.pre, "duration_predictor.conv_pre")
    conv(dp.proj, "duration_predictor.conv_proj")
    dds(dp.convs, "duration_predictor.conv_dds")
    conv(dp.cond, "duration_predictor.cond")
    conv(dp.post_pre, "duration_predictor.post_conv_pre")
    conv(dp.post_proj, "duration_predictor.post_conv_proj")
    dds(dp.post_convs, "duration_predictor.post_conv_dds")
    for stack, name in ((dp.flows, "flows"), (dp.post_flows, "post_flows")):
        put(f"duration_predictor.{name}.0.translate", stack[0].m)
        put(f"duration_predictor.{name}.0.log_scale", stack[0].logs)
        spline_flows = [f for f in stack if hasattr(f, "proj")]
        for k, flow in enumerate(spline_flows, start=1):
            conv(flow.pre, f"duration_predictor.{name}.{k}.conv_pre")
            dds(flow.convs, f"duration_predictor.{name}.{k}.conv_dds")
            conv(flow.proj, f"duration_predictor.{name}.{k}.conv_proj")

    # HiFi-GAN
    conv(ours.dec.conv_pre, "decoder.conv_pre")
    for i, up in enumerate(ours.dec.ups):
        conv(up, f"decoder.upsampler.{i}")
    for j, block in enumerate(ours.dec.resblocks):
        for k in range(len(block.convs1)):
            conv(block.convs1[k], f"decoder.resblocks.{j}.convs1.{k}")
            conv(block.convs2[k], f"decoder.resblocks.{j}.convs2.{k}")
    put("decoder.conv_post.weight", ours.dec.conv_post.weight)
    conv(ours.dec.cond, "decoder.cond")

    # posterior encoder (unused at inference; copied for completeness)
    conv(ours.enc_q.pre, "posterior_encoder.conv_pre")
    wavenet(ours.enc_q.enc, "posterior_encoder.wavenet")
    conv(ours.enc_q.proj, "posterior_encoder.conv_proj")

    # the style vector plays the speaker embedding
    put("embed_speaker.weight", torch.stack([style, torch.zeros_like(style)]))

    missing = set(target) - set(new)
    assert not missing, sorted(missing)
    hf.load_state_dict(new, strict=True)
    return hf


@pytest.mark.parametrize("seed", [0, 1])
def test_waveform_matches_transformers_vits(seed: int) -> None:
    ours = _perturbed_decoder(seed)
    style = F.normalize(torch.randn(8, generator=torch.Generator().manual_seed(seed)), dim=0)
    hf = _hf_model(ours, style)
    units = [5, 17, 4095, 0, 5, 880, 12, 3000, 41]
    mine = ours.synthesize(units, style, deterministic=True)
    ids = torch.tensor([[178 + u for u in units]])
    with torch.no_grad():
        theirs = hf(input_ids=ids, speaker_id=0)
    n = int(mine.lengths[0])
    assert theirs.waveform.shape[1] == n, (theirs.waveform.shape, n)
    torch.testing.assert_close(mine.waveform[0], theirs.waveform[0], atol=1e-5, rtol=1e-4)
    assert float(mine.waveform.abs().max()) > 1e-3  # not a trivially silent output


def test_sampling_matches_transformers_vits_for_the_same_seed() -> None:
    # Same random stream, same order (duration noise, then prior noise), same scales.
    ours = _perturbed_decoder(2)
    style = F.normalize(torch.randn(8, generator=torch.Generator().manual_seed(2)), dim=0)
    hf = _hf_model(ours, style)
    hf.noise_scale, hf.noise_scale_duration = 0.667, 0.8
    units = [7, 7, 100, 2000, 3]
    torch.manual_seed(123)
    mine = ours.synthesize(units, style, noise_scale=0.667, noise_scale_w=0.8)
    torch.manual_seed(123)
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor([[178 + u for u in units]]), speaker_id=0)
    assert theirs.waveform.shape[1] == int(mine.lengths[0])
    torch.testing.assert_close(mine.waveform[0], theirs.waveform[0], atol=1e-5, rtol=1e-4)
