"""Hand-made conversations and analyses shared by the conversation tests."""

from __future__ import annotations

from typing import Any

from eightfold.conversation import Analyzer, AnalyzerConfig, Conversation, conversation_from_dict

_ANALYZER: Analyzer | None = None


def hashing_analyzer() -> Analyzer:
    """One offline analyzer with the model-free encoder, shared by the tests of a session."""
    global _ANALYZER
    if _ANALYZER is None:
        _ANALYZER = Analyzer(AnalyzerConfig(encoder="hashing"))
    return _ANALYZER


def conv(
    turns: list[tuple[str, str]] | list[tuple[str, str, float]], cid: str = "c1", **meta: Any
) -> Conversation:
    """A conversation from ``(speaker, text[, ts])`` tuples."""
    rows = []
    for t in turns:
        row: dict[str, Any] = {"speaker": t[0], "text": t[1]}
        if len(t) > 2:
            row["ts"] = t[2]  # type: ignore[misc]
        rows.append(row)
    return conversation_from_dict({"id": cid, "turns": rows, **meta})


ORDER_OK = [
    ("customer", "Hi, I'd like to order a large latte please."),
    ("agent", "Hello! One large latte, is that correct?"),
    ("customer", "Yes, that's right."),
    ("agent", "Great, your order has been placed and will be ready in five minutes."),
]

FRUSTRATED = [
    ("customer", "I want a refund for the double charge.", 0.0),
    ("agent", "Can you give me your account number?", 10.0),
    ("customer", "It is on the order. Please refund the double charge.", 20.0),
    ("agent", "I can't find that charge on the account.", 200.0),
    ("customer", "I already told you! This is ridiculous, terrible service.", 210.0),
]
