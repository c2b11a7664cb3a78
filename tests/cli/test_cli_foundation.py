from __future__ import annotations

from pathlib import Path

import pytest
import typer.core
import typer.main

from eightfold.cli import app, main
from eightfold.models import tiny_causal_lm


def _command_names() -> list[str]:
    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def _command_paths() -> list[list[str]]:
    """Every command and subcommand, as the argument lists that name it."""
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        if prefix:
            paths.append(prefix)
        if isinstance(command, typer.core.TyperGroup):
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    names = _command_names()
    assert {"demo", "train-lm", "perplexity"} <= set(names)
    paths = _command_paths()
    assert ["index", "search"] in paths and ["speech", "synth"] in paths
    for path in paths:
        assert main([*path, "--help"]) == 0, path
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out


def test_unknown_log_level_is_a_usage_error() -> None:
    assert main(["--log-level", "LOUD", "demo", "--list"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["perplexity", "/nonexistent/model/dir"], "does not exist"),
        (["train-lm", "--out", "FILE", "--steps", "1"], "is a file"),
        (["demo", "--out", "FILE"], "is a file"),
        (["perplexity", "EMPTYDIR"], "has no config.json"),
    ],
)
def test_bad_paths_exit_2_with_a_message(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "a_file"
    file.write_text("x")
    (tmp_path / "empty").mkdir()
    args = [
        str(file) if a == "FILE" else str(tmp_path / "empty") if a == "EMPTYDIR" else a
        for a in args
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert file.read_text() == "x"


@pytest.fixture()
def model_with_tokenizer(tmp_path: Path) -> Path:
    from eightfold.pretrain import train_tokenizer

    folder = tmp_path / "model"
    tok = train_tokenizer(["def f(x): return x + 1", "the quick brown fox"] * 20, 300)
    model = tiny_causal_lm("llama", vocab_size=300, max_position_embeddings=64)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def test_perplexity_command_and_its_bad_inputs(
    model_with_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"paragraph {i} about code and foxes" for i in range(200)))
    model = str(model_with_tokenizer)
    assert (
        main(["perplexity", model, "--corpus", str(corpus), "--split", "all", "--block-size", "32"])
        == 0
    )
    value = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1.0 < value < 1000.0

    assert main(["perplexity", model, "--corpus", str(corpus), "--block-size", "128"]) == 2
    assert "larger than the model's context of 64" in capsys.readouterr().err

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert (
        main(["perplexity", model, "--corpus", str(empty), "--split", "all", "--block-size", "32"])
        == 2
    )
    assert "holds no text" in capsys.readouterr().err

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.txt").write_bytes(b"\xff\xff\xff")
    assert (
        main(
            [
                "perplexity",
                model,
                "--corpus",
                str(bad),
                "--split",
                "all",
                "--block-size",
                "32",
                "--no-skip-bad-files",
            ]
        )
        == 2
    )
    assert "not valid UTF-8" in capsys.readouterr().err


def test_progress_bars_stay_off_stdout(
    model_with_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"paragraph {i} about code and foxes" for i in range(200)))
    args = ["perplexity", str(model_with_tokenizer), "--corpus", str(corpus), "--split", "all"]
    assert main([*args, "--block-size", "32"]) == 0
    out = capsys.readouterr().out
    float(out.strip())  # only the number: redirected output stays parseable
