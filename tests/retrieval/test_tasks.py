"""BEIR folders and the standard-library code-search task."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from eightfold.retrieval.tasks import code_search_task, load_beir, load_documents


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: list[str]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(line + "\n" for line in qrels)
    )
    return folder


def test_load_beir_joins_title_and_text(tmp_path: Path) -> None:
    folder = write_beir(
        tmp_path / "b",
        [{"_id": "1", "title": "Cats", "text": "Cats purr."}, {"_id": "2", "text": "Dogs bark."}],
        [{"_id": "q1", "text": "purring"}, {"_id": "q2", "text": "unjudged"}],
        ["q1\t1\t1"],
    )
    task = load_beir(folder)
    assert task.corpus == {"1": "Cats Cats purr.", "2": "Dogs bark."}
    assert task.queries == {"q1": "purring"} and task.qrels == {"q1": {"1": 1}}
    assert load_documents(folder) == [("1", "Cats Cats purr."), ("2", "Dogs bark.")]


def test_load_beir_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"corpus\.jsonl"):
        load_beir(tmp_path)
    folder = write_beir(
        tmp_path / "b", [{"_id": "1", "text": "x"}], [{"_id": "q", "text": "y"}], ["q\t1\tone"]
    )
    with pytest.raises(ValueError, match="not an integer"):
        load_beir(folder)
    (folder / "corpus.jsonl").write_bytes(b'{"_id": "1", "text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="UTF-8"):
        load_beir(folder)
    with pytest.raises(ValueError, match="UTF-8"):
        load_documents(folder)


def test_subset_keeps_judged_documents(tmp_path: Path) -> None:
    corpus = [{"_id": str(i), "text": f"doc {i}"} for i in range(50)]
    folder = write_beir(tmp_path / "b", corpus, [{"_id": "q", "text": "y"}], ["q\t42\t1"])
    sub = load_beir(folder).subset(10)
    assert len(sub.corpus) == 10 and "42" in sub.corpus
    assert sub.corpus == load_beir(folder).subset(10).corpus


def test_code_search_queries_are_summaries_and_code_has_no_docstring() -> None:
    task = code_search_task(modules=["json"], use_cache=False)
    assert len(task.queries) >= 10 and set(task.qrels) == set(task.queries)
    for qid, query in task.queries.items():
        (doc_id,) = task.qrels[qid]
        code = task.corpus[doc_id]
        assert qid == f"q:{doc_id}" and doc_id.startswith("json")
        assert query not in code  # the summary line was removed with the docstring
        node = ast.parse(code).body[0]
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        assert ast.get_docstring(node) is None
    assert len(set(task.queries.values())) == len(task.queries)
    small = code_search_task(modules=["json"], max_documents=5, use_cache=False)
    assert len(small.corpus) == 5 and set(small.corpus) <= set(task.corpus)


def test_scifact_layout(data_dir: Path) -> None:
    folder = data_dir / "scifact"
    if not folder.is_dir():
        pytest.skip("SciFact is absent")
    task = load_beir(folder)
    assert len(task.corpus) == 5183 and len(task.queries) == 300
    assert sum(len(r) for r in task.qrels.values()) == 339
