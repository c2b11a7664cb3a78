"""Step 3, skill enhancement: guideline checks, exemplar agent turns and training-pair export.

Guidelines
    A small rule file (JSON, or YAML when PyYAML is installed) with a list of ``rules``. Each rule
    has an ``id``, a ``description``, a ``kind`` and the fields that kind needs; ``when_intent``
    (a list of goal intents) limits it to some conversations. Patterns are Python regular
    expressions matched case-insensitively on agent turns.

    =====================  ===============================================================
    kind                   passes when
    =====================  ===============================================================
    ``require``            some agent turn matches ``pattern``
    ``forbid``             no agent turn matches ``pattern`` (each match is a violation)
    ``within_first``       one of the first ``n`` agent turns matches ``pattern``
    ``in_last``            one of the last ``n`` agent turns matches ``pattern``
    ``before``             an agent turn matching ``then`` comes after one matching ``first``
    ``respond_to_negative``  the agent's reply to each customer turn with valence at most
                           ``threshold`` matches ``pattern``
    ``max_words``          every agent turn has at most ``n`` words
    =====================  ===============================================================

Exemplars
    :class:`ExemplarIndex` holds the agent turns of successful conversations with the customer
    turn they answered; for an agent turn it returns the successful replies to the most similar
    customer turns, preferring conversations with the same goal intent.

Training pairs
    :func:`sft_pairs` (context -> agent turn of a successful conversation) and :func:`dpo_pairs`
    (chosen = exemplar, rejected = the flagged original turn), in TRL's conversational
    ``prompt``/``completion`` and ``prompt``/``chosen``/``rejected`` layouts, or the chat
    ``messages`` layout of OpenAI fine-tuning files.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from eightfold.conversation.encoder import Encoder, get_encoder
from eightfold.conversation.schema import ConversationAnalysis, TurnAnalysis
from eightfold.storage import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "Exemplar",
    "ExemplarIndex",
    "Guideline",
    "Violation",
    "check_guidelines",
    "dpo_pairs",
    "load_guidelines",
    "sft_pairs",
    "write_jsonl",
]

KINDS = (
    "require",
    "forbid",
    "within_first",
    "in_last",
    "before",
    "respond_to_negative",
    "max_words",
)
_NEEDS: dict[str, tuple[str, ...]] = {
    "require": ("pattern",),
    "forbid": ("pattern",),
    "within_first": ("pattern", "n"),
    "in_last": ("pattern", "n"),
    "before": ("first", "then"),
    "respond_to_negative": ("pattern", "threshold"),
    "max_words": ("n",),
}


@dataclass(kw_only=True)
class Guideline:
    """One rule of a guideline file (see the module docstring for the kinds)."""

    id: str
    kind: str
    description: str = ""
    pattern: str | None = None
    first: str | None = None
    then: str | None = None
    n: int | None = None
    threshold: float | None = None
    when_intent: list[str] | None = None
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"guideline id {self.id!r}: expected a non-empty string")
        if self.kind not in KINDS:
            raise ValueError(
                f"guideline {self.id!r}: kind {self.kind!r}; expected one of {', '.join(KINDS)}"
            )
        for name in _NEEDS[self.kind]:
            if getattr(self, name) is None:
                raise ValueError(
                    f"guideline {self.id!r} of kind {self.kind!r} needs the field {name!r}"
                )
        if self.n is not None and (not isinstance(self.n, int) or self.n < 1):
            raise ValueError(f"guideline {self.id!r}: n={self.n!r}; expected a positive integer")
        for name in ("pattern", "first", "then"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                self._compiled[name] = re.compile(value, re.I)
            except re.error as exc:
                raise ValueError(
                    f"guideline {self.id!r}: {name} {value!r} is not a valid regular expression "
                    f"({exc})"
                ) from None

    def match(self, name: str, text: str) -> bool:
        return self._compiled[name].search(text) is not None


@dataclass(kw_only=True)
class Violation:
    """A guideline a conversation broke; ``turn`` is the agent turn to improve (or ``None``)."""

    conversation_id: str
    rule: str
    description: str
    turn: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_guidelines(
    path: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | None = None,
) -> list[Guideline]:
    """Load guidelines from a JSON/YAML file, a list of dicts, or ``None`` for the defaults."""
    if path is None:
        data: Any = json.loads(
            resources.files("eightfold.conversation")
            .joinpath("data/guidelines.json")
            .read_text(encoding="utf-8")
        )
    elif isinstance(path, list | tuple):
        data = {"rules": list(path)}
    else:
        file = Path(path)  # type: ignore[arg-type]
        if not file.is_file():
            raise FileNotFoundError(f"guideline file {str(file)!r} does not exist")
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ImportError(
                    "reading YAML guidelines needs PyYAML (pip install pyyaml); or use JSON"
                ) from None
            data = yaml.safe_load(text)
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"guideline file {str(file)!r} is not valid JSON: {exc}") from None
    rules = data.get("rules") if isinstance(data, Mapping) else data
    if not isinstance(rules, list) or not rules:
        raise ValueError("guidelines: expected a non-empty list under the key 'rules'")
    out = []
    allowed = {
        "id",
        "kind",
        "description",
        "pattern",
        "first",
        "then",
        "n",
        "threshold",
        "when_intent",
    }
    for position, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            raise TypeError(f"guideline {position}: expected an object, got {type(rule).__name__}")
        unknown = set(rule) - allowed
        if unknown:
            raise ValueError(
                f"guideline {rule.get('id', position)!r}: unknown field(s) {sorted(unknown)}; "
                f"allowed: {sorted(allowed)}"
            )
        out.append(Guideline(**dict(rule)))
    ids = [g.id for g in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"guideline ids must be unique, got {ids}")
    return out


def check_guidelines(
    analysis: ConversationAnalysis, guidelines: Sequence[Guideline]
) -> list[Violation]:
    """Every guideline violation in one analysed conversation."""
    agent = [t for t in analysis.turns if t.role in ("agent", "bot")]
    cid = analysis.conversation_id
    out: list[Violation] = []

    def flag(g: Guideline, turn: int | None, message: str) -> None:
        out.append(
            Violation(
                conversation_id=cid,
                rule=g.id,
                description=g.description,
                turn=turn,
                message=message,
            )
        )

    for g in guidelines:
        if g.when_intent and analysis.scene.customer_goal.intent not in g.when_intent:
            continue
        if not agent:
            continue
        if g.kind == "require" and not any(g.match("pattern", t.text) for t in agent):
            flag(g, agent[-1].idx, "no agent turn matches the required pattern")
        elif g.kind == "forbid":
            for t in agent:
                if g.match("pattern", t.text):
                    flag(g, t.idx, f"turn {t.idx} matches a forbidden pattern")
        elif g.kind == "within_first":
            head = agent[: g.n]
            if not any(g.match("pattern", t.text) for t in head):
                flag(g, head[0].idx, f"none of the first {len(head)} agent turn(s) match")
        elif g.kind == "in_last":
            tail = agent[-(g.n or 1) :]
            if not any(g.match("pattern", t.text) for t in tail):
                flag(g, tail[-1].idx, f"none of the last {len(tail)} agent turn(s) match")
        elif g.kind == "before":
            done = [t for t in agent if g.match("then", t.text)]
            if done:
                first_done = done[0]
                # A confirmation question may share the completing turn ("ready soon, correct?").
                confirmed = any(g.match("first", t.text) for t in agent if t.idx <= first_done.idx)
                if not confirmed:
                    flag(
                        g,
                        first_done.idx,
                        f"turn {first_done.idx} completes without an earlier confirmation",
                    )
        elif g.kind == "respond_to_negative":
            for i, t in enumerate(analysis.turns):
                if t.role != "customer" or t.emotion.valence > (g.threshold or 0.0):
                    continue
                reply = next(
                    (r for r in analysis.turns[i + 1 :] if r.role in ("agent", "bot")), None
                )
                if reply is not None and not g.match("pattern", reply.text):
                    flag(
                        g,
                        reply.idx,
                        f"turn {reply.idx} answers a negative customer turn "
                        f"({t.emotion.valence:+.2f}) without empathy",
                    )
        elif g.kind == "max_words":
            for t in agent:
                words = len(t.text.split())
                if words > (g.n or 0):
                    flag(g, t.idx, f"turn {t.idx} has {words} words (limit {g.n})")
    return out


# --------------------------------------------------------------------------------- exemplars


def _context(turns: Sequence[TurnAnalysis], idx: int) -> str:
    """The customer turn an agent turn answers (the last one before it), or ``""``."""
    for t in reversed(turns[:idx]):
        if t.role == "customer":
            return t.text
    return ""


def default_success(analysis: ConversationAnalysis) -> bool:
    """A conversation counts as successful when step 1 found it resolved."""
    return analysis.scene.outcome.status == "resolved"


@dataclass(kw_only=True)
class Exemplar:
    """A successful agent reply usable as a model answer."""

    conversation_id: str
    turn: int
    intent: str
    context: str
    text: str
    similarity: float = 0.0


class ExemplarIndex:
    """Agent turns of successful conversations, searchable by the customer turn they answer."""

    def __init__(self, exemplars: list[Exemplar], embeddings: np.ndarray, encoder: Encoder):
        self.exemplars = exemplars
        self.embeddings = embeddings  # (n_exemplars, dim)
        self.encoder = encoder

    @classmethod
    def build(
        cls,
        analyses: Sequence[ConversationAnalysis],
        *,
        encoder: str | Encoder = "minilm",
        success: Callable[[ConversationAnalysis], bool] = default_success,
        guidelines: Sequence[Guideline] = (),
    ) -> ExemplarIndex:
        """Index the agent turns of successful conversations that break no guideline there."""
        enc = get_encoder(encoder)
        items: list[Exemplar] = []
        for a in analyses:
            if not success(a):
                continue
            flagged = {v.turn for v in check_guidelines(a, guidelines)} if guidelines else set()
            for t in a.turns:
                if t.role not in ("agent", "bot") or t.idx in flagged or not t.text.strip():
                    continue
                context = _context(a.turns, t.idx)
                if context:
                    items.append(
                        Exemplar(
                            conversation_id=a.conversation_id,
                            turn=t.idx,
                            intent=a.scene.customer_goal.intent,
                            context=context,
                            text=t.text,
                        )
                    )
        embeddings = enc.encode([e.context for e in items])
        logger.info("exemplar index: %d agent turns from successful conversations", len(items))
        return cls(items, embeddings, enc)

    def __len__(self) -> int:
        return len(self.exemplars)

    def search(
        self,
        context: str,
        *,
        intent: str | None = None,
        k: int = 3,
        exclude_conversation: str | None = None,
    ) -> list[Exemplar]:
        """The ``k`` exemplars whose customer context is most similar to ``context``.

        Exemplars with the same ``intent`` come first; others fill the list only when fewer than
        ``k`` share it.
        """
        if not self.exemplars:
            return []
        query = self.encoder.encode([context])[0]
        sims = self.embeddings @ query  # (n_exemplars,)
        order = np.argsort(-sims, kind="stable")
        same = [i for i in order if self.exemplars[i].intent == intent]
        rest = [i for i in order if self.exemplars[i].intent != intent]
        out = []
        for i in same + rest:
            e = self.exemplars[i]
            if e.conversation_id == exclude_conversation:
                continue
            out.append(Exemplar(**{**e.__dict__, "similarity": round(float(sims[i]), 4)}))
            if len(out) == k:
                break
        return out


# --------------------------------------------------------------------------------- export

PairFormat = Literal["trl", "messages"]
_CHAT_ROLE = {"customer": "user", "agent": "assistant", "bot": "assistant", "system": "system"}


def _history(turns: Sequence[TurnAnalysis], idx: int, system: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    for t in turns[:idx]:
        role = _CHAT_ROLE.get(t.role)
        if role is not None and t.text.strip():
            messages.append({"role": role, "content": t.text})
    return messages


def sft_pairs(
    analyses: Sequence[ConversationAnalysis],
    *,
    success: Callable[[ConversationAnalysis], bool] = default_success,
    guidelines: Sequence[Guideline] = (),
    format: PairFormat = "trl",
    system: str | None = None,
) -> list[dict[str, Any]]:
    """Supervised pairs: the history before each agent turn of a successful conversation, and
    that turn (turns that break a guideline are left out).

    ``format="trl"`` gives ``{"prompt": [messages], "completion": [assistant message]}``;
    ``"messages"`` gives ``{"messages": [... , assistant message]}``.
    """
    if format not in ("trl", "messages"):
        raise ValueError(f"format={format!r}; expected 'trl' or 'messages'")
    out = []
    for a in analyses:
        if not success(a):
            continue
        flagged = {v.turn for v in check_guidelines(a, guidelines)} if guidelines else set()
        for t in a.turns:
            if t.role not in ("agent", "bot") or t.idx in flagged:
                continue
            prompt = _history(a.turns, t.idx, system)
            if not any(m["role"] == "user" for m in prompt):
                continue
            answer = {"role": "assistant", "content": t.text}
            if format == "trl":
                out.append(
                    {
                        "prompt": prompt,
                        "completion": [answer],
                        "meta": {"conversation_id": a.conversation_id, "turn": t.idx},
                    }
                )
            else:
                out.append({"messages": [*prompt, answer]})
    return out


def dpo_pairs(
    analyses: Sequence[ConversationAnalysis],
    index: ExemplarIndex,
    *,
    guidelines: Sequence[Guideline] = (),
    success: Callable[[ConversationAnalysis], bool] = default_success,
    min_similarity: float = 0.5,
    system: str | None = None,
) -> list[dict[str, Any]]:
    """Preference pairs for flagged agent turns: chosen = the best exemplar reply, rejected = the
    original turn.

    A turn is flagged when it breaks a guideline, or when it is the last agent turn of an
    unsuccessful conversation. The exemplar's customer context must reach ``min_similarity``
    (cosine) to the flagged turn's, so the chosen reply answers a comparable request.
    Layout: TRL conversational ``{"prompt", "chosen", "rejected"}``.
    """
    out = []
    for a in analyses:
        targets: dict[int, list[str]] = {}
        for v in check_guidelines(a, guidelines) if guidelines else []:
            if v.turn is not None:
                targets.setdefault(v.turn, []).append(f"guideline {v.rule}")
        if not success(a):
            agent = [t for t in a.turns if t.role in ("agent", "bot")]
            if agent:
                targets.setdefault(agent[-1].idx, []).append(f"outcome {a.scene.outcome.status}")
        for idx, reasons in sorted(targets.items()):
            reason = "; ".join(reasons)
            context = _context(a.turns, idx)
            if not context:
                continue
            best = index.search(
                context,
                intent=a.scene.customer_goal.intent,
                k=1,
                exclude_conversation=a.conversation_id,
            )
            if not best or best[0].similarity < min_similarity:
                continue
            if best[0].text.strip() == a.turns[idx].text.strip():
                continue
            out.append(
                {
                    "prompt": _history(a.turns, idx, system),
                    "chosen": [{"role": "assistant", "content": best[0].text}],
                    "rejected": [{"role": "assistant", "content": a.turns[idx].text}],
                    "meta": {
                        "conversation_id": a.conversation_id,
                        "turn": idx,
                        "reason": reason,
                        "exemplar": f"{best[0].conversation_id}#{best[0].turn}",
                        "similarity": best[0].similarity,
                    },
                }
            )
    return out


def write_jsonl(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows as JSON Lines, atomically."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return atomic_write_text(path, text)
