"""Ranking metrics, nDCG@k and Recall@k, computed by the ``ranx`` library.

nDCG uses linear gains (the relevance grade) and a ``log2(rank + 1)`` discount, the TREC
convention that ``ranx`` and ``pytrec_eval`` share; judged documents with grade 0 or less count
as not relevant. Queries with no relevant document are left out; a judged query with no results
scores 0. Documents with equal scores are ranked in ``ranx``'s order.

Notes
-----
``ranx`` compiles its metrics with numba on first use, which takes tens of seconds once per
installation; later calls take milliseconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

__all__ = ["Qrels", "Run", "evaluate_run", "ndcg_at_k", "recall_at_k"]

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}; expected an integer >= 1")


def _per_query(run: Run, qrels: Qrels, metrics: list[str]) -> dict[str, dict[str, float]]:
    """``{metric: {query_id: value}}`` over the queries with at least one relevant document."""
    import ranx

    relevant = {
        str(qid): {str(doc): int(g) for doc, g in judged.items() if g > 0}
        for qid, judged in qrels.items()
    }
    relevant = {qid: judged for qid, judged in relevant.items() if judged}
    if not relevant:
        return {metric: {} for metric in metrics}
    qids = sorted(relevant)
    # Every judged query gets an entry (empty when nothing was retrieved); others are dropped.
    scored = {qid: {str(doc): float(s) for doc, s in run.get(qid, {}).items()} for qid in qids}
    with warnings.catch_warnings():
        # numba warns about an internal integer cast that does not affect these values.
        warnings.simplefilter("ignore")
        values = ranx.evaluate(
            ranx.Qrels({qid: relevant[qid] for qid in qids}),
            ranx.Run(scored),
            metrics,
            return_mean=False,
        )
    if len(metrics) == 1:
        values = {metrics[0]: values}
    return {
        metric: dict(zip(qids, (float(v) for v in values[metric]), strict=True))
        for metric in metrics
    }


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
    return _per_query(run, qrels, [f"ndcg@{k}"])[f"ndcg@{k}"]


def recall_at_k(run: Run, qrels: Qrels, k: int = 100) -> dict[str, float]:
    """Recall@k (share of relevant documents in the top ``k``) of every judged query."""
    _check_k(k)
    return _per_query(run, qrels, [f"recall@{k}"])[f"recall@{k}"]


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
    _check_k(ndcg_k)
    _check_k(recall_k)
    names = [f"ndcg@{ndcg_k}", f"recall@{recall_k}"]
    values = _per_query(run, qrels, names)
    ndcg = values[names[0]]
    if not ndcg:
        raise ValueError("qrels hold no query with a relevant document (grade > 0)")
    out = {name: sum(values[name].values()) / len(values[name]) for name in names}
    out["queries"] = float(len(ndcg))
    return out
