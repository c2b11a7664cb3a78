"""The long-context demo section in quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.demo import run_demo


@pytest.mark.slow
def test_quick_demo_section_runs(tmp_path: Path) -> None:
    folder, failed = run_demo(tmp_path / "report", quick=True, only=["Long context"])
    assert failed == []
    text = (folder / "report.md").read_text()
    assert "GemFilter vs SnapKV" in text and "| gemfilter |" in text
    assert (folder / "longcontext_needle.png").stat().st_size > 0
    data = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert any("expected_gemfilter_time_ratio" in json.dumps(d) for d in data)
