"""``eightfold graph build|ask|schema|eval`` end to end on a small slice."""

from __future__ import annotations

import json

import pytest

from eightfold.cli import main


@pytest.mark.slow
def test_build_ask_schema_eval(tmp_path, capsys):
    db = str(tmp_path / "g")
    assert (
        main(["graph", "build", "--db", db, "--since", "2019-06-01", "--until", "2019-07-31"]) == 0
    )
    built = json.loads(capsys.readouterr().out)
    assert built["counts"]["Match"] > 50 and built["backend"] in ("ladybug", "kuzu")

    assert main(["graph", "ask", db, "How many matches did Brazil win?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Brazil won") and "cypher (template):" in out and "$team" in out

    assert main(["graph", "ask", db, "How many matches did Brazil win?", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "answered" and answer["rows"] == [[answer["value"]]]

    assert main(["graph", "ask", db, "How many matches did Atlantis win?"]) == 1
    assert "unknown team" in capsys.readouterr().out

    assert main(["graph", "schema", db, "--json"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["counts"]["Match"] == built["counts"]["Match"]
    assert {"HOME_TEAM", "WINNER", "LOSER"} <= {
        r["type"] for r in schema["schema"]["relationships"]
    }

    report = tmp_path / "eval.json"
    args = ["graph", "eval", db, "--questions", "40", "--systems", "graph,pandas,bm25"]
    assert main([*args, "--out", str(report)]) == 0
    out = capsys.readouterr().out
    assert "graphrag" in out and "chunk-bm25" in out
    data = json.loads(report.read_text())
    assert data["questions"] == 40
    assert data["systems"]["graphrag"]["accuracy"] >= 0.9


def test_cli_errors_are_messages(tmp_path, capsys):
    assert main(["graph", "ask", str(tmp_path / "none"), "Who won?"]) == 2
    assert "no graph at" in capsys.readouterr().err
    assert main(["graph", "build", "--db", str(tmp_path / "g"), "--source", "nba"]) == 2
    assert "--source must be one of" in capsys.readouterr().err
    assert main(["graph", "build", "--db", str(tmp_path / "g"), "--source", "csv"]) == 2
    assert "--schema" in capsys.readouterr().err
    empty = ["graph", "build", "--db", str(tmp_path / "g"), "--since", "2030-01-01"]
    assert main(empty) == 2
    assert "gave no rows" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_ask_with_an_llm_from_the_environment(slice_graph, capsys, monkeypatch):
    from tests.fake_openai import fake_openai

    query = "MATCH (m:Match) RETURN m.city AS city, count(m) AS n ORDER BY n DESC, city LIMIT 1"
    with fake_openai([query]) as server:
        monkeypatch.setenv("EIGHTFOLD_LLM_BASE_URL", server.url)
        monkeypatch.setenv("EIGHTFOLD_LLM_MODEL", "fake")
        rc = main(["graph", "ask", str(slice_graph), "Which city hosted most matches?", "--llm"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "cypher (llm):" in out and out.rstrip().endswith("]")
    assert server.requests[0]["model"] == "fake"
