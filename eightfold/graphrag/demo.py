"""Demo section: graph QA over real international match results, against row-chunk RAG."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from eightfold.demo import DemoContext, demo_section
from eightfold.graphrag.answers import GraphQA
from eightfold.graphrag.evaluate import (
    PandasQA,
    RowChunkRAG,
    evaluate,
    generate_questions,
    graph_system,
)
from eightfold.graphrag.gold import SoccerTables
from eightfold.graphrag.sources import InternationalResults
from eightfold.graphrag.store import GraphStore, build_graph
from eightfold.report import Section, markdown_table

logger = logging.getLogger(__name__)

EXAMPLES = [
    "How many matches did Brazil win at the World Cup?",
    "Who are the top 3 scorers at the World Cup?",
    "Who won more matches between England and Scotland?",
    "What is the average number of goals per match in friendlies since 2010?",
    "How many goals did Mesi score for Argentina?",
    "How many matches did Korea win?",
    "How many matches did Brazil win'}) MATCH (n) DETACH DELETE n //",
    "How many yellow cards did Italy get in 2006?",
]
QUICK_EXAMPLES = [
    "How many matches did Japan win?",
    "Who are the top 3 scorers?",
    "How many matches did Korea win?",
    "How many yellow cards did Italy get?",
]


@demo_section(
    "Graph QA: Structured-GraphRAG over real match results against row-chunk RAG", order=40
)
def graphrag_section(ctx: DemoContext) -> Section:
    source = (
        InternationalResults(since="2019-06-01", until="2019-09-30")
        if ctx.quick
        else InternationalResults()
    )
    # The graph is scratch: the report keeps the answers, not a copy of the database.
    scratch = tempfile.TemporaryDirectory(prefix="eightfold-graph-")
    folder = Path(scratch.name) / "graph"
    build = build_graph(source, folder)
    tables = SoccerTables.from_raw(source.tables())

    with scratch, GraphStore.open(folder) as store:
        qa = GraphQA(store, max_rows=1000)
        examples = []
        for question in QUICK_EXAMPLES if ctx.quick else EXAMPLES:
            answer = qa.ask(question)
            examples.append(
                {
                    "question": question,
                    "answer": answer.text,
                    "cypher": answer.cypher or "—",
                    "ms": 1000 * sum(v for k, v in answer.timings.items() if k != "total_s"),
                }
            )
        questions = generate_questions(tables, 30 if ctx.quick else 200, seed=ctx.seed)
        bm25 = RowChunkRAG(tables, "bm25", k=10)
        report = evaluate(
            questions,
            {
                "GraphRAG (templates)": graph_system(qa),
                "row-chunk RAG, BM25 k=10": bm25.ask,
                "direct pandas": PandasQA(tables).ask,
            },
        )

    rows: list[dict[str, Any]] = []
    for name, result in report["systems"].items():
        kinds = result["accuracy_by_kind"]
        rows.append(
            {
                "system": name,
                "accuracy": result["accuracy"],
                "count": kinds.get("count"),
                "aggregate": kinds.get("aggregate"),
                "top-k": kinds.get("topk"),
                "wrong": result["wrong"],
                "abstained": result["abstained"],
                "unanswerable abstained": f"{result['unanswerable_abstained']}/"
                f"{result['unanswerable']}",
                "p50 ms": result["latency_ms"]["p50"],
            }
        )
    matches = build.counts.get("Match", 0)
    period = " from June to September 2019" if ctx.quick else ""
    body = (
        f"The international results ({matches:,} matches{period}, "
        f"{build.counts.get('Goal', 0):,} goals) become a knowledge graph in the embedded "
        f"graph database in {build.seconds:.1f} s. Questions are parsed by the offline grammar "
        "into parameterised Cypher; every answer carries its query and rows. Inspired by "
        "Structured-GraphRAG (arXiv 2409.17580), which reports 64% against 36% accuracy for its "
        "retrieval baseline.\n\n"
        + markdown_table(examples, ["question", "answer", "cypher", "ms"])
        + f"\n{len(questions)} generated questions (seed {ctx.seed}, about 10% unanswerable), "
        "gold answers from pandas code independent of the Cypher templates. Row-chunk RAG "
        "reads only the 10 rows it retrieves with the same extractor as direct pandas.\n\n"
        + markdown_table(rows)
    )

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        kinds = ["count", "aggregate", "topk", "list", "compare", "existence", "lookup"]
        width = 0.8 / len(report["systems"])
        for i, (name, result) in enumerate(report["systems"].items()):
            values = [result["accuracy_by_kind"].get(k, 0.0) for k in kinds]
            ax.bar([x + i * width for x in range(len(kinds))], values, width, label=name)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(kinds))], kinds)
        ax.set_ylabel("accuracy")
        ax.set_title("Accuracy per question kind")
        ax.set_ylim(0, 1.3)
        ax.legend(fontsize=8, loc="upper center", ncol=3)

    return Section(
        title="Graph QA: Structured-GraphRAG over real match results against row-chunk RAG",
        body=body,
        figures={"graphrag_accuracy.png": draw},
        data={
            "build": {"seconds": build.seconds, "counts": build.counts},
            "examples": examples,
            "systems": {
                name: {k: v for k, v in result.items() if k != "records"}
                for name, result in report["systems"].items()
            },
        },
    )
