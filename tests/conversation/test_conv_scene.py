"""Step 1 (scene) and step 2 (causality) offline, on hand-made conversations."""

from __future__ import annotations

import numpy as np
import pytest

from eightfold.conversation import (
    AnalyzerConfig,
    Attribution,
    FrictionEvent,
    attribute_changes,
    dialogue_acts,
    emotion_of,
    ground_attributions,
    outcome_drivers,
)
from eightfold.conversation.causality import _newcombe, _wilson
from eightfold.conversation.demo import sample_conversations
from tests.conversation.conv_fixtures import FRUSTRATED, ORDER_OK, conv, hashing_analyzer


@pytest.mark.parametrize(
    ("text", "acts"),
    [
        ("Hello! How can I help?", ["greeting", "question"]),
        ("Can I get a latte please", ["request"]),
        ("I'm so sorry about that.", ["apology"]),
        ("yes that's right", ["confirm"]),
        ("no", ["deny"]),
        ("The store opens at nine.", ["inform"]),
        ("Thanks, bye!", ["thanks", "closing"]),
        ("Please hold while I transfer you to billing.", ["request", "hold", "transfer"]),
    ],
)
def test_dialogue_acts(text: str, acts: list[str]) -> None:
    assert dialogue_acts(text) == acts


def test_emotion_rules() -> None:
    assert emotion_of("This is ridiculous, I already told you!").label == "frustration"
    assert emotion_of("Perfect, thank you so much!").label == "joy"
    assert emotion_of("I am worried about the delivery.").label == "fear"
    assert emotion_of("The order number is on the receipt.").label == "neutral"
    e = emotion_of("terrible awful horrible service")
    assert e.label == "anger" and e.valence < -0.6 and e.source == "vader"
    # An agent's "unfortunately" is politeness, not sadness.
    assert emotion_of("Unfortunately we close at six.", "agent").label == "neutral"


def test_order_conversation_scene() -> None:
    a = hashing_analyzer().analyze(conv(ORDER_OK))
    s = a.scene
    assert s.customer_goal.intent == "place_order" and s.customer_goal.source == "embed"
    assert s.outcome.status == "resolved" and s.outcome.evidence_turns == [3]
    assert a.turns[2].intent is not None and a.turns[2].intent.label == "confirm"
    assert a.turns[1].intent is None  # agent turns carry no intent
    words = {"customer": 9 + 3, "agent": 7 + 13}
    assert s.metrics.talk_share == {r: round(n / 32, 4) for r, n in sorted(words.items())}
    assert s.metrics.n_turns == 4 and s.metrics.transfers == 0 and s.metrics.apologies == 0
    assert s.metrics.avg_response_gap_s is None
    assert [p.role for p in a.participants] == ["customer", "agent"]
    assert "polite" in a.participants[0].profile.traits
    assert s.topics[0].label == "place_order" and s.topics[0].turns == [0, 1, 2, 3]


def test_friction_and_attributions() -> None:
    a = hashing_analyzer().analyze(conv(FRUSTRATED))
    kinds = {(f.kind, f.turn) for f in a.friction}
    assert ("negative_answer", 3) in kinds
    assert ("long_gap", 3) in kinds  # 180 s before the agent's reply
    assert ("repeat_request", 4) in kinds  # "I already told you"
    assert a.scene.metrics.avg_response_gap_s == pytest.approx((10 + 10 + 180 + 10) / 4)
    assert a.scene.outcome.status == "unresolved"
    drop = [x for x in a.attributions if x.direction == "down"]
    assert drop and drop[-1].turn == 4 and drop[-1].cause_turns == [3]
    assert drop[-1].quote in a.turns[3].text
    assert {e.kind for e in drop[-1].events} >= {"negative_answer", "repeat_request"}


def test_outcomes_of_samples() -> None:
    analyses, errors = hashing_analyzer().analyze_many(sample_conversations())
    assert not errors
    got = {a.conversation_id: a.scene.outcome.status for a in analyses}
    assert got == {
        "sample-order-ok": "resolved",
        "sample-refund-frustrated": "unresolved",
        "sample-escalated": "escalated",
        "sample-out-of-stock": "unresolved",
        "sample-password": "resolved",
        "sample-abandoned": "abandoned",
        "sample-payment": "resolved",
        "sample-modify": "resolved",
    }
    # Rule outcomes agree with the hand-labelled metadata on every sample.
    assert all((got[a.conversation_id] == "resolved") == a.meta["resolved"] for a in analyses)


def test_batch_continues_past_bad_item() -> None:
    good = conv(ORDER_OK)
    results, errors = hashing_analyzer().analyze_many([good, "not a conversation", good])  # type: ignore[list-item]
    assert len(results) == 2 and len(errors) == 1 and "TypeError" in str(errors[0])
    with pytest.raises(ValueError, match="on_error"):
        hashing_analyzer().analyze_many([good], on_error="ignore")  # type: ignore[arg-type]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="change_threshold"):
        AnalyzerConfig(change_threshold=0)
    with pytest.raises(ValueError, match="entity_lexicon"):
        AnalyzerConfig(entity_lexicon={"drink": "latte"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="encoder="):
        from eightfold.conversation import Analyzer

        Analyzer(AnalyzerConfig(encoder="bert"))


def test_attribute_changes_known_valences() -> None:
    a = hashing_analyzer().analyze(conv(ORDER_OK))
    turns = [
        t.model_copy(update={"emotion": t.emotion.model_copy(update={"valence": v})})
        for t, v in zip(a.turns, [0.0, 0.0, -0.5, 0.0], strict=True)
    ]
    out = attribute_changes(turns, [], threshold=0.4)
    assert len(out) == 1 and out[0].turn == 2 and out[0].delta == -0.5
    assert out[0].cause_turns == [1] and out[0].direction == "down"
    assert attribute_changes(turns, [], threshold=0.6) == []


def test_grounding_drops_bad_citations() -> None:
    a = hashing_analyzer().analyze(conv(ORDER_OK))
    good = Attribution(
        turn=2,
        delta=0.4,
        direction="up",
        cause_turns=[1],
        quote="one large LATTE,  is that",
        source="llm",
    )
    wrong_quote = good.model_copy(update={"quote": "we are out of milk"})
    missing = good.model_copy(update={"cause_turns": [7]})
    kept, dropped = ground_attributions([good, wrong_quote, missing], a.turns)
    assert kept == [good]
    assert "does not occur" in dropped[0] and "cites turn(s) [7]" in dropped[1]


def test_newcombe_interval_matches_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80,
    # method 10 interval 0.0524 to 0.3339.
    lo, hi = _newcombe(56, 70, 48, 80)
    assert lo == pytest.approx(0.0524, abs=5e-4) and hi == pytest.approx(0.3339, abs=5e-4)
    # Wilson score interval for 81/263 (Agresti and Coull's example): 0.2553 to 0.3662.
    w = _wilson(81, 263)
    assert w[0] == pytest.approx(0.2553, abs=5e-4) and w[1] == pytest.approx(0.3662, abs=5e-4)


def test_outcome_drivers_find_planted_driver() -> None:
    base = hashing_analyzer().analyze(conv(ORDER_OK))
    rng = np.random.default_rng(0)
    items = []
    for i in range(120):
        repeat = i % 2 == 0
        # Planted: a repeat request cuts the chance of order_placed from 0.9 to 0.2.
        placed = bool(rng.random() < (0.2 if repeat else 0.9))
        friction = [FrictionEvent(kind="repeat_request", turn=2)] if repeat else []
        items.append(
            base.model_copy(
                update={
                    "conversation_id": f"c{i}",
                    "friction": friction,
                    "meta": {"order_placed": placed} if i != 5 else {},
                }
            )
        )
    report = outcome_drivers(items, "order_placed", n_bootstrap=20)
    top = report.drivers[0]
    assert top.feature == "friction: repeat request"
    assert top.difference < -0.4 and top.difference_ci[1] < 0 and top.coefficient < 0
    assert top.coefficient_ci[1] < 0 and top.p_value < 1e-6
    assert report.skipped == ["c5"] and report.n_conversations == 119
    with pytest.raises(ValueError, match="both outcomes"):
        outcome_drivers(items[:3], "order_placed")
    with pytest.raises(ValueError, match="status must be one of"):
        outcome_drivers(items, "status=happy")


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ("Sorry about that, I have refunded the duplicate charge.", "resolved"),
        ("We've now cancelled the subscription for you.", "resolved"),
        ("I have no record of that charge, sorry.", "unknown"),
    ],
)
def test_first_person_completion_resolves(reply: str, status: str) -> None:
    a = hashing_analyzer().analyze(
        conv([("customer", "I was charged twice for my order."), ("agent", reply)])
    )
    assert a.scene.outcome.status == status
    if status == "resolved":
        assert a.scene.outcome.evidence_turns == [1]
