"""``eightfold sparsify`` end to end on a tiny model and a small text corpus."""

from __future__ import annotations

import json

import pytest

from eightfold.cli import main
from eightfold.models import tiny_causal_lm
from eightfold.pretrain import train_tokenizer
from eightfold.sparsity import load_sparse


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    texts = [f"def function_{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(300)]
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(texts), encoding="utf-8")
    tokenizer = train_tokenizer(texts, 300)
    model = tiny_causal_lm(num_hidden_layers=2, vocab_size=300)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "maskllm"])
def test_sparsify_each_method(tiny_model_dir, tmp_path, capsys, method):
    out = tmp_path / "out"
    args = [
        "sparsify",
        str(tiny_model_dir / "model"),
        "--method",
        method,
        "--out",
        str(out),
        "--corpus",
        str(tiny_model_dir / "corpus.txt"),
        "--block-size",
        "32",
        "--samples",
        "8",
        "--eval-blocks",
        "4",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--prior",
        "magnitude",
        "--train-blocks",
        "16",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == str(out)
    assert "check passed" in captured.err
    loaded = load_sparse(out)
    assert loaded.check.ok and len(loaded.masks) == 14
    assert json.loads((out / "sparsity.json").read_text())["method"] == method
    # Training checkpoints serve only to resume; a finished run removes them.
    assert not (tmp_path / "out.checkpoint").exists()


def test_sparsify_bad_input_exits_2(tiny_model_dir, tmp_path, capsys):
    base = [
        "sparsify",
        str(tiny_model_dir / "model"),
        "--out",
        str(tmp_path / "o"),
        "--corpus",
        str(tiny_model_dir / "corpus.txt"),
        "--block-size",
        "32",
    ]
    assert main([*base, "--pattern", "4:4"]) == 2
    assert "1 <= N < M" in capsys.readouterr().err
    assert main([*base, "--method", "prune-it"]) == 2
    assert "--method 'prune-it'" in capsys.readouterr().err
    assert main([*base, "--method", "magnitude", "--target", "nothing"]) == 2
    assert "no linear layer" in capsys.readouterr().err
    model_dir = tiny_model_dir / "model"
    before = sorted(p.name for p in model_dir.iterdir())
    in_place = ["sparsify", str(model_dir), "--out", str(model_dir), "--method", "magnitude"]
    assert main(in_place) == 2
    assert "overlaps the input model" in capsys.readouterr().err
    assert sorted(p.name for p in model_dir.iterdir()) == before


def test_sparsify_resume_with_other_pattern_is_refused(tiny_model_dir, tmp_path, capsys):
    base = [
        "sparsify",
        str(tiny_model_dir / "model"),
        "--out",
        str(tmp_path / "o"),
        "--corpus",
        str(tiny_model_dir / "corpus.txt"),
        "--block-size",
        "32",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--prior",
        "magnitude",
        "--samples",
        "4",
        "--train-blocks",
        "8",
        "--no-eval",
        # A checkpoint folder named by the user is kept after success (the default one is not),
        # standing in for the checkpoint of an interrupted run here.
        "--checkpoint-dir",
        str(tmp_path / "ck"),
    ]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--pattern", "1:4"]) == 2
    assert "pattern 2:4" in capsys.readouterr().err
    assert main([*base, "--pattern", "1:4", "--fresh"]) == 0
