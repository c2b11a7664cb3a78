"""``eightfold generate|tune|judge`` end to end on a tiny model and a fake judge server."""

from __future__ import annotations

import json

import pytest

from eightfold.cli import main
from eightfold.instruct import builtin_instructions
from tests.fake_openai import fake_openai


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_lm, bpe_tokenizer):
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.save_pretrained(folder)
    bpe_tokenizer.save_pretrained(folder)
    return folder


def test_generate_with_and_without_rules(model_dir, tmp_path, capsys):
    assert (
        main(["generate", str(model_dir), "--prompt", "Explain x.", "--max-new-tokens", "8"]) == 0
    )
    plain = capsys.readouterr().out
    out = tmp_path / "rules.jsonl"
    rc = main(
        [
            "generate",
            str(model_dir),
            "-p",
            "Explain x.",
            "-p",
            "What is len?",
            "--rules",
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["instruction"] for r in records] == ["Explain x.", "What is len?"]
    assert all(r["generator"].endswith("+rules") for r in records)
    assert plain.strip() or plain == "\n"  # the response (possibly empty) is printed


def test_generate_bad_input(model_dir, tmp_path, capsys):
    assert main(["generate", str(model_dir)]) == 2
    assert "no instruction given" in capsys.readouterr().err
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"instruction": "a"}\n{"prompt": "b"}\n')
    assert main(["generate", str(model_dir), "--prompts-file", str(bad)]) == 2
    assert "p.jsonl:2" in capsys.readouterr().err
    assert main(["generate", str(model_dir), "-p", "x", "--rules", "--hard-stop", "5"]) == 2
    assert "faithful=False" in capsys.readouterr().err


@pytest.mark.slow
def test_tune_cli(model_dir, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in builtin_instructions()[:6]) + "\n")
    rc = main(
        [
            "tune",
            str(model_dir),
            "--mode",
            "response",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--preset",
            "tiny-cpu",
            "--max-steps",
            "2",
            "--max-length",
            "64",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "run" / "model")
    assert (tmp_path / "run" / "model" / "tuning.json").is_file()


def test_tune_cli_reports_bad_rows(model_dir, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text('{"instruction": "a", "response": "b"}\n{"instruction": "c"}\n')
    rc = main(
        [
            "tune",
            str(model_dir),
            "--mode",
            "instruction",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert rc == 2
    assert "train.jsonl:2: missing field 'response'" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    rc = main(
        [
            "tune",
            str(model_dir),
            "--mode",
            "response",
            "--data",
            str(empty),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert rc == 2


def test_judge_cli(tmp_path, capsys):
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.json"
    rows = [("Q1", "GOOD one", "meh"), ("Q2", "GOOD two", "meh")]
    a.write_text("\n".join(json.dumps({"instruction": q, "output": x}) for q, x, _ in rows))
    b.write_text(json.dumps([{"instruction": q, "output": y} for q, _, y in rows]))

    def prefers_good(request):
        text = request["messages"][-1]["content"]
        return "A" if text.index("GOOD") < text.index("# Response B") else "B"

    with fake_openai(prefers_good) as server:
        rc = main(
            [
                "judge",
                str(a),
                str(b),
                "--base-url",
                server.url,
                "--model",
                "fake",
                "--no-cache",
                "--out",
                str(tmp_path / "report.json"),
            ]
        )
    assert rc == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["win_rate"] == 1.0 and summary["n"] == 2
    assert len(json.loads((tmp_path / "report.json").read_text())["pairs"]) == 2


def test_judge_without_any_verdict_is_an_error(tmp_path, capsys):
    a = tmp_path / "a.jsonl"
    a.write_text(json.dumps({"instruction": "Q1", "output": "x"}) + "\n")
    with fake_openai(lambda request: "I refuse to pick") as server:
        rc = main(
            ["judge", str(a), str(a), "--base-url", server.url, "--model", "fake", "--no-cache"]
        )
    assert rc == 2
    err = capsys.readouterr().err
    assert "no usable verdict" in err and server.url in err
