"""``eightfold graph build|ask|schema|eval``: Structured-GraphRAG from the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from eightfold.cli.common import console, show_error

logger = logging.getLogger(__name__)

graph_app = typer.Typer(
    help="Soccer tables to a knowledge graph; questions to read-only Cypher with provenance.",
    no_args_is_help=True,
)

SOURCES = ("international", "soccernet", "statsbomb", "csv")


def _fail(exc: BaseException) -> typer.Exit:
    show_error(exc)
    return typer.Exit(2)


def _make_source(
    source: str,
    path: list[Path] | None,
    schema: Path | None,
    events: list[Path] | None,
    lineups: list[Path] | None,
    since: str | None,
    until: str | None,
) -> Any:
    from eightfold.graphrag import CsvTables, InternationalResults, SoccerNetGames, StatsBombMatches

    if source not in SOURCES:
        raise ValueError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "international":
        if path and len(path) > 1:
            raise ValueError("--path takes one folder for --source international")
        return InternationalResults(path[0] if path else None, since=since, until=until)
    if source == "soccernet":
        if not path:
            raise ValueError(
                "--source soccernet needs --path: SoccerNet game-list JSON files or a folder of "
                "them (SoccerNetGamesTrain.json ...)"
            )
        return SoccerNetGames(path)
    if source == "statsbomb":
        if not events:
            raise ValueError("--source statsbomb needs --events FILE (and --lineups FILE)")
        return StatsBombMatches(events, lineups or [])
    if schema is None:
        raise ValueError("--source csv needs --schema FILE (JSON or TOML naming the CSV files)")
    return CsvTables(schema)


@graph_app.command("build")
def build_command(
    db: str = typer.Option(..., "--db", help="Folder (embedded) or falkor://host:port/graph URL."),
    source: str = typer.Option("international", "--source", help="|".join(SOURCES)),
    path: list[Path] = typer.Option(None, "--path", help="Input folder or files for the source."),
    schema: Path = typer.Option(None, "--schema", help="Schema file for --source csv."),
    events: list[Path] = typer.Option(None, "--events", help="StatsBomb event JSON files."),
    lineups: list[Path] = typer.Option(None, "--lineups", help="StatsBomb lineup JSON files."),
    since: str = typer.Option(None, help="International results: first date kept (ISO)."),
    until: str = typer.Option(None, help="International results: last date kept (ISO)."),
) -> None:
    """Build (or rebuild, atomically) a knowledge graph from a source."""
    from eightfold.graphrag import build_graph

    data = _make_source(source, path, schema, events, lineups, since, until)
    console.print(f"building the {source} graph at [bold]{db}[/bold] ...")
    try:
        report = build_graph(data, db)
    except ConnectionError as exc:
        raise _fail(exc) from exc
    nodes = {k: v for k, v in report.counts.items() if k[:1].isupper() and not k.isupper()}
    rels = {k: v for k, v in report.counts.items() if k not in nodes}
    console.print(
        f"built in {report.seconds:.1f} s ({report.backend}): "
        f"{sum(nodes.values())} nodes, {sum(rels.values())} relationships"
    )
    typer.echo(json.dumps({"db": db, "backend": report.backend, "counts": report.counts,
                           "seconds": round(report.seconds, 3)}, indent=2))  # fmt: skip


def _open(db: str, timeout: float) -> Any:
    from eightfold.graphrag import GraphStore

    try:
        return GraphStore.open(db, timeout_s=timeout)
    except ConnectionError as exc:
        raise _fail(exc) from exc


@graph_app.command("ask")
def ask_command(
    db: str = typer.Argument(..., help="Graph folder or URL."),
    question: str = typer.Argument(..., help="A question in plain words."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole answer as JSON."),
    llm: bool = typer.Option(
        False, "--llm", help="Use the LLM configured by EIGHTFOLD_LLM_BASE_URL / _MODEL."
    ),
    prefer: str = typer.Option("templates", help="With --llm: 'templates' first or 'llm' first."),
    max_rows: int = typer.Option(100, help="Rows kept in the answer."),
    timeout: float = typer.Option(10.0, help="Query timeout in seconds."),
) -> None:
    """Answer a question; prints the answer, the Cypher and the rows. Exit 1 if unanswered."""
    from eightfold.graphrag import GraphQA

    client = None
    if llm:
        from eightfold.llm import LLMClient, LLMConfig

        client = LLMClient(LLMConfig.from_env())
    with _open(db, timeout) as store:
        answer = GraphQA(
            store, llm=client, prefer=prefer, max_rows=max_rows, timeout_s=timeout
        ).ask(question)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        typer.echo(answer.text)
        if answer.cypher:
            typer.echo(f"\ncypher ({answer.method}): {answer.cypher}")
            typer.echo(f"params: {json.dumps(answer.params, ensure_ascii=False)}")
            typer.echo(f"rows ({len(answer.rows)}{', truncated' if answer.truncated else ''}):")
            for row in answer.rows[:20]:
                typer.echo("  " + json.dumps(row, ensure_ascii=False, default=str))
            if len(answer.rows) > 20:
                typer.echo(f"  ... {len(answer.rows) - 20} more")
    if not answer.answered:
        raise typer.Exit(1)


@graph_app.command("schema")
def schema_command(
    db: str = typer.Argument(..., help="Graph folder or URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the schema and counts as JSON."),
) -> None:
    """Show labels, relationship types (with their endpoints), properties and counts."""
    with _open(db, 10.0) as store:
        schema = store.schema()
        counts = store.counts()
        provenance = store.manifest.get("provenance", {})
    if as_json:
        typer.echo(
            json.dumps(
                {"schema": schema.to_dict(), "counts": counts, "provenance": provenance},
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    typer.echo(schema.describe())
    typer.echo("Counts:")
    for name, count in counts.items():
        typer.echo(f"  {name}: {count}")


@graph_app.command("eval")
def eval_command(
    db: str = typer.Argument(..., help="Graph folder or URL built from the international results."),
    questions: int = typer.Option(300, help="Number of generated questions."),
    seed: int = typer.Option(0, help="Question generator seed."),
    systems: str = typer.Option(
        "graph,pandas,bm25", help="Comma list of graph, pandas, bm25, minilm."
    ),
    k: int = typer.Option(10, help="Rows retrieved by the row-chunk RAG baselines."),
    out: Path = typer.Option(None, "--out", help="Write the full report (JSON) here."),
) -> None:
    """Generated questions with pandas gold answers: GraphRAG against row-chunk RAG and pandas."""
    from eightfold.graphrag import GraphQA, InternationalResults
    from eightfold.graphrag.evaluate import (
        PandasQA,
        RowChunkRAG,
        evaluate,
        generate_questions,
        graph_system,
    )
    from eightfold.graphrag.gold import SoccerTables
    from eightfold.storage import atomic_write_json

    wanted = [s.strip() for s in systems.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {"graph", "pandas", "bm25", "minilm"})
    if unknown:
        raise ValueError(f"--systems: unknown {unknown}; choose from graph, pandas, bm25, minilm")
    with _open(db, 10.0) as store:
        source = store.manifest.get("provenance", {}).get("source", {})
        if source.get("name") != "international":
            raise NotImplementedError(
                "graph eval generates questions from the international results; build the graph "
                "with --source international"
            )
        path = source.get("path")
        tables = SoccerTables.from_raw(
            InternationalResults(
                None if path in (None, "shipped copy") else path,
                since=source.get("since"),
                until=source.get("until"),
            ).tables()
        )
        question_set = generate_questions(tables, questions, seed=seed)
        runners: dict[str, Any] = {}
        if "graph" in wanted:
            runners["graphrag"] = graph_system(GraphQA(store, max_rows=1000))
        if "pandas" in wanted:
            runners["pandas"] = PandasQA(tables).ask
        for retriever in ("bm25", "minilm"):
            if retriever in wanted:
                console.print(f"indexing rows for {retriever} ...")
                runners[f"chunk-{retriever}"] = RowChunkRAG(tables, retriever, k).ask
        report = evaluate(question_set, runners)
    if out is not None:
        atomic_write_json(out, report)
        console.print(f"report written to [bold]{out}[/bold]")
    rows = []
    for name, result in report["systems"].items():
        rows.append(
            f"{name:14s} accuracy {result['accuracy']:.3f}  wrong {result['wrong']:3d}  "
            f"abstained {result['abstained']:3d}  unanswerable abstained "
            f"{result['unanswerable_abstained']}/{result['unanswerable']}  "
            f"p50 {result['latency_ms']['p50']:.1f} ms  p95 {result['latency_ms']['p95']:.1f} ms"
        )
    typer.echo("\n".join(rows))


def register(app: typer.Typer) -> None:
    app.add_typer(graph_app, name="graph")
