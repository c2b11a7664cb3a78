"""``eightfold conversation ...`` end to end with the model-free encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.cli import main
from eightfold.conversation.demo import sample_conversations


@pytest.fixture()
def conversations_file(tmp_path: Path) -> Path:
    path = tmp_path / "convs.jsonl"
    lines = [c.model_dump_json() for c in sample_conversations()]
    lines.insert(
        2,
        json.dumps(
            {
                "id": "broken",
                "turns": [
                    {"speaker": "customer", "text": "a"},
                    {"speaker": "customer", "text": "b"},
                ],
            }
        ),
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_pipeline(tmp_path: Path, conversations_file: Path, capsys: pytest.CaptureFixture) -> None:
    analyses = tmp_path / "analyses.jsonl"
    errors = tmp_path / "errors.jsonl"
    rc = main(
        [
            "conversation",
            "analyze",
            str(conversations_file),
            "-o",
            str(analyses),
            "--encoder",
            "hashing",
            "--errors",
            str(errors),
        ]
    )
    # The broken conversation is reported at the end; the others are written.
    assert rc == 1
    assert len(analyses.read_text().splitlines()) == 8
    failure = json.loads(errors.read_text())
    assert ":3" in failure["where"] and "speaker never changes" in failure["error"]
    assert "1 conversation(s) failed" in capsys.readouterr().err

    drivers = tmp_path / "drivers.json"
    rc = main(
        [
            "conversation",
            "attribute",
            str(analyses),
            "--outcome",
            "resolved",
            "--min-count",
            "2",
            "--bootstrap",
            "10",
            "-o",
            str(drivers),
        ]
    )
    assert rc == 0
    report = json.loads(drivers.read_text())
    assert report["n_conversations"] == 8 and report["base_rate"] == 0.5

    violations = tmp_path / "violations.jsonl"
    sft, dpo = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"
    rc = main(
        [
            "conversation",
            "coach",
            str(analyses),
            "--encoder",
            "hashing",
            "-o",
            str(violations),
            "--export-sft",
            str(sft),
            "--export-dpo",
            str(dpo),
            "--min-similarity",
            "0.1",
        ]
    )
    assert rc == 0
    rules = {json.loads(line)["rule"] for line in violations.read_text().splitlines()}
    assert "no_blame" in rules
    assert all("prompt" in json.loads(line) for line in sft.read_text().splitlines())

    sim = tmp_path / "sim.jsonl"
    rc = main(["conversation", "simulate", "--n", "4", "--encoder", "hashing", "-o", str(sim)])
    assert rc == 0
    sim_report = json.loads(capsys.readouterr().out)
    assert sim_report["n"] == 4 and 0 <= sim_report["success_rate"] <= 1
    (tmp_path / "sim.json").write_text(json.dumps(sim_report))

    html = tmp_path / "report.html"
    rc = main(
        [
            "conversation",
            "report",
            str(analyses),
            "--html",
            str(html),
            "--drivers",
            str(drivers),
            "--violations",
            str(violations),
            "--simulation",
            str(tmp_path / "sim.json"),
            "--example",
            "sample-escalated",
        ]
    )
    assert rc == 0
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "sample-escalated" in page and "Top drivers of resolved" in page
    assert "I&#x27;m transferring you" in page  # conversation text is escaped


def test_cli_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation_id": 1}\n', encoding="utf-8")
    assert main(["conversation", "attribute", str(bad)]) == 2
    assert "not a conversation analysis" in capsys.readouterr().err
    assert main(["conversation", "analyze", str(tmp_path / "none.jsonl")]) == 2
    assert main(["conversation", "analyze", str(bad), "--backend", "gpt"]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert main(["conversation", "analyze", str(empty)]) == 2
    assert "holds no conversations" in capsys.readouterr().err
    assert main(["conversation", "schema"]) == 0
    assert "ConversationAnalysis" in capsys.readouterr().out


def test_analyze_with_llm_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fake_openai import fake_openai

    def answer(request: dict) -> str:
        transcript = request["messages"][1]["content"]
        n = len([line for line in transcript.splitlines() if line.startswith("[")])
        if "refund" in transcript:  # one conversation gets an answer that never validates
            return "I cannot do that."
        return json.dumps(
            {
                "turns": [{"idx": i, "emotion": "neutral", "valence": 0.0} for i in range(n)],
                "customer_goal": {"text": "x", "intent": "llm_intent"},
                "outcome": {"status": "resolved", "evidence_turns": [n - 1]},
                "summary": "s",
            }
        )

    source = tmp_path / "c.jsonl"
    source.write_text("".join(c.model_dump_json() + "\n" for c in sample_conversations()[:2]))
    out = tmp_path / "a.jsonl"
    with fake_openai(answer) as server:
        monkeypatch.setenv("EIGHTFOLD_LLM_BASE_URL", server.url)
        monkeypatch.setenv("EIGHTFOLD_LLM_MODEL", "fake")
        rc = main(
            [
                "conversation",
                "analyze",
                str(source),
                "-o",
                str(out),
                "--backend",
                "llm",
                "--encoder",
                "hashing",
            ]
        )
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["backend"] for r in rows] == ["llm", "offline"]
    assert rows[0]["scene"]["customer_goal"] == {
        "text": "x",
        "intent": "llm_intent",
        "source": "llm",
    }
    assert any("offline result used" in w for w in rows[1]["warnings"])
    assert len(server.requests) == 3  # one call, then one call and its single repair
