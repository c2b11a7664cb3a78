"""Structured-GraphRAG: tables to a knowledge graph, questions to read-only Cypher.

Inspired by "Enhancing Structured-Data Retrieval with GraphRAG: Soccer Data Case Study"
(Sepasdar et al., arXiv 2409.17580): structured soccer data becomes a knowledge graph in a real
graph database, questions become Cypher queries, and answers come back with the query and rows
they were computed from. Offline by default (an intent grammar over parameterised templates); an
OpenAI-compatible LLM can be plugged in for questions outside the grammar.

>>> from eightfold.graphrag import GraphQA, GraphStore, InternationalResults, build_graph
>>> build_graph(InternationalResults(since="2018-01-01"), "intl-graph")  # doctest: +SKIP
>>> qa = GraphQA(GraphStore.open("intl-graph"))  # doctest: +SKIP
>>> qa.ask("How many matches did Japan win in 2019?").text  # doctest: +SKIP
"""

from __future__ import annotations

from eightfold.graphrag.answers import Answer, GraphQA, verbalise
from eightfold.graphrag.cypher import (
    CypherRejected,
    TextToCypher,
    check_read_only,
    check_schema,
    extract_cypher,
    impose_limit,
    strip_comments,
)
from eightfold.graphrag.questions import (
    Ambiguity,
    CannotAnswer,
    EntityCatalogue,
    GraphProfile,
    ParsedQuestion,
    QuestionParser,
)
from eightfold.graphrag.schema import GraphSchema, load_mapping, parse_mapping
from eightfold.graphrag.sources import (
    CsvTables,
    GraphData,
    InternationalResults,
    SoccerNetGames,
    Source,
    StatsBombMatches,
    tables_to_graph,
)
from eightfold.graphrag.store import (
    BuildReport,
    EmbeddedStore,
    FalkorDBStore,
    GraphStore,
    Neo4jStore,
    QueryError,
    QueryResult,
    build_graph,
    falkordb_server,
)

__all__ = [
    "Ambiguity",
    "Answer",
    "BuildReport",
    "CannotAnswer",
    "CsvTables",
    "CypherRejected",
    "EmbeddedStore",
    "EntityCatalogue",
    "FalkorDBStore",
    "GraphData",
    "GraphProfile",
    "GraphQA",
    "GraphSchema",
    "GraphStore",
    "InternationalResults",
    "Neo4jStore",
    "ParsedQuestion",
    "QueryError",
    "QueryResult",
    "QuestionParser",
    "SoccerNetGames",
    "Source",
    "StatsBombMatches",
    "TextToCypher",
    "build_graph",
    "check_read_only",
    "check_schema",
    "extract_cypher",
    "falkordb_server",
    "impose_limit",
    "load_mapping",
    "parse_mapping",
    "strip_comments",
    "tables_to_graph",
    "verbalise",
]
