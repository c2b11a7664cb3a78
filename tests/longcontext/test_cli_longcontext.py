"""``eightfold gemfilter`` and ``eightfold needle`` on a tiny saved model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.cli import main
from tests.longcontext.lc_tiny_lm import HAYSTACK, save_tiny_lm


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_lm(tmp_path_factory.mktemp("tiny-lm")))


@pytest.fixture()
def context(tmp_path: Path) -> str:
    path = tmp_path / "context.txt"
    path.write_text(" ".join(HAYSTACK))
    return str(path)


def test_gemfilter_prints_answer_stats_and_selection(
    model_dir: str, context: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([
        "gemfilter", model_dir, "--context", context, "--question", "Who weighs the sacks?",
        "--topk", "24", "--filter-layer", "1", "--max-new-tokens", "3", "--show-selected",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    stats = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert stats["kept_tokens"] == "24"
    assert int(stats["input_tokens"]) > 24
    assert stats["filter_layer"] == "1"
    assert "selected text:" in out and "[...]" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--topk", "0"], "topk"),
        (["--filter-layer", "9"], "outside the model's 4 layers"),
        (["--max-new-tokens", "0"], "max-new-tokens"),
    ],
)
def test_gemfilter_bad_input_exits_2(
    model_dir: str, context: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["gemfilter", model_dir, "--context", context, "--question", "q", "--filter-layer", "1"]
    assert main(base + args) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")


def test_gemfilter_missing_or_empty_context(
    model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = ["gemfilter", model_dir, "--context", str(tmp_path / "nope.txt"), "--question", "q"]
    assert main(missing) == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert main(["gemfilter", model_dir, "--context", str(empty), "--question", "q"]) == 2
    assert "empty" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["gemfilter", "snapkv", "h2o", "full"])
def test_needle_writes_grid(
    model_dir: str, tmp_path: Path, method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "hay.txt"
    corpus.write_text("\n\n".join(HAYSTACK))
    rc = main([
        "needle", model_dir, "--method", method, "--lengths", "120,160", "--depths", "2",
        "--topk", "40", "--filter-layer", "1", "--window", "8", "--corpus", str(corpus),
        "--split", "all", "--max-new-tokens", "2", "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert rc == 0
    assert f"mean score ({method})" in capsys.readouterr().out
    saved = json.loads((tmp_path / "out" / "needle.json").read_text())
    assert len(saved["cells"]) == 4
    assert (tmp_path / "out" / "needle.png").stat().st_size > 0


def test_needle_unknown_method_exits_2(model_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["needle", model_dir, "--method", "magic"]) == 2
    assert "gemfilter, snapkv, h2o, full" in capsys.readouterr().err
