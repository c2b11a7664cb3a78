"""Regex redaction of personal data, run on every turn before any analysis sees the text.

Recognisers (in the order they run, so a card number is not also counted as a phone number):

- ``EMAIL``: ``name@domain.tld``;
- ``CARD``: 13 to 19 digits, optionally grouped by spaces or dashes, that pass the Luhn check;
- ``IBAN``: two letters, two check digits and 11 to 30 alphanumerics;
- ``SSN``: ``123-45-6789``;
- ``ACCOUNT``: a run of 6 to 20 digits (dashes allowed) after the words account, acct, member,
  policy, customer, routing or sort code, optionally followed by number/no/num/id, "is", ":" or
  "#" (the keyword is kept, the number replaced);
- ``PHONE``: groups of digits separated by spaces, dots or dashes (an optional ``+country`` and
  ``(area)``) with 10 to 15 digits in all, or 7 digits written as ``555-1234``.

Each match is replaced by ``[TYPE]``. This is pattern matching, not named-entity recognition:
person names and street addresses are not found (a spaCy-based tool such as Presidio would be
needed, and its models are not on PyPI).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eightfold.conversation.schema import Conversation

__all__ = ["REDACTION_TYPES", "luhn_valid", "redact_conversation", "redact_text"]


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that payment card numbers satisfy."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


@dataclass(frozen=True)
class _Recogniser:
    kind: str
    pattern: re.Pattern[str]
    accept: Callable[[re.Match[str]], bool] | None = None
    # Only this group is replaced; text before it (the keyword that triggered the match) is kept.
    group: int = 0


def _card_ok(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone_ok(match: re.Match[str]) -> bool:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    # Seven digits only in the 555-1234 shape: other 7-digit groupings are usually quantities.
    if len(digits) == 7:
        return re.fullmatch(r"\d{3}[.-]\d{4}", text) is not None
    return 10 <= len(digits) <= 15


_RECOGNISERS: tuple[_Recogniser, ...] = (
    _Recogniser("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    _Recogniser("CARD", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card_ok),
    _Recogniser("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    _Recogniser("SSN", re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")),
    _Recogniser(
        "ACCOUNT",
        re.compile(
            r"(?i)(\b(?:account|acct|member|policy|customer|routing|sort code)"
            r"(?:\s+(?:number|no\.?|num|id))?\s*(?:is\s+)?[:#]{0,2}\s*)(\d[\d-]{4,18}\d)(?![\d-])"
        ),
        group=2,
    ),
    _Recogniser(
        "PHONE",
        re.compile(
            r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"
            r"(?![\w-]|\.\d)"
            r"|(?<![\w+])\+?\d{10,15}(?!\w)"
        ),
        _phone_ok,
    ),
)

REDACTION_TYPES: tuple[str, ...] = tuple(r.kind for r in _RECOGNISERS)


def redact_text(text: str) -> tuple[str, Counter[str]]:
    """Replace personal data in ``text`` by ``[TYPE]`` placeholders.

    Returns
    -------
    (str, Counter)
        The redacted text and how many spans of each type were replaced.

    Examples
    --------
    >>> redact_text("mail me at ann@example.com")[0]
    'mail me at [EMAIL]'
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    counts: Counter[str] = Counter()
    for recogniser in _RECOGNISERS:

        def replace(match: re.Match[str], rec: _Recogniser = recogniser) -> str:
            if rec.accept is not None and not rec.accept(match):
                return match.group(0)
            counts[rec.kind] += 1
            if rec.group == 0:
                return f"[{rec.kind}]"
            keep = match.start(rec.group) - match.start(0)
            return match.group(0)[:keep] + f"[{rec.kind}]"

        text = recogniser.pattern.sub(replace, text)
    return text, counts


def _redact_value(value: Any, totals: Counter[str]) -> Any:
    """Redact every string inside ``value`` (nested dicts and lists included)."""
    if isinstance(value, str):
        text, counts = redact_text(value)
        totals.update(counts)
        return text
    if isinstance(value, dict):
        return {key: _redact_value(item, totals) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item, totals) for item in value]
    return value


def redact_conversation(conversation: Conversation) -> Conversation:
    """A copy of ``conversation`` with every turn's text, speaker name and metadata redacted.

    String values in the conversation's and each turn's ``meta`` are redacted too, since they are
    copied into the analysis output. The input is not modified. ``redactions`` of the copy holds
    the counts per type, added to any counts already there.
    """
    totals: Counter[str] = Counter(conversation.redactions)
    turns = []
    for turn in conversation.turns:
        text, counts = redact_text(turn.text)
        speaker, speaker_counts = redact_text(turn.speaker)
        totals.update(counts)
        totals.update(speaker_counts)
        meta = _redact_value(turn.meta, totals)
        turns.append(turn.model_copy(update={"text": text, "speaker": speaker, "meta": meta}))
    meta = _redact_value(conversation.meta, totals)
    return conversation.model_copy(
        update={"turns": turns, "meta": meta, "redactions": dict(totals), "redacted": True}
    )
