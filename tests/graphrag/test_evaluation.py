"""The question generator, answer comparison and the row-chunk RAG baseline."""

from __future__ import annotations

import pytest

from eightfold.graphrag.evaluate import (
    PandasQA,
    RowChunkRAG,
    answers_match,
    evaluate,
    generate_questions,
)


def test_generator_is_seeded_and_mixes_unanswerable_questions(slice_tables):
    first = generate_questions(slice_tables, 60, seed=7)
    again = generate_questions(slice_tables, 60, seed=7)
    other = generate_questions(slice_tables, 60, seed=8)
    assert [q.question for q in first] == [q.question for q in again]
    assert [q.question for q in first] != [q.question for q in other]
    assert sum(not q.answerable for q in first) == 6
    assert all(q.gold is not None for q in first if q.answerable)
    assert {q.variant for q in first} >= {"canonical", "unanswerable"}
    with pytest.raises(ValueError, match="n must be"):
        generate_questions(slice_tables, 0)


@pytest.mark.parametrize(
    ("value", "gold", "kind", "expected"),
    [
        (3, 3, "count", True),
        (True, 1, "count", False),
        (2.84, 2.8434, "aggregate", True),
        (["b", "a"], ["a", "b"], "list", True),
        (["b", "a"], ["a", "b"], "topk", False),
        ("brazil", "Brazil", "compare", True),
        (None, 0, "count", False),
        (False, False, "existence", True),
    ],
)
def test_answers_match(value, gold, kind, expected):
    assert answers_match(value, gold, kind) is expected


def test_row_chunk_rag_reads_only_what_it_retrieves(slice_tables):
    questions = generate_questions(slice_tables, 40, seed=1)
    rag = RowChunkRAG(slice_tables, "bm25", k=5)
    assert len(rag.texts) == len(slice_tables.results) + len(slice_tables.goals) + len(
        slice_tables.shootouts
    )
    hits = rag.retrieve("Brazil Argentina 2019-07-02")
    assert len(hits) == 5 and "Brazil" in rag.texts[hits[0]]
    report = evaluate(questions, {"pandas": PandasQA(slice_tables).ask, "bm25": rag.ask})
    pandas, bm25 = report["systems"]["pandas"], report["systems"]["bm25"]
    assert pandas["accuracy"] > bm25["accuracy"]
    assert pandas["unanswerable_abstained"] == pandas["unanswerable"]
    with pytest.raises(ValueError, match="retriever"):
        RowChunkRAG(slice_tables, "tfidf")
