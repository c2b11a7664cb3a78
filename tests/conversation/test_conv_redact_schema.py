"""Redaction recognisers and the analysis schema."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from eightfold.conversation import ConversationAnalysis, analysis_json_schema, redact_text
from eightfold.conversation.redact import luhn_valid, redact_conversation
from tests.conversation.conv_fixtures import ORDER_OK, conv, hashing_analyzer


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to ann.lee@example.co.uk today", "write to [EMAIL] today", "EMAIL"),
        ("call 415-555-0132 now", "call [PHONE] now", "PHONE"),
        ("or +44 20 7946 0958", "or [PHONE]", "PHONE"),
        ("(415) 555-0132", "[PHONE]", "PHONE"),
        ("card 4111 1111 1111 1111 please", "card [CARD] please", "CARD"),
        ("card 4111-1111-1111-1111", "card [CARD]", "CARD"),
        ("my account number is 12345678", "my account number is [ACCOUNT]", "ACCOUNT"),
        ("acct #: 998877665", "acct #: [ACCOUNT]", "ACCOUNT"),
        ("ssn 123-45-6789", "ssn [SSN]", "SSN"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "IBAN [IBAN]", "IBAN"),
    ],
)
def test_recognisers(text: str, expected: str, kind: str) -> None:
    redacted, counts = redact_text(text)
    assert redacted == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "I want 2 shots and 12 oz",
        "order 28740 is ready",
        "it is 10.30 am on 2024-03-19",
        "price 3.50 for 2 items",
        "card 4111 1111 1111 1112",  # fails the Luhn check
        "version 1.2.3.4",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert redact_text(text) == (text, {})


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("12a4")


def test_redact_conversation_copies() -> None:
    original = conv([("customer", "mail me: a@b.io"), ("agent", "ok, call 415-555-0132?")])
    redacted = redact_conversation(original)
    assert original.turns[0].text == "mail me: a@b.io" and not original.redacted
    assert redacted.redacted and redacted.redactions == {"EMAIL": 1, "PHONE": 1}
    assert "[EMAIL]" in redacted.turns[0].text
    with pytest.raises(TypeError, match="expected str"):
        redact_text(None)  # type: ignore[arg-type]


def test_analysis_round_trip_and_schema() -> None:
    analysis = hashing_analyzer().analyze(conv(ORDER_OK))
    again = ConversationAnalysis.model_validate_json(analysis.model_dump_json())
    assert again == analysis
    schema = analysis_json_schema()
    assert {"conversation_id", "turns", "scene"} <= set(schema["properties"])
    assert "TurnAnalysis" in json.dumps(schema)


def test_schema_rejects_citations_of_missing_turns() -> None:
    data = hashing_analyzer().analyze(conv(ORDER_OK)).model_dump(mode="json")
    data["scene"]["outcome"]["evidence_turns"] = [9]
    with pytest.raises(ValidationError, match="cites turn 9"):
        ConversationAnalysis.model_validate(data)
    data["scene"]["outcome"]["evidence_turns"] = []
    data["turns"][0]["emotion"]["source"] = "guess"
    with pytest.raises(ValidationError):
        ConversationAnalysis.model_validate(data)
