"""Speech benchmark: FSQ throughput and unit-to-speech decoder speed on this machine's CPU.

Measures, side by side in one run with the median of several repeats:

* FSQ quantisation (bound, round, indices) in frames per second, against the 25 frames per
  second that one real-time stream needs;
* the unit-to-speech decoder at the released size (random weights: speed does not depend on
  the values) and at the tiny test size: real-time factor = synthesis seconds / audio seconds,
  for one utterance of reduced units, with and without sampling noise.

Writes ``benchmarks/results/speech.json`` and ``benchmarks/results/speech.png``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/speech.py [--repeats 5] [--units 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from eightfold.report import markdown_table
from eightfold.speech import FSQ, UnitVITS, UnitVITSConfig, advertised_conditions
from eightfold.speech.styles import StyleRegistry
from eightfold.storage import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_fsq(repeats: int) -> list[dict]:
    fsq = FSQ()
    rows = []
    for frames in (25, 1_500, 100_000):  # 1 s, 1 min of speech, a batch
        z = torch.randn(1, frames, 4, generator=torch.Generator().manual_seed(0))
        seconds = _median_seconds(lambda z=z: fsq.quantize(z), repeats)
        rows.append(
            {
                "frames": frames,
                "seconds": seconds,
                "frames per second": frames / seconds,
                "x real time (25 Hz)": frames / seconds / 25.0,
            }
        )
    return rows


def bench_decoder(repeats: int, n_units: int) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    units = torch.randint(0, 4096, (n_units,), generator=gen).tolist()
    sizes = {"released size (random weights)": UnitVITSConfig(), "tiny": UnitVITSConfig.tiny()}
    for label, config in sizes.items():
        torch.manual_seed(0)
        model = UnitVITS(config).eval()
        params = sum(p.numel() for p in model.parameters())
        style = StyleRegistry.random(advertised_conditions(), config.gin_channels).get_style(
            "gender-female_emotion-happy_speed-normal_pitch-high"
        )
        for mode in ("deterministic", "sampled"):
            kwargs = (
                {"deterministic": True}
                if mode == "deterministic"
                else {"generator": torch.Generator().manual_seed(1)}
            )
            # length_scale 3 gives about 3 frames per unit, the order of the released
            # decoder's durations for reduced units (40 ms per unit = 3.4 frames of 256).
            out = model.synthesize(units, style, length_scale=3.0, **kwargs)
            audio_seconds = int(out.lengths[0]) / out.sample_rate
            seconds = _median_seconds(
                lambda model=model, style=style, kwargs=kwargs: model.synthesize(
                    units, style, length_scale=3.0, **kwargs
                ),
                repeats,
            )
            rows.append(
                {
                    "decoder": label,
                    "parameters": params,
                    "mode": mode,
                    "units": n_units,
                    "audio seconds": audio_seconds,
                    "synthesis seconds": seconds,
                    "real-time factor": seconds / audio_seconds,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--units", type=int, default=60, help="reduced units per utterance")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fsq_rows = bench_fsq(args.repeats)
    decoder_rows = bench_decoder(args.repeats, args.units)
    result = {
        "command": shlex.join(["python", "benchmarks/speech.py", *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "repeats": args.repeats,
        "fsq": fsq_rows,
        "decoder": decoder_rows,
        "note": "shared CPU; other processes were running, so absolute times are noisy",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "speech.json", result)

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.4), dpi=110)
    ax = fig.add_subplot(1, 2, 1)
    ax.bar([str(r["frames"]) for r in fsq_rows], [r["frames per second"] for r in fsq_rows])
    ax.set_yscale("log")
    ax.set_xlabel("frames per call")
    ax.set_ylabel("frames / s")
    ax.set_title("FSQ quantisation (CPU)")
    ax = fig.add_subplot(1, 2, 2)
    labels = [f"{r['decoder'].split(' ')[0]}\n{r['mode']}" for r in decoder_rows]
    ax.bar(labels, [r["real-time factor"] for r in decoder_rows])
    ax.axhline(1.0, color="grey", linestyle=":")
    ax.set_ylabel("real-time factor (lower is faster)")
    ax.set_title(f"U2S decoder, {args.units} units")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "speech.png")

    print(markdown_table(fsq_rows))
    print(markdown_table(decoder_rows))


if __name__ == "__main__":
    main()
