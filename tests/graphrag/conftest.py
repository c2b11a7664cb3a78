"""Shared fixtures for the graph tests: a small slice of the international results, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from eightfold.graphrag import GraphQA, GraphStore, InternationalResults, build_graph
from eightfold.graphrag.gold import SoccerTables

SLICE = {"since": "2018-01-01", "until": "2019-12-31"}


@pytest.fixture(scope="session")
def slice_source() -> InternationalResults:
    return InternationalResults(**SLICE)


@pytest.fixture(scope="session")
def slice_tables(slice_source: InternationalResults) -> SoccerTables:
    return SoccerTables.from_raw(slice_source.tables())


@pytest.fixture(scope="session")
def slice_graph(tmp_path_factory: pytest.TempPathFactory, slice_source) -> Path:
    """A read-only embedded graph of the 2018-2019 matches (about 2,000)."""
    folder = tmp_path_factory.mktemp("graphs") / "slice"
    build_graph(slice_source, folder)
    return folder


@pytest.fixture(scope="session")
def slice_qa(slice_graph: Path) -> GraphQA:
    return GraphQA(GraphStore.open(slice_graph), max_rows=500)
