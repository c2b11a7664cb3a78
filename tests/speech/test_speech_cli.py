"""``eightfold speech synth`` and ``eightfold speech inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from eightfold.cli import main
from eightfold.speech import StyleRegistry, UnitVITS, UnitVITSConfig, all_conditions

TOKENS = "<|speech_5|><|speech_5|><|speech_17|><|speech_4095|><|speech_0|>"


def test_inspect(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speech", "inspect", TOKENS, "--codes"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["units"] == 5 and summary["reduced_units"] == 4
    assert summary["longest_run"] == 2 and summary["seconds_at_25_hz"] == 0.2
    assert summary["fsq_codes"][3] == [0.75, 0.75, 0.75, 0.75]
    assert main(["speech", "inspect", "5 17 4095"]) == 0
    assert json.loads(capsys.readouterr().out)["already_reduced"] is True


def test_inspect_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speech", "inspect", "<|speech_4096|>"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["speech", "inspect", "Sure! <|speech_1|>"]) == 2
    assert "not <|speech_k|> tokens" in capsys.readouterr().err
    assert main(["speech", "inspect", "Sure! <|speech_1|>", "--lenient"]) == 0


def test_synth_without_checkpoint_is_a_clear_error(tmp_path: Path, capsys) -> None:
    rc = main(["speech", "synth", "--units", TOKENS, "--out", str(tmp_path / "x.wav")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "G_322000.pth" in err
    assert not (tmp_path / "x.wav").exists()


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    folder = UnitVITS(UnitVITSConfig.tiny()).save_pretrained(tmp_path / "u2s")
    StyleRegistry.random(all_conditions(), 8).save(folder / "styles")
    return folder


def test_synth_writes_a_wav(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "reply.wav"
    rc = main(
        [
            "speech",
            "synth",
            "--units",
            TOKENS,
            "--out",
            str(out),
            "--checkpoint",
            str(checkpoint),
            "--style",
            "gender-male_emotion-happy_speed-normal_pitch-high",
            "--deterministic",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    audio, rate = soundfile.read(out)
    assert rate == 22050 and len(audio) == summary["samples"] > 0
    assert summary["units"] == 4  # reduced
    assert summary["samples"] % 16 == 0  # whole frames of the tiny decoder's hop
    # a reference recording works in place of a style name
    ref = tmp_path / "ref.wav"
    soundfile.write(ref, (0.3 * np.sin(np.arange(8000) / 7)).astype(np.float32), 16000)
    assert (
        main(
            [
                "speech",
                "synth",
                "--units",
                "1 2 3",
                "--out",
                str(tmp_path / "r.wav"),
                "--checkpoint",
                str(checkpoint),
                "--reference",
                str(ref),
            ]
        )
        == 0
    )


def test_synth_errors(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "x.wav")
    assert (
        main(
            [
                "speech",
                "synth",
                "--units",
                TOKENS,
                "--out",
                out,
                "--checkpoint",
                str(checkpoint),
                "--style",
                "gender-robot_emotion-happy_speed-normal_pitch-high",
            ]
        )
        == 2
    )
    assert "gender must be one of" in capsys.readouterr().err
    (checkpoint / "styles" / "condition2style_centroid.txt").write_text(
        "condition|style_centroid_file\n"
        "gender-female_emotion-happy_speed-normal_pitch-high|"
        "gender-female_emotion-happy_speed-normal_pitch-high_centroid_style_embedding.npy\n"
    )
    assert (
        main(["speech", "synth", "--units", TOKENS, "--out", out, "--checkpoint", str(checkpoint)])
        == 2
    )
    err = capsys.readouterr().err
    assert "not in this style table" in err and "gender-female_emotion-happy" in err
    assert main(["speech", "synth", "--out", out, "--checkpoint", str(checkpoint)]) == 2
    assert "--units" in capsys.readouterr().err
    assert (
        main(["speech", "synth", "--units", "", "--out", out, "--checkpoint", str(checkpoint)]) == 2
    )
    assert "empty" in capsys.readouterr().err
    assert (
        main(
            [
                "speech",
                "synth",
                "--units",
                "1",
                "--out",
                str(tmp_path / "x.mp3"),
                "--checkpoint",
                str(checkpoint),
            ]
        )
        == 2
    )
    assert ".wav" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_section_quick(tmp_path: Path) -> None:
    from eightfold.demo import run_demo

    out, failed = run_demo(tmp_path / "report", quick=True, only=["EMOVA speech"])
    assert failed == []
    report = (out / "report.md").read_text()
    assert "codes used" in report and "real-time factor" in report
    assert (out / "speech_fsq_usage.png").is_file() and (out / "speech_tiny_decoder.png").is_file()
    results = json.loads((out / "results.json").read_text())
    section = results["EMOVA speech units and unit-to-speech decoder"]
    assert section["reduced_units"] < section["units"]
    assert all(row["codes used"] > 0 for row in section["fsq_usage"])


def test_prompt_and_reply_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from eightfold.speech import ASR_INSTRUCTION, CHAT_INSTRUCTION, TTS_INSTRUCTION

    assert main(["speech", "prompt", "asr", "--units", "5 6"]) == 0
    assert capsys.readouterr().out == ASR_INSTRUCTION + "<|speech_5|><|speech_6|>\n"
    assert main(["speech", "prompt", "chat", "--units", "<|speech_7|>"]) == 0
    assert capsys.readouterr().out == CHAT_INSTRUCTION + "<|speech_7|>\n"
    assert main(["speech", "prompt", "tts", "--text", "Hello"]) == 0
    assert capsys.readouterr().out == TTS_INSTRUCTION + "Hello\n"
    assert main(["speech", "prompt", "tts", "--units", "1"]) == 2
    assert main(["speech", "prompt", "sing", "--text", "x"]) == 2

    truncated = (
        '{"assistant response text": "hi", "assistant response emotion": "sad", '
        '"assistant response speech": "<|speech_1|><|speech_2|>'
    )
    assert main(["speech", "reply", truncated, "--gender", "male"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["repaired"] and not result["fallback"] and result["units"] == 2
    assert result["condition"] == "gender-male_emotion-sad_speed-normal_pitch-normal"
    assert main(["speech", "reply", "<|speech_3|>"]) == 0
    assert json.loads(capsys.readouterr().out)["fallback"] is True
