"""Ranking metrics: nDCG@k and Recall@k as TREC tools compute them.

nDCG uses linear gains (the relevance grade) and a ``log2(rank + 1)`` discount, like
``pytrec_eval`` and ``ranx``; judged documents with grade 0 or less count as not relevant.
Queries with no relevant document are left out; a judged query with no results scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["Qrels", "Run", "evaluate_run", "ndcg_at_k", "recall_at_k"]

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def _ranked(scores: Mapping[str, float], k: int) -> list[str]:
    # Ties are broken by document id (descending), as trec_eval does.
    return [doc for doc, _ in sorted(scores.items(), key=lambda kv: (-kv[1], _neg(kv[0])))][:k]


def _neg(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}; expected an integer >= 1")


def ndcg_at_k(run: Run, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """nDCG@k of every judged query.

    Parameters
    ----------
    run
        ``{query_id: {doc_id: score}}``.
    qrels
        ``{query_id: {doc_id: grade}}``.

    Returns
    -------
    dict[str, float]
        ``{query_id: nDCG@k}`` for every query with at least one relevant document.
    """
    _check_k(k)
    out = {}
    for qid, judged in qrels.items():
        gains = sorted((g for g in judged.values() if g > 0), reverse=True)
        if not gains:
            continue
        ideal = sum(g / math.log2(r + 2) for r, g in enumerate(gains[:k]))
        ranked = _ranked(run.get(qid, {}), k)
        dcg = sum(max(judged.get(doc, 0), 0) / math.log2(r + 2) for r, doc in enumerate(ranked))
        out[qid] = dcg / ideal
    return out


def recall_at_k(run: Run, qrels: Qrels, k: int = 100) -> dict[str, float]:
    """Recall@k (share of relevant documents in the top ``k``) of every judged query."""
    _check_k(k)
    out = {}
    for qid, judged in qrels.items():
        relevant = {doc for doc, g in judged.items() if g > 0}
        if not relevant:
            continue
        ranked = set(_ranked(run.get(qid, {}), k))
        out[qid] = len(relevant & ranked) / len(relevant)
    return out


def evaluate_run(
    run: Run, qrels: Qrels, *, ndcg_k: int = 10, recall_k: int = 100
) -> dict[str, float]:
    """Mean nDCG@``ndcg_k`` and Recall@``recall_k`` over the judged queries.

    Returns
    -------
    dict[str, float]
        ``{"ndcg@10": ..., "recall@100": ..., "queries": n}``.

    Raises
    ------
    ValueError
        If no query has a relevant document.
    """
    ndcg = ndcg_at_k(run, qrels, ndcg_k)
    recall = recall_at_k(run, qrels, recall_k)
    if not ndcg:
        raise ValueError("qrels hold no query with a relevant document (grade > 0)")
    return {
        f"ndcg@{ndcg_k}": sum(ndcg.values()) / len(ndcg),
        f"recall@{recall_k}": sum(recall.values()) / len(recall),
        "queries": float(len(ndcg)),
    }
