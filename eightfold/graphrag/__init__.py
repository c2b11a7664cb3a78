"""Structured-GraphRAG: tables to a knowledge graph, questions to read-only Cypher."""
