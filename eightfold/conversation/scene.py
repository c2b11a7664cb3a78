"""Step 1, scene reconstruction, offline: rules, VADER and a sentence encoder.

Per turn: dialogue acts (rules), valence (VADER compound score) and an emotion label (valence plus
a small keyword lexicon), and for customer turns an intent matched against a catalogue with the
sentence encoder. Per conversation: participants with profile traits, the customer's goal, topics
(runs of the same customer intent), entities (patterns and an optional lexicon), the outcome with
its evidence turns, a template summary, metrics, friction events and attributed sentiment changes
(step 2, :mod:`eightfold.conversation.causality`).

Every label records its source: ``rules``, ``vader``, ``embed`` or ``metadata``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from eightfold.conversation.causality import attribute_changes, find_friction
from eightfold.conversation.encoder import Encoder, get_encoder
from eightfold.conversation.intents import IntentCatalogue, IntentMatcher, load_catalogue
from eightfold.conversation.redact import redact_conversation
from eightfold.conversation.schema import (
    OUTCOMES,
    Conversation,
    ConversationAnalysis,
    Emotion,
    Entity,
    FrictionEvent,
    Goal,
    Label,
    Metrics,
    Outcome,
    Participant,
    Profile,
    Scene,
    Topic,
    TurnAnalysis,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AnalysisError",
    "Analyzer",
    "AnalyzerConfig",
    "analyze",
    "dialogue_acts",
    "emotion_of",
]

# Intents that answer the agent rather than state what the customer came for.
RESPONSE_INTENTS = frozenset(
    {"greeting", "thanks_goodbye", "confirm", "deny", "provide_info", "other"}
)

_ACT_PATTERNS: dict[str, re.Pattern[str]] = {
    "greeting": re.compile(
        r"^\W*(hi|hello|hey|good (morning|afternoon|evening)|welcome|greetings)\b", re.I
    ),
    "apology": re.compile(r"\b(sorry|apolog\w*|my bad|regret)\b", re.I),
    "thanks": re.compile(r"\b(thanks?|thank you|thx|appreciate)\b", re.I),
    "closing": re.compile(
        r"\b(bye|goodbye|have a (nice|good|great) (day|one|evening)|take care|see you)\b", re.I
    ),
    "confirm": re.compile(
        r"^\W*(yes|yeah|yep|yup|sure|correct|right|ok(ay)?|exactly|that'?s (right|correct)|"
        r"sounds good|perfect|great|go ahead)\b",
        re.I,
    ),
    "deny": re.compile(r"^\W*(no|nope|nah|not really|that'?s (wrong|not right))\b", re.I),
    "request": re.compile(
        r"\b(can|could|would|will) (you|we) (please |kindly )?(get|give|send|help|change|add|"
        r"make|cancel|check|refund|reset|update|fix|book|order)|\b(can|could|may) i (please )?"
        r"(get|have|order|change|add|cancel|return)|\b(i'?d like|i would like|i want|i need|"
        r"please|let me (get|have)|give me|get me)\b",
        re.I,
    ),
    "question": re.compile(
        r"\?|^\W*(what|when|where|which|who|why|how|is|are|do|does|did|can|could|would|will|"
        r"should|may)\b",
        re.I,
    ),
    "hold": re.compile(r"\b(please hold|one moment|bear with me|just a (moment|minute|sec))", re.I),
    "transfer": re.compile(
        r"\b(transfer(ring)? you|connect(ing)? you (to|with)|put you through|escalat\w*)\b", re.I
    ),
}

_EMOTION_WORDS: dict[str, re.Pattern[str]] = {
    "frustration": re.compile(
        r"\b(again|still|already (said|told|asked)|ridiculous|waste|how many times|frustrat\w*|"
        r"annoy\w*|seriously|unacceptable|come on|not working|doesn'?t work|fed up|useless)\b",
        re.I,
    ),
    "anger": re.compile(r"\b(angry|furious|mad at|outrageous|terrible|worst|hate|livid)\b", re.I),
    "disgust": re.compile(r"\b(disgust\w*|gross|revolting|nasty|yuck)\b", re.I),
    "fear": re.compile(r"\b(worried|afraid|scared|nervous|anxious|concerned|fear)\b", re.I),
    "sadness": re.compile(
        r"\b(sad|unfortunately|disappoint\w*|upset|unhappy|heartbroken|sorry to hear)\b", re.I
    ),
    "surprise": re.compile(r"\b(wow|whoa|surpris\w*|unexpected|no way|really\?)", re.I),
}

_RESOLVED = re.compile(
    r"\b((order|it|that|refund|request|issue|problem|payment)\s+(has been|is|was|have been)\s+"
    r"(placed|processed|submitted|sent|confirmed|resolved|fixed|completed|issued|cancell?ed|"
    r"updated|done|on (its|the) way)|all set|pick (it |them |your \w+ )?up|"
    r"(will|should|would|'ll|going to|gonna) be (right )?(ready|done|out|up|complete|completed|"
    r"made|over|available|at the)|being (sent|made|prepared)|(start|go) mak(e|ing)|"
    r"ready (for pickup|shortly|soon|in \w+|at the)|coming (right )?up|on (its|the) way|"
    r"(i'll|we'll|i will|we will|ill) (go )?(get|have|put|make|send|whip|bring)\b[^.?!]*\b("
    r"shortly|soon|right (away|up|out|now)|as soon as possible|in a (minute|moment|few|flash|"
    r"jiffy|second|bit))|"
    r"you'll have (it|them|your \w+)|(you can|please) (pick|get|grab|collect) (it|them|your \w+)|"
    r"(is|are|will be) (on (its|their) way|ready)|sent (it|your order) (off|through|to)|"
    r"(placed|submitted) (your|the) order|have a (nice|good|great) (day|one)|"
    r"(i|we)('ve| have) (now |just |already )?(refunded|processed|cancell?ed|issued|updated|"
    r"fixed|resolved|reset|placed|submitted|sent|rebooked|replaced|credited))\b",
    re.I,
)
_ABANDON = re.compile(
    r"\b(never ?mind|forget it|i'?ll go elsewhere|i'?m done|cancel everything|nevermind)\b", re.I
)
_ENTITY_PATTERNS: dict[str, re.Pattern[str]] = {
    "money": re.compile(
        r"(?:[$€£]\s?\d+(?:[.,]\d{1,2})?|\b\d+(?:\.\d{1,2})? (?:dollars|euros|"
        r"pounds|usd|eur|gbp)\b)",
        re.I,
    ),
    "time": re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm)\b|\b\d{1,2}:\d{2}\b", re.I),
    "date": re.compile(
        r"\b(?:today|tomorrow|yesterday|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
        r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?)\b",
        re.I,
    ),
    "quantity": re.compile(
        r"\b(?:\d+|one|two|three|four|five|six|a couple of)\s+(?:of\s+)?(?:shots?|pumps?|cups?|"
        r"items?|units?|bags?|boxes|bottles?|tickets?|orders?|(?:[a-z]+ )?(?:lattes?|coffees?|"
        r"drinks?|teas?|mochas?|cappuccinos?|espressos?|americanos?))\b",
        re.I,
    ),
    "redacted": re.compile(r"\[(?:EMAIL|CARD|IBAN|SSN|ACCOUNT|PHONE)\]"),
}


def dialogue_acts(text: str) -> list[str]:
    """Dialogue acts of one turn by rules (a turn can have several; ``inform`` if none else)."""
    acts = [act for act, pattern in _ACT_PATTERNS.items() if pattern.search(text)]
    if "question" in acts and "request" in acts and "?" not in text:
        acts.remove("question")
    if not acts or (set(acts) <= {"greeting", "thanks", "apology"} and len(text.split()) > 6):
        acts.append("inform")
    return acts


@functools.lru_cache(maxsize=1)
def _vader() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise ImportError(
            "the offline backend needs vaderSentiment (pip install 'eightfold[conversation]')"
        ) from None
    return SentimentIntensityAnalyzer()


def emotion_of(text: str, role: str = "customer") -> Emotion:
    """VADER valence and a rule-based emotion label for one turn.

    The keyword lexicon decides the label when it fires on a turn that is not positive; a
    positive turn (valence >= 0.5) is ``joy``; a clearly negative one without keywords is
    ``anger`` (<= -0.6) or ``frustration``; anything else is ``neutral``.
    """
    valence = float(_vader().polarity_scores(text)["compound"])
    label = "neutral"
    hits = [name for name, pattern in _EMOTION_WORDS.items() if pattern.search(text)]
    if valence >= 0.5 and not (set(hits) & {"frustration", "anger", "disgust"}):
        label = "surprise" if "surprise" in hits else "joy"
    elif hits and valence < 0.3:
        # "Unfortunately" is an agent's politeness, not the agent's sadness.
        label = "neutral" if role != "customer" and hits == ["sadness"] else hits[0]
    elif valence <= -0.6:
        label = "anger"
    elif valence <= -0.3:
        label = "frustration"
    return Emotion(label=label, valence=round(valence, 4), source="vader")  # type: ignore[arg-type]


class AnalysisError(ValueError):
    """A conversation that could not be analysed (``where`` names it)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(kw_only=True)
class AnalyzerConfig:
    """Settings of the offline scene-reconstruction backend.

    Parameters
    ----------
    encoder
        ``"minilm"`` (the real all-MiniLM-L6-v2), ``"hashing"`` (no model) or an encoder object.
    intents
        Intent catalogue: a JSON path, a mapping ``{label: [examples]}`` or ``None`` for the
        built-in customer-service catalogue.
    intent_threshold
        Cosine below which a customer turn's intent is ``other``; ``None`` picks 0.35 for MiniLM
        and 0.2 for the hashing encoder.
    change_threshold
        Minimum jump in customer valence between consecutive customer turns that counts as a
        change point.
    repeat_similarity
        Cosine between two customer turns from which the later one is a repeated request.
    long_gap_s
        Silence before a reply (needs time stamps) that counts as friction.
    entity_lexicon
        Extra entities: type to list of surface strings (matched case-insensitively on words).
    batch_size
        Conversations encoded together by :meth:`Analyzer.analyze_many`.
    """

    encoder: str | Encoder = "minilm"
    intents: str | Mapping[str, list[str]] | None = None
    intent_threshold: float | None = None
    change_threshold: float = 0.4
    repeat_similarity: float = 0.85
    long_gap_s: float = 60.0
    entity_lexicon: Mapping[str, Sequence[str]] = field(default_factory=dict)
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.intent_threshold is not None and not -1 <= self.intent_threshold <= 1:
            raise ValueError(
                f"intent_threshold={self.intent_threshold!r}; expected a cosine in [-1, 1]"
            )
        if not 0 < self.change_threshold <= 2:
            raise ValueError(
                f"change_threshold={self.change_threshold!r}; expected a number in (0, 2]"
            )
        if not 0 < self.repeat_similarity <= 1:
            raise ValueError(
                f"repeat_similarity={self.repeat_similarity!r}; expected a number in (0, 1]"
            )
        if self.long_gap_s <= 0:
            raise ValueError(f"long_gap_s={self.long_gap_s!r}; expected a positive number")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected a positive integer")
        for kind, values in dict(self.entity_lexicon).items():
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise ValueError(
                    f"entity_lexicon[{kind!r}]: expected a list of strings, got {values!r}"
                )


class Analyzer:
    """The offline backend of step 1 (and the within-conversation part of step 2).

    Examples
    --------
    >>> analyzer = Analyzer(AnalyzerConfig(encoder="hashing"))  # doctest: +SKIP
    >>> analysis = analyzer.analyze(conversation)  # doctest: +SKIP
    """

    backend: Literal["offline"] = "offline"

    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self.config = config or AnalyzerConfig()
        self.encoder = get_encoder(self.config.encoder)
        self.catalogue: IntentCatalogue = load_catalogue(self.config.intents)  # type: ignore[arg-type]
        threshold = self.config.intent_threshold
        if threshold is None:
            threshold = 0.35 if self.encoder.name == "minilm" else 0.2
        self._matcher: IntentMatcher | None = None
        self._threshold = threshold
        self._lexicon = [
            (kind, re.compile(r"\b" + re.escape(value) + r"\b", re.I), value)
            for kind, values in dict(self.config.entity_lexicon).items()
            for value in sorted(values, key=len, reverse=True)
        ]

    @property
    def matcher(self) -> IntentMatcher:
        if self._matcher is None:
            self._matcher = IntentMatcher(self.catalogue, self.encoder, self._threshold)
        return self._matcher

    def analyze(self, conversation: Conversation) -> ConversationAnalysis:
        """Analyse one conversation (redacted first if it was not)."""
        return self._analyze_batch([conversation])[0]

    def analyze_many(
        self,
        conversations: Iterable[Conversation],
        *,
        on_error: Literal["raise", "collect"] = "collect",
    ) -> tuple[list[ConversationAnalysis], list[AnalysisError]]:
        """Analyse many conversations, encoding their turns in batches.

        With ``on_error="collect"`` a conversation that fails is recorded and the batch goes on;
        the errors come back with the results.
        """
        from eightfold.progress import progress

        if on_error not in ("raise", "collect"):
            raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'collect'")
        items = list(conversations)
        results: list[ConversationAnalysis] = []
        errors: list[AnalysisError] = []
        with progress("analysing conversations", total=len(items)) as update:
            for start in range(0, len(items), self.config.batch_size):
                batch = items[start : start + self.config.batch_size]
                try:
                    results += self._analyze_batch(batch)
                except Exception:
                    # Retry one by one so a single bad conversation does not sink its batch.
                    for conv in batch:
                        try:
                            results += self._analyze_batch([conv])
                        except Exception as exc:
                            where = getattr(conv, "id", f"item {start}")
                            err = AnalysisError(str(where), f"{type(exc).__name__}: {exc}")
                            if on_error == "raise":
                                raise err from exc
                            errors.append(err)
                update(len(batch))
        return results, errors

    # -------------------------------------------------------------------------------- internals

    def _analyze_batch(self, conversations: Sequence[Conversation]) -> list[ConversationAnalysis]:
        convs = []
        for conv in conversations:
            if not isinstance(conv, Conversation):
                raise TypeError(
                    f"expected a Conversation (see eightfold.conversation.read_conversations), "
                    f"got {type(conv).__name__}"
                )
            convs.append(conv if conv.redacted else redact_conversation(conv))
        texts = [t.text for conv in convs for t in conv.turns]
        embeddings = self.encoder.encode(texts)  # (total turns, dim)
        out = []
        offset = 0
        for conv in convs:
            n = len(conv.turns)
            out.append(self._analyze_one(conv, embeddings[offset : offset + n]))
            offset += n
        return out

    def _analyze_one(self, conv: Conversation, embeddings: np.ndarray) -> ConversationAnalysis:
        customer_rows = [t.idx for t in conv.turns if t.role == "customer"]
        intents = dict(
            zip(customer_rows, self.matcher.match(embeddings[customer_rows]), strict=True)
        )
        turns = []
        for t in conv.turns:
            intent = None
            if t.idx in intents:
                label, score = intents[t.idx]
                intent = Label(label=label, score=score, source="embed")
            turns.append(
                TurnAnalysis(
                    idx=t.idx,
                    speaker=t.speaker,
                    role=t.role,
                    text=t.text,
                    intent=intent,
                    emotion=emotion_of(t.text, t.role),
                    acts=dialogue_acts(t.text) if t.role != "action" else [],  # type: ignore[arg-type]
                )
            )
        friction = find_friction(
            turns,
            embeddings=embeddings,
            timestamps=[t.ts for t in conv.turns],
            repeat_similarity=self.config.repeat_similarity,
            long_gap_s=self.config.long_gap_s,
        )
        attributions = attribute_changes(turns, friction, threshold=self.config.change_threshold)
        scene = self._scene(conv, turns, friction)
        return ConversationAnalysis(
            conversation_id=conv.id,
            participants=_participants(turns),
            turns=turns,
            scene=scene,
            friction=friction,
            attributions=attributions,
            meta=conv.meta,
            backend="offline",
            warnings=list(conv.warnings),
        )

    def _scene(
        self, conv: Conversation, turns: list[TurnAnalysis], friction: list[FrictionEvent]
    ) -> Scene:
        goal = _goal(turns)
        outcome = _outcome(conv, turns, friction)
        entities = self._entities(turns)
        metrics = _metrics(conv, turns, friction)
        topics = _topics(turns)
        return Scene(
            topics=topics,
            customer_goal=goal,
            entities=entities,
            summary=_summary(turns, goal, outcome, entities),
            outcome=outcome,
            metrics=metrics,
        )

    def _entities(self, turns: Sequence[TurnAnalysis]) -> list[Entity]:
        found: list[Entity] = []
        seen: set[tuple[str, str]] = set()
        for t in turns:
            if t.role == "action":
                continue
            spans = [(k, m.group(0)) for k, p, _ in self._lexicon for m in p.finditer(t.text)]
            spans += [
                (k, m.group(0)) for k, p in _ENTITY_PATTERNS.items() for m in p.finditer(t.text)
            ]
            for kind, value in spans:
                key = (kind, value.lower())
                if key not in seen:
                    seen.add(key)
                    found.append(Entity(type=kind, value=value, turn=t.idx))
        return found


def _participants(turns: Sequence[TurnAnalysis]) -> list[Participant]:
    by_speaker: dict[str, list[TurnAnalysis]] = {}
    for t in turns:
        if t.role != "action":
            by_speaker.setdefault(t.speaker, []).append(t)
    out = []
    for speaker, items in by_speaker.items():
        traits = []
        words = np.mean([len(t.text.split()) for t in items])
        if any(re.search(r"\b(please|thank|thanks)\b", t.text, re.I) for t in items):
            traits.append("polite")
        if any(t.emotion.label in ("frustration", "anger") for t in items):
            traits.append("frustrated")
        if words < 5:
            traits.append("terse")
        elif words > 30:
            traits.append("verbose")
        if any("apology" in t.acts for t in items):
            traits.append("apologetic")
        out.append(
            Participant(id=speaker, role=items[0].role, profile=Profile(traits=traits))  # type: ignore[arg-type]
        )
    return out


def _goal(turns: Sequence[TurnAnalysis]) -> Goal:
    customer = [t for t in turns if t.role == "customer" and t.intent is not None]
    for t in customer:
        assert t.intent is not None
        if t.intent.label not in RESPONSE_INTENTS:
            return Goal(text=t.text, intent=t.intent.label, source="embed")
    if customer:
        first = customer[0]
        assert first.intent is not None
        return Goal(text=first.text, intent=first.intent.label, source="embed")
    return Goal(text="", intent="unknown", source="rules")


def _topics(turns: Sequence[TurnAnalysis]) -> list[Topic]:
    topics: list[Topic] = []
    for t in turns:
        label = t.intent.label if t.intent is not None else None
        starts_new = (
            label is not None
            and label not in RESPONSE_INTENTS
            and (not topics or topics[-1].label != label)
        )
        if starts_new:
            topics.append(Topic(label=label, turns=[t.idx]))  # type: ignore[arg-type]
        elif topics:
            topics[-1].turns.append(t.idx)
    return topics


def _outcome(
    conv: Conversation, turns: Sequence[TurnAnalysis], friction: Sequence[FrictionEvent]
) -> Outcome:
    status = conv.meta.get("outcome")
    if isinstance(status, str) and status in OUTCOMES:
        return Outcome(status=status, evidence_turns=[], source="metadata")  # type: ignore[arg-type]
    transfers = [e.turn for e in friction if e.kind == "transfer"]
    if transfers:
        return Outcome(status="escalated", evidence_turns=transfers[:1], source="rules")
    spoken = [t for t in turns if t.role not in ("action", "system")]
    last = spoken[-1]
    if last.role == "customer" and (_ABANDON.search(last.text) or "question" in last.acts):
        return Outcome(status="abandoned", evidence_turns=[last.idx], source="rules")
    agent_turns = [t for t in spoken if t.role in ("agent", "bot")]
    resolved = [t.idx for t in agent_turns if _RESOLVED.search(t.text)]
    negative = {e.turn for e in friction if e.kind == "negative_answer"}
    if resolved and resolved[-1] not in negative:
        return Outcome(status="resolved", evidence_turns=resolved[-1:], source="rules")
    if agent_turns and agent_turns[-1].idx in negative:
        return Outcome(status="unresolved", evidence_turns=[agent_turns[-1].idx], source="rules")
    customer = [t for t in spoken if t.role == "customer"]
    if customer and _ABANDON.search(customer[-1].text):
        return Outcome(status="abandoned", evidence_turns=[customer[-1].idx], source="rules")
    if customer and customer[-1].emotion.valence <= -0.3:
        return Outcome(status="unresolved", evidence_turns=[customer[-1].idx], source="rules")
    return Outcome(status="unknown", evidence_turns=[], source="rules")


def _metrics(
    conv: Conversation, turns: Sequence[TurnAnalysis], friction: Sequence[FrictionEvent]
) -> Metrics:
    words: dict[str, int] = {}
    for t in turns:
        if t.role != "action":
            words[t.role] = words.get(t.role, 0) + len(t.text.split())
    total = max(sum(words.values()), 1)
    customer = [t.emotion.valence for t in turns if t.role == "customer"]
    gaps = []
    for prev, cur in zip(conv.turns, conv.turns[1:], strict=False):
        if prev.ts is not None and cur.ts is not None and prev.speaker != cur.speaker:
            gaps.append(cur.ts - prev.ts)
    return Metrics(
        n_turns=sum(1 for t in turns if t.role != "action"),
        talk_share={role: round(count / total, 4) for role, count in sorted(words.items())},
        sentiment_start=customer[0] if customer else 0.0,
        sentiment_end=customer[-1] if customer else 0.0,
        repeat_requests=sum(1 for e in friction if e.kind == "repeat_request"),
        transfers=sum(1 for e in friction if e.kind == "transfer"),
        apologies=sum(1 for t in turns if t.role in ("agent", "bot") and "apology" in t.acts),
        avg_response_gap_s=round(float(np.mean(gaps)), 3) if gaps else None,
    )


def _summary(
    turns: Sequence[TurnAnalysis], goal: Goal, outcome: Outcome, entities: Sequence[Entity]
) -> str:
    first = goal.text.strip()
    if len(first) > 120:
        first = first[:117] + "..."
    n = sum(1 for t in turns if t.role != "action")
    parts = [f'Customer intent {goal.intent.replace("_", " ")}: "{first}".']
    if entities:
        values = ", ".join(e.value for e in entities[:4])
        parts.append(f"Mentions {values}.")
    evidence = f" (turn {outcome.evidence_turns[0]})" if outcome.evidence_turns else ""
    parts.append(f"Outcome {outcome.status}{evidence} after {n} turns.")
    return " ".join(parts)


def analyze(
    conversation: Conversation, *, config: AnalyzerConfig | None = None
) -> ConversationAnalysis:
    """Analyse one conversation with the offline backend (steps 1 and 2 within it).

    For many conversations build one :class:`Analyzer` and call
    :meth:`Analyzer.analyze_many`: the encoder and catalogue are then loaded once.
    """
    return Analyzer(config).analyze(conversation)
