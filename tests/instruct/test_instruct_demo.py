"""The instruct demo section in quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.demo import run_demo


@pytest.mark.slow
def test_quick_demo_section_runs(tmp_path: Path) -> None:
    folder, failed = run_demo(tmp_path / "report", quick=True, only=["Instruct:"])
    assert failed == []
    text = (folder / "report.md").read_text()
    assert "rules (paper, faithful)" in text and "response-tuned + rules" in text
    assert "was not judged here" in text
    for name in ("instruct_adapter.png", "instruct_response_tuning.png"):
        assert (folder / name).stat().st_size > 1000
    examples = [json.loads(line) for line in (folder / "instruct_examples.jsonl").open()]
    assert {"base model", "response-tuned"} <= {e["variant"] for e in examples}
    assert all(isinstance(e["ended"], bool) for e in examples)
