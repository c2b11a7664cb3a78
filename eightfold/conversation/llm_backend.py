"""The LLM backend of steps 1 and 2: one structured-extraction call per conversation.

The model gets the numbered, redacted transcript and must answer with one JSON object matching
:class:`LLMExtraction` (per-turn intent, emotion, valence and acts; goal, topics, entities,
outcome with evidence turns, summary, customer traits; sentiment drivers with cited turns and a
verbatim quote). The reply is validated by pydantic, including that every cited turn exists; a
reply that fails is sent back once with the error (:meth:`eightfold.llm.LLMClient.chat_json`),
and if it fails again, or the server cannot be reached, the offline result is returned with a
warning. Drivers whose quote does not occur in a cited turn, and entities whose value does not
occur in their turn, are dropped (and the drop is recorded in ``warnings``).

Labels filled by the model carry ``source="llm"``; metrics and friction events are always
computed by the offline rules, so they are comparable across backends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from eightfold.conversation.causality import ground_attributions
from eightfold.conversation.redact import redact_conversation
from eightfold.conversation.scene import AnalysisError, Analyzer
from eightfold.conversation.schema import (
    Act,
    Attribution,
    Conversation,
    ConversationAnalysis,
    Emotion,
    EmotionLabel,
    Entity,
    Goal,
    Label,
    Outcome,
    OutcomeStatus,
    Participant,
    Profile,
    Scene,
    Topic,
)
from eightfold.storage import atomic_write_json, cache_dir, settings_key

logger = logging.getLogger(__name__)

__all__ = ["LLMAnalyzer", "LLMExtraction", "extraction_schema"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LLMTurn(_Strict):
    idx: int
    intent: str | None = None
    emotion: EmotionLabel = "neutral"
    valence: float = Field(0.0, ge=-1.0, le=1.0)
    acts: list[Act] = Field(default_factory=list)


class LLMGoal(_Strict):
    text: str
    intent: str


class LLMTopic(_Strict):
    label: str
    turns: list[int]


class LLMEntity(_Strict):
    type: str
    value: str
    turn: int


class LLMOutcome(_Strict):
    status: OutcomeStatus
    evidence_turns: list[int] = Field(default_factory=list)


class LLMDriver(_Strict):
    turn: int = Field(description="the customer turn where sentiment changed")
    direction: Literal["up", "down"]
    cause_turns: list[int] = Field(min_length=1, description="earlier turns that caused it")
    quote: str = Field(description="a verbatim span copied from the first cause turn")
    explanation: str


class LLMExtraction(_Strict):
    """What the model must return for one conversation."""

    n_turns: ClassVar[int] = 0

    turns: list[LLMTurn]
    customer_goal: LLMGoal
    topics: list[LLMTopic] = Field(default_factory=list)
    entities: list[LLMEntity] = Field(default_factory=list)
    outcome: LLMOutcome
    summary: str
    customer_traits: list[str] = Field(default_factory=list)
    drivers: list[LLMDriver] = Field(default_factory=list)

    @model_validator(mode="after")
    def _turns_exist(self) -> LLMExtraction:
        n = type(self).n_turns
        if not n:
            return self
        indices = sorted(t.idx for t in self.turns)
        if indices != list(range(n)):
            raise ValueError(
                f"'turns' must label every turn exactly once, idx 0..{n - 1}; got {indices}"
            )
        cited = [i for topic in self.topics for i in topic.turns]
        cited += [e.turn for e in self.entities] + list(self.outcome.evidence_turns)
        cited += [i for d in self.drivers for i in (d.turn, *d.cause_turns)]
        bad = sorted({i for i in cited if not 0 <= i < n})
        if bad:
            raise ValueError(f"cited turn(s) {bad} do not exist; valid turns are 0..{n - 1}")
        return self


def extraction_schema(n_turns: int) -> type[LLMExtraction]:
    """:class:`LLMExtraction` bound to a conversation of ``n_turns`` turns."""
    return type(f"LLMExtraction{n_turns}", (LLMExtraction,), {"n_turns": n_turns})


_SYSTEM = (
    "You analyse customer-service conversations. Read the numbered transcript and fill the "
    "JSON object described by the schema. Label every turn once (intent as a short snake_case "
    "label such as place_order or refund_request, only for customer turns; emotion; valence "
    "from -1 to 1; dialogue acts). Cite turns only by their numbers in the transcript. For each "
    "clear change in the customer's sentiment add a driver whose quote is copied verbatim from "
    "its first cause turn. Use only information in the transcript."
)


class LLMAnalyzer:
    """Scene reconstruction by an LLM, validated, repaired once, else the offline result.

    Parameters
    ----------
    client
        An :class:`eightfold.llm.LLMClient`.
    fallback
        The offline :class:`Analyzer` (used for metrics, friction and as the fallback).
    cache
        Keep validated replies on disk, keyed by the prompt and model, so a rerun costs nothing.
    """

    backend: Literal["llm"] = "llm"

    def __init__(self, client: Any, *, fallback: Analyzer | None = None, cache: bool = True):
        if not callable(getattr(client, "chat_json", None)):
            raise TypeError(
                f"client: expected an eightfold.llm.LLMClient, got {type(client).__name__}"
            )
        self.client = client
        self.fallback = fallback or Analyzer()
        self.cache = cache

    def analyze(self, conversation: Conversation) -> ConversationAnalysis:
        conv = conversation if conversation.redacted else redact_conversation(conversation)
        offline = self.fallback.analyze(conv)
        schema = extraction_schema(len(conv.turns))
        messages = [
            {"role": "system", "content": _SYSTEM},
            {
                "role": "user",
                "content": "\n".join(f"[{t.idx}] {t.role}: {t.text}" for t in conv.turns),
            },
        ]
        key = settings_key(
            {
                "model": getattr(getattr(self.client, "config", None), "model", ""),
                "messages": messages,
            },
            length=24,
        )
        cached = cache_dir("conversation-llm") / f"{key}.json" if self.cache else None
        extraction: LLMExtraction | None = None
        if cached is not None and cached.is_file():
            try:
                extraction = schema.model_validate_json(cached.read_text(encoding="utf-8"))
            except ValidationError:
                extraction = None
        if extraction is None:
            from eightfold.llm import LLMError

            try:
                extraction = self.client.chat_json(messages, schema)
            except LLMError as exc:
                logger.warning(
                    "%s: LLM analysis failed (%s); using the offline result",
                    conv.id,
                    str(exc).splitlines()[0],
                )
                return offline.model_copy(
                    update={
                        "warnings": [
                            *offline.warnings,
                            f"LLM backend failed, offline result used: {exc}",
                        ]
                    }
                )
            if cached is not None:
                atomic_write_json(cached, extraction.model_dump(mode="json"))
        return self._merge(conv, offline, extraction)

    def analyze_many(
        self,
        conversations: Iterable[Conversation],
        *,
        on_error: Literal["raise", "collect"] = "collect",
    ) -> tuple[list[ConversationAnalysis], list[AnalysisError]]:
        """Analyse conversations one LLM call each; failures are collected (or raised)."""
        results: list[ConversationAnalysis] = []
        errors: list[AnalysisError] = []
        for conv in conversations:
            try:
                results.append(self.analyze(conv))
            except Exception as exc:
                err = AnalysisError(str(getattr(conv, "id", "?")), f"{type(exc).__name__}: {exc}")
                if on_error == "raise":
                    raise err from exc
                errors.append(err)
        return results, errors

    def _merge(
        self, conv: Conversation, offline: ConversationAnalysis, x: LLMExtraction
    ) -> ConversationAnalysis:
        warnings = list(offline.warnings)
        by_idx = {t.idx: t for t in x.turns}
        turns = []
        for t in offline.turns:
            label = by_idx[t.idx]
            intent = (
                Label(label=label.intent, score=1.0, source="llm")
                if t.role == "customer" and label.intent
                else None
            )
            turns.append(
                t.model_copy(
                    update={
                        "intent": intent,
                        "emotion": Emotion(
                            label=label.emotion, valence=label.valence, source="llm"
                        ),
                        "acts": list(dict.fromkeys(label.acts)),
                    }
                )
            )
        entities = []
        for e in x.entities:
            if e.value.lower() in conv.turns[e.turn].text.lower():
                entities.append(Entity(type=e.type, value=e.value, turn=e.turn))
            else:
                warnings.append(f"LLM entity {e.value!r} dropped: not in turn {e.turn}")
        drivers = [
            Attribution(
                turn=d.turn,
                delta=0.0,
                direction=d.direction,
                cause_turns=d.cause_turns,
                quote=d.quote,
                explanation=d.explanation,
                source="llm",
                events=[f for f in offline.friction if f.turn in (d.turn, *d.cause_turns)],
            )
            for d in x.drivers
        ]
        kept, dropped = ground_attributions(drivers, conv.turns)
        warnings += dropped
        # The valence jump is measured on the model's own labels, so it is comparable to the
        # offline delta without mixing the two sources.
        valence = {t.idx: t.emotion.valence for t in turns}
        kept = [
            a.model_copy(update={"delta": round(valence[a.turn] - valence[a.cause_turns[-1]], 4)})
            for a in kept
        ]
        participants = [
            p
            if p.role != "customer"
            else Participant(id=p.id, role=p.role, profile=Profile(traits=list(x.customer_traits)))
            for p in offline.participants
        ]
        scene = Scene(
            topics=[Topic(label=t.label, turns=t.turns) for t in x.topics],
            customer_goal=Goal(
                text=x.customer_goal.text, intent=x.customer_goal.intent, source="llm"
            ),
            entities=entities,
            summary=x.summary,
            outcome=Outcome(
                status=x.outcome.status, evidence_turns=x.outcome.evidence_turns, source="llm"
            ),
            metrics=offline.scene.metrics,
        )
        return ConversationAnalysis(
            conversation_id=conv.id,
            participants=participants,
            turns=turns,
            scene=scene,
            friction=offline.friction,
            attributions=kept,
            meta=conv.meta,
            backend="llm",
            warnings=warnings,
        )
