"""``eightfold speech synth`` and ``eightfold speech inspect``: EMOVA speech units from the shell.

Turning audio into units needs the released speech-to-unit weights, so the CLI offers what works
without them: inspecting unit strings, and synthesis from units with a decoder checkpoint the
user supplies.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from pathlib import Path

import typer

from eightfold.cli.common import console
from eightfold.storage import read_user_text

logger = logging.getLogger(__name__)

speech_app = typer.Typer(
    name="speech",
    help="EMOVA speech units: inspect units, build prompts, parse replies, synthesise speech.",
    no_args_is_help=True,
)

DEFAULT_STYLE = "gender-female_emotion-neutral_speed-normal_pitch-normal"


def _read_units(units: str | None, units_file: Path | None) -> str:
    if (units is None) == (units_file is None):
        raise ValueError(
            "pass the units either with --units '<|speech_5|><|speech_17|>' (or '5 17') or "
            "with --units-file FILE, not both and not neither"
        )
    if units_file is not None:
        if not units_file.is_file():
            raise FileNotFoundError(f"--units-file {str(units_file)!r} does not exist")
        return read_user_text(units_file, "--units-file")
    return units  # type: ignore[return-value]


@speech_app.command("inspect")
def inspect_command(
    units: str = typer.Argument(
        ..., help="Units as <|speech_k|> tokens or space-separated ids; '-' reads stdin."
    ),
    lenient: bool = typer.Option(
        False, help="Drop text that is not a unit token (LLM output) instead of failing."
    ),
    codes: bool = typer.Option(False, help="Also list the FSQ code of every unit."),
) -> None:
    """Summarise a unit sequence: length, repeats, duration at 25 Hz, FSQ codes."""
    import sys

    import torch

    from eightfold.speech import FSQ, UNIT_RATE_HZ, parse_unit_string, reduce_units

    text = sys.stdin.read() if units == "-" else units
    ids = parse_unit_string(text, strict=not lenient)
    reduced = reduce_units(ids)
    runs: list[int] = []
    for i, unit in enumerate(ids):
        if i and unit == ids[i - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    counts = Counter(ids)
    summary: dict[str, object] = {
        "units": len(ids),
        "reduced_units": len(reduced),
        "already_reduced": len(reduced) == len(ids),
        "distinct_units": len(counts),
        "longest_run": max(runs),
        "seconds_at_25_hz": len(ids) / UNIT_RATE_HZ,
        "most_common": [[unit, n] for unit, n in counts.most_common(5)],
        "first_units": ids[:10],
    }
    if codes:
        fsq = FSQ()
        summary["fsq_codes"] = fsq.indices_to_codes(torch.tensor(ids)).tolist()
    if not summary["already_reduced"]:
        console.print(
            f"{len(ids) - len(reduced)} consecutive repeats; the released pipeline reduces them "
            "(durations are predicted again by the decoder)"
        )
    typer.echo(json.dumps(summary, indent=2))


@speech_app.command("synth")
def synth_command(
    out: Path = typer.Option(..., "--out", help="WAV file to write."),
    units: str | None = typer.Option(
        None, "--units", help="Units as <|speech_k|> tokens or space-separated ids."
    ),
    units_file: Path | None = typer.Option(
        None, "--units-file", help="Read the units from a file."
    ),
    style: str = typer.Option(
        DEFAULT_STYLE, "--style", help="Style condition gender-X_emotion-Y_speed-Z_pitch-W."
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="Decoder folder: config.json + G_322000.pth or model.safetensors.",
    ),
    styles: Path | None = typer.Option(
        None,
        "--styles",
        help="Style folder (condition2style_centroid.txt + .npy); default: inside --checkpoint.",
    ),
    reference: Path | None = typer.Option(
        None, "--reference", help="Take the style from this recording instead of --style."
    ),
    lenient: bool = typer.Option(False, help="Drop text around the unit tokens (LLM output)."),
    keep_repeats: bool = typer.Option(
        False, help="Do not collapse consecutive repeats (the released pipeline does)."
    ),
    deterministic: bool = typer.Option(False, help="No sampling noise (same output every time)."),
    seed: int = typer.Option(0, help="Seed of the sampling noise."),
    noise_scale: float = typer.Option(0.667, help="Prior noise (the authors use 0.667)."),
    noise_scale_w: float = typer.Option(0.8, help="Duration noise (the authors use 0.8)."),
    length_scale: float = typer.Option(1.0, help="Speaking-rate factor (> 1 is slower)."),
) -> None:
    """Synthesise speech from units with EMOVA's unit-to-speech decoder."""
    import soundfile
    import torch

    from eightfold.speech import (
        CENTROID_INDEX,
        ReferenceEncoder,
        StyleCondition,
        StyleRegistry,
        UnitVITS,
        parse_unit_string,
        reduce_units,
    )
    from eightfold.storage import atomic_write_bytes

    if checkpoint is None:
        raise ValueError(
            "synthesis needs the released unit-to-speech decoder weights, which eightfold does "
            "not ship: pass --checkpoint DIR, a folder with the decoder's config.json and "
            "G_322000.pth (or model.safetensors) from the EMOVA speech tokenizer release"
        )
    if out.suffix.lower() != ".wav":
        raise ValueError(f"--out {str(out)!r} must end in .wav")
    ids = parse_unit_string(_read_units(units, units_file), strict=not lenient)
    if not keep_repeats:
        ids = reduce_units(ids)

    decoder = UnitVITS.from_pretrained(checkpoint)
    if reference is not None:
        vector = ReferenceEncoder.from_decoder(decoder).embed(reference)
        style_name = f"reference:{reference.name}"
    else:
        StyleCondition.parse(style)
        style_folder = styles
        if style_folder is None:
            found = sorted(checkpoint.rglob(CENTROID_INDEX)) if checkpoint.is_dir() else []
            if not found:
                raise FileNotFoundError(
                    f"no {CENTROID_INDEX} under {str(checkpoint)!r}; pass --styles DIR (the "
                    "released style centroids) or --reference FILE.wav"
                )
            style_folder = found[0].parent
        vector = StyleRegistry.from_folder(style_folder).get_style(style)
        style_name = style

    result = decoder.synthesize(
        ids,
        vector,
        noise_scale=noise_scale,
        noise_scale_w=noise_scale_w,
        length_scale=length_scale,
        deterministic=deterministic,
        generator=torch.Generator().manual_seed(seed),
    )
    samples = int(result.lengths[0])
    audio = result.waveform[0, :samples].cpu().numpy()
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, result.sample_rate, format="WAV", subtype="PCM_16")
    atomic_write_bytes(out, buffer.getvalue())
    console.print(
        f"wrote [bold]{out}[/bold]: {samples / result.sample_rate:.2f} s at "
        f"{result.sample_rate} Hz from {len(ids)} units ({style_name})"
    )
    typer.echo(
        json.dumps(
            {
                "out": str(out),
                "samples": samples,
                "sample_rate": result.sample_rate,
                "seconds": samples / result.sample_rate,
                "units": len(ids),
                "style": style_name,
            }
        )
    )


@speech_app.command("prompt")
def prompt_command(
    task: str = typer.Argument(..., help="asr, tts or chat."),
    units: str | None = typer.Option(None, "--units", help="User speech units (asr, chat)."),
    text: str | None = typer.Option(None, "--text", help="Text to speak (tts)."),
) -> None:
    """Print the released model's prompt for speech recognition, synthesis or dialogue."""
    from eightfold.speech import asr_prompt, chat_prompt, parse_unit_string, tts_prompt

    if task not in ("asr", "tts", "chat"):
        raise ValueError(f"task must be asr, tts or chat; got {task!r}")
    if task == "tts":
        if text is None or units is not None:
            raise ValueError("the tts prompt takes --text (and no --units)")
        typer.echo(tts_prompt(text))
        return
    if units is None or text is not None:
        raise ValueError(f"the {task} prompt takes --units (and no --text)")
    ids = parse_unit_string(units)
    typer.echo(asr_prompt(ids) if task == "asr" else chat_prompt(ids))


@speech_app.command("reply")
def reply_command(
    output: str = typer.Argument(..., help="The model's reply text; '-' reads stdin."),
    gender: str = typer.Option("female", help="Voice for the style condition."),
) -> None:
    """Parse a dialogue reply as the authors' demo does (repairs, fallback) and print JSON."""
    import sys

    from eightfold.speech import parse_reply

    reply = parse_reply(sys.stdin.read() if output == "-" else output)
    for note in reply.notes:
        console.print(f"note: {note}")
    typer.echo(
        json.dumps(
            {
                "text": reply.text,
                "emotion": reply.emotion,
                "pitch": reply.pitch,
                "speed": reply.speed,
                "condition": reply.condition(gender).name,
                "units": len(reply.units),
                "content_units": reply.content_units,
                "user_text": reply.user_text,
                "repaired": reply.repaired,
                "fallback": reply.fallback,
            },
            ensure_ascii=False,
            indent=2,
        )
    )


def register(app: typer.Typer) -> None:
    app.add_typer(speech_app, name="speech")
