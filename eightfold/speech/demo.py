"""Demo section: EMOVA's FSQ codebook on synthetic input, and a waveform from the tiny decoder."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch

from eightfold.demo import DemoContext, demo_section
from eightfold.report import Section, markdown_table

logger = logging.getLogger(__name__)


def _usage(indices: torch.Tensor, size: int) -> dict[str, float]:
    counts = torch.bincount(indices.reshape(-1), minlength=size).double()
    p = counts / counts.sum()
    nonzero = p[p > 0]
    entropy = float(-(nonzero * nonzero.log()).sum())
    return {
        "codes used": int((counts > 0).sum()),
        "share of 4096": float((counts > 0).double().mean()),
        "usage perplexity": math.exp(entropy),
    }


@demo_section("EMOVA speech units and unit-to-speech decoder", order=80)
def speech_section(ctx: DemoContext) -> Section:
    from eightfold.speech import (
        FSQ,
        StyleRegistry,
        UnitVITS,
        UnitVITSConfig,
        advertised_conditions,
        reduce_units,
        units_to_speech_tokens,
    )

    fsq = FSQ()
    n = 4_000 if ctx.quick else 50_000
    gen = torch.Generator().manual_seed(ctx.seed)
    scales = [0.3, 1.0, 3.0]
    rows = []
    level_histograms: dict[float, torch.Tensor] = {}
    sorted_usage: dict[float, torch.Tensor] = {}
    for scale in scales:
        z = torch.randn(n, 4, generator=gen) * scale
        codes, indices = fsq.quantize(z)
        digits = (codes * 4 + 4).round().long()  # 0..7 per dimension
        level_histograms[scale] = (
            torch.stack([torch.bincount(digits[:, d], minlength=8) for d in range(4)]).double() / n
        )
        counts = torch.bincount(indices, minlength=fsq.codebook_size).double()
        sorted_usage[scale] = torch.sort(counts, descending=True).values / n
        saturated = float(((digits == 0) | (digits == 7)).double().mean())
        rows.append(
            {
                "input std": scale,
                **_usage(indices, fsq.codebook_size),
                "saturated levels": saturated,
            }
        )

    # Units from a smooth synthetic trajectory (runs of similar frames, like 40 ms speech
    # frames), reduced as the released pipeline does, then decoded by the tiny random decoder.
    frames = 100 if ctx.quick else 250
    anchors = torch.randn(frames // 5 + 1, 4, generator=gen)
    trajectory = anchors.repeat_interleave(5, dim=0)[:frames]
    trajectory = trajectory + 0.05 * torch.randn(frames, 4, generator=gen)
    units = fsq.quantize(trajectory)[1].tolist()
    reduced = reduce_units(units)

    # Tiny widths with the released frame layout (hop 256 at 22,050 Hz, upsampling 8 * 8 * 4).
    config = UnitVITSConfig.tiny(
        filter_length=1024,
        hop_length=256,
        win_length=1024,
        segment_size=8192,
        upsample_rates=[8, 8, 4],
        upsample_kernel_sizes=[16, 16, 8],
        upsample_initial_channel=64,
    )
    torch.manual_seed(ctx.seed)
    decoder = UnitVITS(config).eval()
    styles = StyleRegistry.random(
        advertised_conditions(), decoder.config.gin_channels, seed=ctx.seed
    )
    chosen = [
        "gender-female_emotion-happy_speed-normal_pitch-high",
        "gender-male_emotion-sad_speed-normal_pitch-low",
    ]
    outputs = {}
    timings = []
    decoder.synthesize(reduced[:4], styles.get_style(chosen[0]))  # warm-up, not timed
    for name in chosen:
        start = time.perf_counter()
        out = decoder.synthesize(
            reduced,
            styles.get_style(name),
            length_scale=3.0,
            generator=torch.Generator().manual_seed(ctx.seed),
        )
        seconds = time.perf_counter() - start
        audio_seconds = int(out.lengths[0]) / out.sample_rate
        outputs[name] = out
        timings.append(
            {
                "style": name,
                "samples": int(out.lengths[0]),
                "audio seconds": audio_seconds,
                "synthesis seconds": seconds,
                "real-time factor": seconds / audio_seconds,
            }
        )

    def draw_fsq(fig: Any) -> None:
        ax1 = fig.add_subplot(1, 2, 1)
        width = 0.27
        for k, scale in enumerate(scales):
            ax1.bar(
                [x + (k - 1) * width for x in range(8)],
                level_histograms[scale][0].tolist(),
                width=width,
                label=f"std {scale}",
            )
        ax1.set_xticks(range(8))
        ax1.set_xticklabels(["-1", "-.75", "-.5", "-.25", "0", ".25", ".5", ".75"], fontsize=7)
        ax1.set_xlabel("code value (dimension 0)")
        ax1.set_ylabel("share of frames")
        ax1.set_title("FSQ levels [8,8,8,8]")
        ax1.legend(fontsize=7)
        ax2 = fig.add_subplot(1, 2, 2)
        for scale in scales:
            usage = sorted_usage[scale]
            ax2.plot(range(1, len(usage) + 1), usage.tolist(), label=f"std {scale}")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("code rank")
        ax2.set_ylabel("share of frames")
        ax2.set_title("Codebook usage (4096 units)")
        ax2.legend(fontsize=7)

    def draw_wave(fig: Any) -> None:
        first = outputs[chosen[0]]
        n_samples = int(first.lengths[0])
        rate = first.sample_rate
        ax = fig.add_subplot(2, 1, 1)
        ax.plot(
            (torch.arange(n_samples) / rate).tolist(),
            first.waveform[0, :n_samples].tolist(),
            linewidth=0.3,
        )
        ax.set_title(
            f"tiny random decoder, {len(reduced)} reduced units, style {chosen[0]}", fontsize=7
        )
        ax.set_ylabel("amplitude")
        # Zoom on the first units: each unit gets whole frames of 256 samples (dotted lines).
        zoom = int(0.3 * rate)
        ax = fig.add_subplot(2, 1, 2)
        for name in chosen:
            wave = outputs[name].waveform[0, :zoom]
            ax.plot(
                (torch.arange(len(wave)) / rate).tolist(),
                wave.tolist(),
                linewidth=0.6,
                label=name,
            )
        bounds = torch.cumsum(first.durations[0], 0) * decoder.config.hop_length / rate
        shown = [b for b in bounds.tolist() if b <= zoom / rate]
        for i, b in enumerate(shown):
            label = "unit boundary (duration predictor)" if i == 0 else None
            ax.axvline(b, color="grey", linestyle=":", linewidth=0.6, label=label)
        ax.set_xlabel("seconds (22,050 Hz)")
        ax.set_ylabel("amplitude")
        ax.legend(fontsize=6)

    body = (
        "EMOVA (arXiv 2409.18042) represents speech as 25 units per second: a `Linear(768 -> 4)` "
        "bottleneck and FSQ with levels [8, 8, 8, 8] (4096 units; bound `tanh(z + tan(0.5 / "
        "3.4965)) * 3.4965 - 0.5`, round, divide by 4); the test suite checks this FSQ bit for "
        "bit against the authors' module on the golden cases. On Gaussian input of "
        f"{n:,} frames the codebook is used as follows (usage perplexity is exp of the entropy "
        "of the unit distribution; a saturated level is the lowest or highest code):\n\n"
        + markdown_table(rows)
        + "\nSmall inputs crowd the middle levels, large ones saturate the ends; the even level "
        "count gives an asymmetric code set (-1 ... 0.75).\n\n"
        f"A smooth synthetic trajectory of {frames} frames gave {len(units)} units, "
        f"{len(reduced)} after collapsing repeats (the released pipeline always reduces). "
        f"First reduced tokens: `{units_to_speech_tokens(reduced[:4])}`.\n\n"
        "The unit-to-speech decoder (VITS on units with a 256-d style vector; here a tiny "
        "random configuration with the released hop of 256 samples, "
        f"{sum(p.numel() for p in decoder.parameters()):,} parameters, "
        "and random unit-norm styles) turned the reduced units into audio at 22,050 Hz. With "
        "random weights the waveform is noise of the right length; intelligible speech needs "
        "the released weights (`G_322000.pth`) and style centroids.\n\n" + markdown_table(timings)
    )
    return Section(
        title="EMOVA speech units and unit-to-speech decoder",
        body=body,
        figures={"speech_fsq_usage.png": draw_fsq, "speech_tiny_decoder.png": draw_wave},
        data={
            "fsq_usage": rows,
            "frames": frames,
            "units": len(units),
            "reduced_units": len(reduced),
            "decoder": timings,
        },
    )
