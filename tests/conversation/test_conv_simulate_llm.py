"""Step 4 simulation, and the LLM backend against a local fake OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest

from eightfold.conversation import (
    EndpointAgent,
    LLMAnalyzer,
    LLMCustomer,
    RuleAgent,
    Scenario,
    TemplateCustomer,
    evaluate_simulations,
    scenario_from_analysis,
    simulate,
    template_batch,
)
from eightfold.llm import LLMClient, LLMConfig
from tests.conversation.conv_fixtures import FRUSTRATED, ORDER_OK, conv, hashing_analyzer
from tests.fake_openai import FakeReply, fake_openai

LATTE = Scenario(
    intent="place_order", request="I'd like a latte", slots={"size": "large", "milk": "oat milk"}
)


def test_template_simulation_is_seeded_and_reaches_goal() -> None:
    first = template_batch([LATTE], 4, seed=3, disclose=0.0)
    again = template_batch([LATTE], 4, seed=3, disclose=0.0)
    assert [c.model_dump() for c in first] == [c.model_dump() for c in again]
    # Nothing disclosed: ask size, ask milk, confirm, complete -> the completing agent turn is
    # turn 7, so 8 turns to the goal.
    report = evaluate_simulations(first, hashing_analyzer().analyze_many)
    assert report.success_rate == 1.0 and report.mean_turns_to_goal == 8.0
    assert report.per_intent["place_order"]["success_rate"] == 1.0
    texts = [t.text for t in first[0].turns]
    assert texts[1] == "Hello! Happy to help. Which size would you like?"
    assert texts[2] == "large, please."


def test_misunderstanding_agent_causes_friction_and_failures() -> None:
    convs = template_batch([LATTE], 12, seed=0, misunderstand=0.6, max_turns=8)
    report = evaluate_simulations(convs, hashing_analyzer().analyze_many)
    assert report.success_rate < 1.0
    assert any(e.kind == "repeat_request" for a in report.analyses for e in a.friction)


def test_scenario_validation_and_replay() -> None:
    with pytest.raises(ValueError, match="persona="):
        Scenario(intent="x", request="y", persona="rude")
    with pytest.raises(ValueError, match=r"slots\['milk'\]"):
        Scenario(intent="x", request="y", slots={"milk": ""})
    with pytest.raises(ValueError, match="misunderstand="):
        RuleAgent(["size"], misunderstand=2)
    a = hashing_analyzer().analyze(conv(FRUSTRATED))
    s = scenario_from_analysis(a)
    assert s.persona == "impatient" and s.emotion_arc[-1] in ("frustration", "anger")
    assert s.intent == a.scene.customer_goal.intent


def _extraction(n: int, **over: object) -> str:
    data = {
        "turns": [
            {
                "idx": i,
                "intent": "place_order" if i == 0 else None,
                "emotion": "joy" if i == 2 else "neutral",
                "valence": 0.6 if i == 2 else 0.0,
                "acts": ["inform"],
            }
            for i in range(n)
        ],
        "customer_goal": {"text": "a large latte", "intent": "place_order"},
        "topics": [{"label": "ordering", "turns": list(range(n))}],
        "entities": [
            {"type": "drink", "value": "latte", "turn": 0},
            {"type": "drink", "value": "mocha", "turn": 0},
        ],
        "outcome": {"status": "resolved", "evidence_turns": [3]},
        "summary": "Customer ordered a latte.",
        "customer_traits": ["polite"],
        "drivers": [
            {
                "turn": 2,
                "direction": "up",
                "cause_turns": [1],
                "quote": "One large latte",
                "explanation": "agent confirmed",
            },
            {
                "turn": 2,
                "direction": "up",
                "cause_turns": [1],
                "quote": "free cookie",
                "explanation": "invented",
            },
        ],
    }
    data.update(over)
    return json.dumps(data)


def _client(url: str) -> LLMClient:
    return LLMClient(LLMConfig(base_url=url, model="fake", backoff=0, max_retries=0))


def test_llm_backend_valid_answer_is_grounded() -> None:
    with fake_openai([_extraction(4)]) as server:
        a = LLMAnalyzer(_client(server.url), fallback=hashing_analyzer(), cache=False).analyze(
            conv(ORDER_OK)
        )
    assert len(server.requests) == 1
    assert a.backend == "llm" and a.scene.outcome.source == "llm"
    assert a.turns[0].intent is not None and a.turns[0].intent.source == "llm"
    assert a.turns[1].intent is None  # intents only on customer turns
    assert all(t.emotion.source == "llm" for t in a.turns)
    # The invented quote and the entity not in its turn are dropped, with a warning each.
    assert [x.explanation for x in a.attributions] == ["agent confirmed"]
    assert a.attributions[0].delta == 0.6 and a.attributions[0].source == "llm"
    assert [e.value for e in a.scene.entities] == ["latte"]
    assert any("free cookie" in w for w in a.warnings)
    assert any("'mocha' dropped" in w for w in a.warnings)
    # The transcript sent to the model is redacted and numbered.
    assert "[0] customer:" in server.requests[0]["messages"][1]["content"]


def test_llm_backend_repairs_once() -> None:
    replies = ["sure! here it is: {not json", _extraction(4)]
    with fake_openai(replies) as server:
        a = LLMAnalyzer(_client(server.url), fallback=hashing_analyzer(), cache=False).analyze(
            conv(ORDER_OK)
        )
    assert len(server.requests) == 2 and a.backend == "llm"
    assert "rejected" in server.requests[1]["messages"][-1]["content"]


def test_llm_backend_missing_turn_citation_then_fallback() -> None:
    bad = _extraction(4, outcome={"status": "resolved", "evidence_turns": [12]})
    with fake_openai([bad, bad]) as server:
        a = LLMAnalyzer(_client(server.url), fallback=hashing_analyzer(), cache=False).analyze(
            conv(ORDER_OK)
        )
    assert len(server.requests) == 2
    assert "do not exist" in server.requests[1]["messages"][-1]["content"]
    assert a.backend == "offline" and a.scene.outcome.source == "rules"
    assert any("offline result used" in w for w in a.warnings)


def test_llm_backend_server_down_falls_back_and_caches() -> None:
    with fake_openai([FakeReply(status=500, content="boom")]) as server:
        a = LLMAnalyzer(_client(server.url), fallback=hashing_analyzer(), cache=False).analyze(
            conv(ORDER_OK)
        )
    assert a.backend == "offline"
    # A transcript no other test sends, so the session-wide cache starts empty for it.
    cached = conv([*ORDER_OK[:3], ("agent", "Your order has been placed, cached test.")])
    with fake_openai([_extraction(4)]) as server:
        analyzer = LLMAnalyzer(_client(server.url), fallback=hashing_analyzer())
        first = analyzer.analyze(cached)
        second = analyzer.analyze(cached)
    assert len(server.requests) == 1 and first == second


def test_llm_two_agent_simulation() -> None:
    customer_lines = iter(["Hi, a large oat milk latte please.", "Yes, thanks! [END]"])
    with (
        fake_openai(lambda request: next(customer_lines)) as customer_server,
        fake_openai(["Sure, a large oat latte. Is that correct?"]) as agent_server,
    ):
        convo = simulate(
            LLMCustomer(LATTE, _client(customer_server.url)),
            EndpointAgent(_client(agent_server.url)),
            conversation_id="llm-sim",
        )
    assert [t.role for t in convo.turns] == ["customer", "agent", "customer"]
    assert convo.turns[-1].text == "Yes, thanks!"
    # The customer model sees the agent's turns as the user's.
    assert customer_server.requests[1]["messages"][-2]["role"] == "assistant"
    assert agent_server.requests[0]["messages"][-1]["role"] == "user"
    t = TemplateCustomer(LATTE, seed=0)
    assert t.reply([])[1] is False
