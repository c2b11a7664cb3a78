"""nDCG@k and Recall@k (through ranx) against hand-computed values and scikit-learn."""

from __future__ import annotations

import math
import random

import pytest

from eightfold.evaluation.retrieval import evaluate_run, ndcg_at_k, recall_at_k


def test_hand_computed_ndcg_and_recall() -> None:
    qrels = {"q": {"a": 2, "b": 1, "z": 1, "n": 0}}
    run = {"q": {"b": 0.9, "x": 0.8, "a": 0.7, "n": 0.6}}
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(run, qrels, 10)["q"] == pytest.approx(dcg / ideal)
    assert recall_at_k(run, qrels, 100)["q"] == pytest.approx(2 / 3)
    assert recall_at_k(run, qrels, 1)["q"] == pytest.approx(1 / 3)


def test_unjudged_and_missing_queries() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    run = {"q1": {"a": 1.0}}
    result = evaluate_run(run, qrels)
    assert result["queries"] == 2  # q3 has no relevant document
    assert result["ndcg@10"] == pytest.approx(0.5)  # q2 has no results
    with pytest.raises(ValueError, match="relevant"):
        evaluate_run(run, {"q": {"a": 0}})
    with pytest.raises(ValueError, match="k="):
        ndcg_at_k(run, qrels, 0)


def test_matches_scikit_learn_ndcg() -> None:
    # scikit-learn's ndcg_score uses the same linear gains and log2 discount; giving it every
    # judged document (unretrieved ones below the run) makes its ideal DCG the TREC one.
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    qrels, run = {}, {}
    for q in range(40):
        docs = [f"d{i}" for i in range(60)]
        qrels[f"q{q}"] = {d: rng.choice([1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 6))}
        scores = rng.sample(range(1, 10_000), 50)  # distinct: tools break ties differently
        run[f"q{q}"] = {d: s / 100 for d, s in zip(rng.sample(docs, 50), scores, strict=True)}
    ours = ndcg_at_k(run, qrels, 10)
    for q, scores in run.items():
        docs = sorted(set(scores) | set(qrels[q]))
        y_true = [[qrels[q].get(d, 0) for d in docs]]
        y_score = [[scores.get(d, -1.0 - i) for i, d in enumerate(docs)]]
        assert ours[q] == pytest.approx(metrics.ndcg_score(y_true, y_score, k=10), abs=1e-12)
