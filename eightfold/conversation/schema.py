"""The one schema every conversation-analysis backend fills.

Input conversations (:class:`Conversation`) and analysis results (:class:`ConversationAnalysis`)
are pydantic models, so the offline backend, the LLM backend and any file read back from disk are
validated the same way. :func:`analysis_json_schema` exports the result schema as JSON Schema.

Every label carries a ``source`` field (``rules``, ``vader``, ``embed``, ``metadata`` or ``llm``)
so offline and LLM labels are never mixed silently.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "ACTS",
    "EMOTIONS",
    "OUTCOMES",
    "ROLES",
    "Attribution",
    "Conversation",
    "ConversationAnalysis",
    "Emotion",
    "Entity",
    "FrictionEvent",
    "Goal",
    "Label",
    "Metrics",
    "Outcome",
    "Participant",
    "Profile",
    "Scene",
    "Topic",
    "Turn",
    "TurnAnalysis",
    "analysis_json_schema",
]

Role = Literal["customer", "agent", "bot", "system", "action"]
ParticipantRole = Literal["customer", "agent", "bot", "system"]
EmotionLabel = Literal[
    "neutral", "joy", "anger", "sadness", "fear", "surprise", "disgust", "frustration"
]
OutcomeStatus = Literal["resolved", "unresolved", "escalated", "abandoned", "unknown"]
Source = Literal["rules", "vader", "embed", "metadata", "llm"]
Act = Literal[
    "greeting",
    "question",
    "request",
    "inform",
    "confirm",
    "deny",
    "apology",
    "thanks",
    "closing",
    "hold",
    "transfer",
]

ROLES: tuple[str, ...] = ("customer", "agent", "bot", "system", "action")
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "joy",
    "anger",
    "sadness",
    "fear",
    "surprise",
    "disgust",
    "frustration",
)
OUTCOMES: tuple[str, ...] = ("resolved", "unresolved", "escalated", "abandoned", "unknown")
ACTS: tuple[str, ...] = (
    "greeting",
    "question",
    "request",
    "inform",
    "confirm",
    "deny",
    "apology",
    "thanks",
    "closing",
    "hold",
    "transfer",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------------- input


class Turn(_Model):
    """One turn of an input conversation.

    ``role`` is the normalised role; ``speaker`` keeps the name found in the input.
    ``ts`` is seconds from any origin (only differences are used).
    """

    idx: int = Field(ge=0)
    speaker: str = Field(min_length=1)
    role: Role
    text: str
    ts: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Conversation(_Model):
    """A conversation as read by :mod:`eightfold.conversation.ingest`.

    ``meta`` holds business metadata (``resolved``, ``csat``, ``order_placed``, ``intent``...)
    that step 2 can use as outcome labels; ``redacted`` says whether the redaction stage ran and
    ``redactions`` counts what it replaced; ``warnings`` records documented handling (truncated
    turns, for example).
    """

    id: str = Field(min_length=1)
    turns: list[Turn] = Field(min_length=1)
    meta: dict[str, Any] = Field(default_factory=dict)
    redacted: bool = False
    redactions: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _indices_in_order(self) -> Conversation:
        for position, turn in enumerate(self.turns):
            if turn.idx != position:
                raise ValueError(
                    f"conversation {self.id!r}: turn at position {position} has idx {turn.idx}; "
                    "turn indices must be 0, 1, 2, ... in order"
                )
        return self


# ----------------------------------------------------------------------------------- output


class Label(_Model):
    """A label with its confidence and the backend that produced it."""

    label: str
    score: float
    source: Source


class Emotion(_Model):
    """Emotion of a turn; ``valence`` is in [-1, 1] (VADER compound score offline)."""

    label: EmotionLabel
    valence: float = Field(ge=-1.0, le=1.0)
    source: Source


class TurnAnalysis(_Model):
    """Step 1 output for one turn."""

    idx: int = Field(ge=0)
    speaker: str
    role: Role
    text: str
    intent: Label | None = None
    emotion: Emotion
    acts: list[Act] = Field(default_factory=list)


class Profile(_Model):
    traits: list[str] = Field(default_factory=list)
    expertise: str | None = None


class Participant(_Model):
    id: str
    role: ParticipantRole
    profile: Profile = Field(default_factory=Profile)


class Topic(_Model):
    label: str
    turns: list[int]


class Goal(_Model):
    text: str
    intent: str
    source: Source = "rules"


class Entity(_Model):
    type: str
    value: str
    turn: int = Field(ge=0)


class Outcome(_Model):
    status: OutcomeStatus
    evidence_turns: list[int] = Field(default_factory=list)
    source: Source


class Metrics(_Model):
    """Conversation metrics.

    ``talk_share`` is the share of words per role; ``sentiment_start`` and ``sentiment_end`` are
    the valence of the first and last customer turns.
    """

    n_turns: int
    talk_share: dict[str, float]
    sentiment_start: float
    sentiment_end: float
    repeat_requests: int
    transfers: int
    apologies: int
    avg_response_gap_s: float | None = None


class Scene(_Model):
    """Step 1 output for the whole conversation."""

    topics: list[Topic] = Field(default_factory=list)
    customer_goal: Goal
    entities: list[Entity] = Field(default_factory=list)
    summary: str
    outcome: Outcome
    metrics: Metrics


FrictionKind = Literal[
    "repeat_request",
    "transfer",
    "long_gap",
    "unanswered_question",
    "agent_apology",
    "negative_answer",
    "hold",
]


class FrictionEvent(_Model):
    """Something that tends to hurt a conversation, found at turn ``turn``."""

    kind: FrictionKind
    turn: int = Field(ge=0)
    detail: str = ""


class Attribution(_Model):
    """Why the customer's sentiment changed at ``turn``.

    ``cause_turns`` are the turns before the change that it is attributed to; ``quote`` is a span
    of the first cause turn (checked to occur in it); ``events`` are the friction events between
    the previous customer turn and ``turn``.
    """

    turn: int = Field(ge=0)
    delta: float
    direction: Literal["up", "down"]
    cause_turns: list[int]
    quote: str = ""
    events: list[FrictionEvent] = Field(default_factory=list)
    explanation: str = ""
    source: Source


class ConversationAnalysis(_Model):
    """Everything steps 1 and 2 found in one conversation."""

    conversation_id: str
    participants: list[Participant]
    turns: list[TurnAnalysis]
    scene: Scene
    friction: list[FrictionEvent] = Field(default_factory=list)
    attributions: list[Attribution] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    backend: Literal["offline", "llm"] = "offline"
    warnings: list[str] = Field(default_factory=list)

    @field_validator("turns")
    @classmethod
    def _turns_in_order(cls, turns: list[TurnAnalysis]) -> list[TurnAnalysis]:
        for position, turn in enumerate(turns):
            if turn.idx != position:
                raise ValueError(f"turn at position {position} has idx {turn.idx}")
        return turns

    @model_validator(mode="after")
    def _cited_turns_exist(self) -> ConversationAnalysis:
        # A citation to a turn that does not exist is a hallucination; refuse it at the schema
        # level so no backend can produce one.
        n = len(self.turns)
        cited: list[tuple[str, int]] = []
        cited += [("topic", i) for topic in self.scene.topics for i in topic.turns]
        cited += [("entity", e.turn) for e in self.scene.entities]
        cited += [("outcome evidence", i) for i in self.scene.outcome.evidence_turns]
        cited += [("friction", f.turn) for f in self.friction]
        for a in self.attributions:
            cited += [("attribution", a.turn)] + [("attribution cause", i) for i in a.cause_turns]
        for what, i in cited:
            if not 0 <= i < n:
                raise ValueError(
                    f"{what} cites turn {i}, but the conversation has turns 0..{n - 1}"
                )
        return self

    def customer_valence(self) -> list[tuple[int, float]]:
        """``(turn idx, valence)`` of every customer turn, in order."""
        return [(t.idx, t.emotion.valence) for t in self.turns if t.role == "customer"]


def analysis_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`ConversationAnalysis`."""
    return ConversationAnalysis.model_json_schema()
