"""The sparsity demo section in quick mode."""

from __future__ import annotations

import math

import pytest

from eightfold.demo import DemoContext, registered_sections


@pytest.mark.slow
def test_quick_demo_section(tmp_path):
    from eightfold.sparsity.demo import sparsity_section

    assert any(t.startswith("Sparsity") for t in registered_sections())
    section = sparsity_section(DemoContext(out=tmp_path, quick=True))
    rows = section.data["perplexity"]
    assert [r["method"] for r in rows][:4] == ["dense", "magnitude", "Wanda", "SparseGPT"]
    assert rows[-1]["method"].startswith("MaskLLM")
    assert all(r["2:4 check"] for r in rows[1:])
    assert all(math.isfinite(r["test perplexity"]) for r in rows)
    assert section.data["maskllm_curve"]
    assert (tmp_path / "sparsity_maskllm_masks.npz").is_file()
    assert "| dense |" in section.body
