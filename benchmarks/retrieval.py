"""Token pooling: storage versus retrieval quality with the real MiniLM encoder.

Reproduces the comparison of Clavié, Chaffin and Adams (arXiv:2409.14683): for each pooling
method (hierarchical/Ward, k-means, sequential) and pool factor (1, 2, 3, 4, 6), nDCG@10 relative
to the unpooled index, vector count, index bytes, indexing time split into encoding and pooling,
and exact MaxSim query latency (p50, p95); plus recall of the centroid candidate stage against
exact search.

Datasets: BEIR SciFact (``../shared/data/scifact``; skipped when absent) and code search over
Python's standard library. On a small CPU machine both are subsampled (``--scifact-docs``,
``--code-docs``): every judged document is kept and a fixed hash-chosen sample of the others fills
the corpus. Documents are encoded once per run; the unpooled token vectors are cached in
``--work`` and pooled with every method and factor.

Run: ``python benchmarks/retrieval.py`` (results in ``benchmarks/results/retrieval.json`` and
``retrieval.png``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eightfold.evaluation.retrieval import evaluate_run
from eightfold.retrieval import Index, MultiVectorEncoder, PoolingConfig, pool_embeddings_sweep
from eightfold.retrieval.tasks import RetrievalTask, code_search_task, load_beir
from eightfold.storage import atomic_write_json, settings_key

logger = logging.getLogger("eightfold.benchmarks.retrieval")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCIFACT = REPO.parent / "shared" / "data" / "scifact"


def _encode_cached(encoder: MultiVectorEncoder, task: RetrievalTask, work: Path) -> dict[str, Any]:
    """Unpooled document and query vectors, encoded once and kept in ``work``."""
    key = settings_key(
        {
            "task": task.name,
            "docs": sorted(task.corpus),
            "queries": sorted(task.queries),
            "encoder": encoder.describe(),
        }
    )
    folder = work / f"encoded-{key}"
    if not (folder / "meta.json").is_file():
        ids = list(task.corpus)
        t0 = time.perf_counter()
        docs = encoder.encode_documents([task.corpus[i] for i in ids])
        encode_seconds = time.perf_counter() - t0
        qids = list(task.queries)
        t0 = time.perf_counter()
        queries = encoder.encode_queries([task.queries[q] for q in qids])
        query_seconds = time.perf_counter() - t0
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "docs.npy", torch.cat(docs).numpy())
        np.save(folder / "doc_offsets.npy", np.cumsum([0] + [d.shape[0] for d in docs]))
        np.save(folder / "queries.npy", torch.cat(queries).numpy())
        np.save(folder / "query_offsets.npy", np.cumsum([0] + [q.shape[0] for q in queries]))
        atomic_write_json(
            folder / "meta.json",
            {
                "ids": ids,
                "qids": qids,
                "encode_seconds": encode_seconds,
                "query_encode_seconds": query_seconds,
            },
        )
    meta = json.loads((folder / "meta.json").read_text())
    flat = torch.from_numpy(np.load(folder / "docs.npy"))
    offsets = np.load(folder / "doc_offsets.npy")
    qflat = np.load(folder / "queries.npy")
    qoff = np.load(folder / "query_offsets.npy")
    return {
        "ids": meta["ids"],
        "qids": meta["qids"],
        "docs": [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)],
        "queries": [qflat[qoff[i] : qoff[i + 1]] for i in range(len(qoff) - 1)],
        "encode_seconds": meta["encode_seconds"],
        "query_encode_seconds": meta["query_encode_seconds"],
    }


def _exact_run(
    index: Index, queries: list[np.ndarray], qids: list[str], k: int = 100
) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    batch = 32
    for start in range(0, len(queries), batch):
        group = queries[start : start + batch]
        scores = index.exact_scores(group)
        for qi, row in enumerate(scores):
            top = np.argsort(-row, kind="stable")[:k]
            run[qids[start + qi]] = {index.ids[d]: float(row[d]) for d in top}
    return run


def _latency(
    index: Index, queries: list[np.ndarray], mode: str, repeats: int = 1
) -> tuple[float, float, list[list[str]]]:
    times, tops = [], []
    for q in queries:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            hits = index.search_vectors([q], 10, mode=mode, with_text=False)[0]  # type: ignore[arg-type]
            best = min(best, time.perf_counter() - t0)
        times.append(best)
        tops.append([h.id for h in hits])
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3), tops


# Variants beyond the three methods: "hierarchical+renormalize" (L2-normalised cluster means, as
# colpali-engine does) and "hierarchical+square_rows" (the paper-era Ward input).
VARIANTS = {
    "renormalize": {"renormalize": True},
    "square_rows": {"ward_input": "square_rows"},
    "vectors": {"ward_input": "vectors"},
}


def _pooling(spec: str) -> PoolingConfig:
    method, *options = spec.split("+")
    settings: dict[str, Any] = {}
    for option in options:
        if option not in VARIANTS:
            raise ValueError(f"unknown variant {option!r} in {spec!r}; known: {sorted(VARIANTS)}")
        settings.update(VARIANTS[option])
    return PoolingConfig(method=method, **settings)  # type: ignore[arg-type]


def run_dataset(
    task: RetrievalTask, encoder: MultiVectorEncoder, args: argparse.Namespace
) -> dict[str, Any]:
    logger.info("%s: %d documents, %d queries", task.name, len(task.corpus), len(task.queries))
    enc = _encode_cached(encoder, task, args.work)
    unpooled = sum(int(d.shape[0]) for d in enc["docs"])
    logger.info("encoded in %.0f s (%d vectors)", enc["encode_seconds"], unpooled)
    latency_queries = enc["queries"][: args.latency_queries]
    configs: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    base_ndcg: float | None = None
    for method in args.methods:
        timings: dict[int, float] = {}
        pooled: dict[int, list[torch.Tensor]] = {p: [] for p in args.factors}
        config = _pooling(method)
        for doc in enc["docs"]:
            for p, res in pool_embeddings_sweep(
                doc, args.factors, config=config, timings=timings
            ).items():
                pooled[p].append(res.vectors)
        for p in args.factors:
            if p == 1 and base_ndcg is not None:
                continue  # the unpooled index is the same for every method
            folder = args.work / f"index-{method}-{p}"
            index = Index.from_embeddings(
                enc["ids"],
                pooled[p],
                folder,
                encoder=encoder,
                pooling=PoolingConfig(**{**config.to_dict(), "pool_factor": p}),
                pooled=True,
                overwrite=True,
            )
            metrics = evaluate_run(_exact_run(index, enc["queries"], enc["qids"]), task.qrels)
            p50, p95, exact_top = _latency(index, latency_queries, "exact")
            row = {
                "method": "none" if p == 1 else method,
                "pool_factor": p,
                "ndcg@10": metrics["ndcg@10"],
                "recall@100": metrics["recall@100"],
                "vectors": index.num_vectors,
                "vector_ratio": index.num_vectors / unpooled,
                "index_bytes": index.nbytes(),
                "pool_seconds": timings[p] if p > 1 else 0.0,
                "pool_over_encode": (timings[p] if p > 1 else 0.0) / enc["encode_seconds"],
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
            }
            if p == 1:
                base_ndcg = metrics["ndcg@10"]
            if method == "hierarchical" and p in args.candidate_factors:
                t0 = time.perf_counter()
                index.build_candidate_stage()
                build = time.perf_counter() - t0
                c50, c95, cand_top = _latency(index, latency_queries, "candidates")
                overlap = [
                    len(set(a) & set(b)) / len(b) for a, b in zip(cand_top, exact_top, strict=True)
                ]
                candidates.append(
                    {
                        "pool_factor": p,
                        "centroids": index.manifest["candidates"]["centroids"],
                        "build_seconds": build,
                        "recall@10_vs_exact": float(np.mean(overlap)),
                        "latency_p50_ms": c50,
                        "latency_p95_ms": c95,
                        "exact_latency_p50_ms": p50,
                    }
                )
            row["relative_ndcg"] = metrics["ndcg@10"] / base_ndcg if base_ndcg else None
            configs.append(row)
            logger.info(
                "%s p=%d: nDCG@10 %.4f (%.1f%%), %.0f%% vectors, pool %.1f s, p50 %.0f ms",
                row["method"],
                p,
                row["ndcg@10"],
                100 * (row["relative_ndcg"] or 0),
                100 * row["vector_ratio"],
                row["pool_seconds"],
                p50,
            )
            shutil.rmtree(folder, ignore_errors=True)
    return {
        "task": task.name,
        "info": task.info,
        "documents": len(task.corpus),
        "queries": len(task.queries),
        "unpooled_vectors": unpooled,
        "encode_seconds": enc["encode_seconds"],
        "query_encode_ms_mean": 1e3 * enc["query_encode_seconds"] / len(task.queries),
        "configs": configs,
        "candidates": candidates,
    }


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, data in results.items():
        rows = {(r["method"], r["pool_factor"]): r for r in data["configs"]}
        h2, h3 = rows.get(("hierarchical", 2)), rows.get(("hierarchical", 3))
        if h2:
            out[f"{name}: hierarchical p=2 relative nDCG@10 >= 0.99"] = {
                "value": h2["relative_ndcg"],
                "met": h2["relative_ndcg"] >= 0.99,
            }
            out[f"{name}: hierarchical p=2 vectors <= 52%"] = {
                "value": h2["vector_ratio"],
                "met": h2["vector_ratio"] <= 0.52,
            }
            out[f"{name}: hierarchical p=2 pooling time <= 25% of encoding"] = {
                "value": h2["pool_over_encode"],
                "met": h2["pool_over_encode"] <= 0.25,
            }
        if h3:
            out[f"{name}: hierarchical p=3 relative nDCG@10 >= 0.97"] = {
                "value": h3["relative_ndcg"],
                "met": h3["relative_ndcg"] >= 0.97,
            }
        base = rows.get(("none", 1))
        if base:
            out[f"{name}: exact search p50 < 50 ms (unpooled)"] = {
                "value": base["latency_p50_ms"],
                "met": base["latency_p50_ms"] < 50,
            }
        if h2:
            out[f"{name}: exact search p50 < 50 ms (hierarchical p=2)"] = {
                "value": h2["latency_p50_ms"],
                "met": h2["latency_p50_ms"] < 50,
            }
        for cand in data["candidates"]:
            out[f"{name}: candidate stage recall@10 vs exact >= 0.95 (p={cand['pool_factor']})"] = {
                "value": cand["recall@10_vs_exact"],
                "met": cand["recall@10_vs_exact"] >= 0.95,
            }
    return out


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(results), 4.2), dpi=110)
    for i, (name, data) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        base = next(r for r in data["configs"] if r["method"] == "none")
        for method in sorted({r["method"] for r in data["configs"]} - {"none"}):
            rows = [
                base,
                *sorted(
                    (r for r in data["configs"] if r["method"] == method),
                    key=lambda r: r["pool_factor"],
                ),
            ]
            ax.plot(
                [100 * r["vector_ratio"] for r in rows],
                [100 * r["relative_ndcg"] for r in rows],
                marker="o",
                label=method,
            )
            for r in rows[1:]:
                ax.annotate(
                    f"p={r['pool_factor']}",
                    (100 * r["vector_ratio"], 100 * r["relative_ndcg"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.axhline(99, color="grey", lw=0.6, ls="--")
        ax.axhline(97, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("vectors kept (% of unpooled)")
        ax.set_ylabel("nDCG@10 (% of unpooled)")
        ax.set_title(f"{name} ({data['documents']} docs, {data['queries']} queries)", fontsize=9)
        ax.invert_xaxis()
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--scifact-docs", type=int, default=500)
    parser.add_argument("--code-docs", type=int, default=500)
    parser.add_argument("--queries", type=int, default=300, help="queries per dataset")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 2, 3, 4, 6])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[
            "hierarchical",
            "kmeans",
            "sequential",
            "hierarchical+renormalize",
            "hierarchical+square_rows",
        ],
        help="pooling methods; +renormalize / +square_rows / +vectors select variants",
    )
    parser.add_argument("--candidate-factors", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--latency-queries", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/eightfold-retrieval-bench"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if 1 not in args.factors:
        parser.error("--factors must include 1 (the unpooled baseline)")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    encoder = MultiVectorEncoder()
    tasks: dict[str, RetrievalTask] = {}
    if (args.scifact / "corpus.jsonl").is_file():
        task = load_beir(args.scifact)
        task.queries = dict(list(task.queries.items())[: args.queries])
        task.qrels = {q: task.qrels[q] for q in task.queries}
        tasks["SciFact"] = task.subset(args.scifact_docs)
    else:
        logger.warning("SciFact not found at %s: skipped", args.scifact)
    code = code_search_task(max_documents=args.code_docs)
    code.queries = dict(list(code.queries.items())[: args.queries])
    code.qrels = {q: code.qrels[q] for q in code.queries}
    tasks["stdlib code search"] = code

    t0 = time.perf_counter()
    results = {name: run_dataset(task, encoder, args) for name, task in tasks.items()}
    report = {
        "command": shlex.join(["python", "benchmarks/retrieval.py", *(argv or sys.argv[1:])]),
        "paper": "arXiv:2409.14683",
        "encoder": encoder.describe(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "seconds": time.perf_counter() - t0,
        "datasets": results,
        "targets": _targets(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "retrieval.json", report)
    _plot(results, args.out / "retrieval.png")
    for name, target in report["targets"].items():
        logger.info("%s %s: %.4g", "MET " if target["met"] else "MISS", name, target["value"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
