"""The graph QA demo section in quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.demo import run_demo


@pytest.mark.slow
def test_quick_demo_section_runs(tmp_path: Path) -> None:
    folder, failed = run_demo(tmp_path / "report", quick=True, only=["Graph QA"])
    assert failed == []
    text = (folder / "report.md").read_text()
    assert "| GraphRAG (templates) |" in text and "| row-chunk RAG, BM25 k=10 |" in text
    assert "Cannot answer" in text  # the yellow-card and ambiguous examples abstain
    assert (folder / "graphrag_accuracy.png").stat().st_size > 0
    data = json.dumps([json.loads(p.read_text()) for p in folder.glob("*.json")])
    assert '"GraphRAG (templates)"' in data and '"unanswerable_abstained"' in data
