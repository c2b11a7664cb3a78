"""Step 2, causality analysis: why the customer's mood changed, and what drives an outcome.

Within a conversation
    :func:`find_friction` marks friction events (repeat request, transfer, long gap, unanswered
    question, agent apology, negative answer, hold). :func:`attribute_changes` finds change points
    in the customer's sentiment trajectory (a jump of at least ``threshold`` in VADER valence
    between consecutive customer turns) and attributes each to the turns between the two customer
    turns (the agent's reply first) and to the friction events there. :func:`ground_attributions`
    keeps an attribution only if every cited turn exists and its quote occurs in the first cited
    turn; the offline backend always passes, an LLM's answer often does not.

Across a corpus
    :func:`outcome_drivers` ranks binary conversation features (goal intent, friction events,
    outcome rules, sentiment) by how the outcome rate differs with and without them: counts,
    rates, the rate difference with a Newcombe (Wilson-score hybrid) 95 % interval, Fisher's
    exact test (scipy), and a bootstrap 95 % interval for the feature's coefficient in an
    L2-regularised logistic regression of the outcome on all features together (scikit-learn).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from eightfold.conversation.schema import (
    OUTCOMES,
    Attribution,
    ConversationAnalysis,
    FrictionEvent,
    TurnAnalysis,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Driver",
    "DriverReport",
    "attribute_changes",
    "conversation_features",
    "find_friction",
    "ground_attributions",
    "outcome_drivers",
    "outcome_label",
]

_TRANSFER = re.compile(
    r"\b(transfer(?:ring)? you|connect(?:ing)? you (?:to|with)|escalat\w*|put you through|"
    r"(?:a |my )?(?:supervisor|manager) (?:will|can)|another department)\b",
    re.I,
)
_HOLD = re.compile(
    r"\b(please hold|on hold|one moment|bear with me|just a (?:moment|minute|second))\b", re.I
)
_NEGATIVE_ANSWER = re.compile(
    r"\b(we (?:don't|do not) (?:have|offer|carry|sell)|(?:i'm|i am|we're|we are) (?:un)?able to|"
    r"(?:can't|cannot|couldn't|could not|unable to) (?:find|locate|help|do|process|offer|add)|"
    r"not (?:available|possible|on (?:the|our) menu)|no (?:results|matches)|"
    r"(?:don't|do not) see (?:any|that|it)|out of stock|sold out)\b",
    re.I,
)
_EXPLICIT_REPEAT = re.compile(
    r"\b(again|(?:i )?already (?:said|told|asked|gave)|as i said|i said|how many times|"
    r"(?:third|second) time|still (?:not|waiting|no))\b",
    re.I,
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if len(w) > 2}


def find_friction(
    turns: Sequence[TurnAnalysis],
    *,
    embeddings: np.ndarray | None = None,
    timestamps: Sequence[float | None] | None = None,
    repeat_similarity: float = 0.85,
    long_gap_s: float = 60.0,
) -> list[FrictionEvent]:
    """Friction events in a conversation, in turn order.

    Parameters
    ----------
    turns
        The analysed turns (acts and roles are used).
    embeddings
        ``(len(turns), dim)`` unit-length turn embeddings; customer turns whose cosine to an
        earlier customer turn reaches ``repeat_similarity`` are repeat requests. Without
        embeddings, a word Jaccard of at least 0.6 is used instead.
    timestamps
        Per-turn times in seconds; a gap of ``long_gap_s`` or more before a reply is a long gap.
    """
    events: list[FrictionEvent] = []
    customer_seen: list[int] = []
    for i, turn in enumerate(turns):
        text = turn.text
        if turn.role == "customer":
            repeated_of = None
            if len(_words(text)) >= 2:
                for j in customer_seen:
                    if embeddings is not None:
                        similar = float(embeddings[i] @ embeddings[j]) >= repeat_similarity
                    else:
                        a, b = _words(text), _words(turns[j].text)
                        similar = len(a & b) / max(len(a | b), 1) >= 0.6
                    if similar:
                        repeated_of = j
                        break
            if repeated_of is not None:
                events.append(
                    FrictionEvent(
                        kind="repeat_request", turn=i, detail=f"repeats turn {repeated_of}"
                    )
                )
            elif customer_seen and _EXPLICIT_REPEAT.search(text):
                events.append(
                    FrictionEvent(kind="repeat_request", turn=i, detail="says it is repeating")
                )
            customer_seen.append(i)
            if "question" in turn.acts or "request" in turn.acts:
                following = [t for t in turns[i + 1 :] if t.role not in ("action", "system")]
                if not following or following[0].role == "customer":
                    events.append(
                        FrictionEvent(
                            kind="unanswered_question",
                            turn=i,
                            detail="no reply before the "
                            + ("end" if not following else "customer's next turn"),
                        )
                    )
        elif turn.role in ("agent", "bot"):
            if _TRANSFER.search(text) or "transfer" in turn.acts:
                events.append(FrictionEvent(kind="transfer", turn=i))
            if "hold" in turn.acts or _HOLD.search(text):
                events.append(FrictionEvent(kind="hold", turn=i))
            if "apology" in turn.acts:
                events.append(FrictionEvent(kind="agent_apology", turn=i))
            match = _NEGATIVE_ANSWER.search(text)
            if match:
                events.append(FrictionEvent(kind="negative_answer", turn=i, detail=match.group(0)))
        if timestamps is not None and i > 0:
            now, before = timestamps[i], timestamps[i - 1]
            if (
                now is not None
                and before is not None
                and turn.speaker != turns[i - 1].speaker
                and now - before >= long_gap_s
            ):
                events.append(
                    FrictionEvent(kind="long_gap", turn=i, detail=f"{now - before:.0f} s")
                )
    return events


def _quote(text: str, limit: int = 80) -> str:
    """A verbatim span of ``text``: its first sentence, cut at ``limit`` characters."""
    stripped = text.strip()
    sentence = re.split(r"(?<=[.!?])\s", stripped, maxsplit=1)[0]
    return sentence[:limit].rstrip()


def attribute_changes(
    turns: Sequence[TurnAnalysis],
    friction: Sequence[FrictionEvent],
    *,
    threshold: float = 0.4,
) -> list[Attribution]:
    """Sentiment change points of the customer, each attributed to the turns before it.

    A change point is a customer turn whose VADER valence differs from the previous customer
    turn's by at least ``threshold``. Its causes are the non-customer turns in between (most
    recent first) or, if there are none, the previous customer turn; the quote is the first
    sentence of the first cause.
    """
    if not 0 < threshold <= 2:
        raise ValueError(f"threshold={threshold!r}; expected a number in (0, 2]")
    customer = [t for t in turns if t.role == "customer"]
    out: list[Attribution] = []
    for previous, current in itertools.pairwise(customer):
        delta = current.emotion.valence - previous.emotion.valence
        if abs(delta) < threshold:
            continue
        between = [t for t in turns[previous.idx + 1 : current.idx] if t.role != "action"]
        causes = [t.idx for t in reversed(between)] or [previous.idx]
        events = [e for e in friction if previous.idx < e.turn <= current.idx]
        kinds = ", ".join(sorted({e.kind.replace("_", " ") for e in events}))
        direction: Literal["up", "down"] = "up" if delta > 0 else "down"
        explanation = (
            f"customer sentiment went {direction} by {abs(delta):.2f} after turn {causes[0]}"
            + (f" ({kinds})" if kinds else "")
        )
        out.append(
            Attribution(
                turn=current.idx,
                delta=round(delta, 4),
                direction=direction,
                cause_turns=causes,
                quote=_quote(turns[causes[0]].text),
                events=events,
                explanation=explanation,
                source="rules",
            )
        )
    return out


def ground_attributions(
    attributions: Sequence[Attribution], turns: Sequence[TurnAnalysis] | Sequence[Any]
) -> tuple[list[Attribution], list[str]]:
    """Keep attributions whose cited turns exist and whose quote occurs in a cited turn.

    Returns
    -------
    (list[Attribution], list[str])
        The kept attributions and one message per dropped one.
    """
    kept: list[Attribution] = []
    dropped: list[str] = []
    n = len(turns)
    for a in attributions:
        cited = [a.turn, *a.cause_turns, *(e.turn for e in a.events)]
        bad = [i for i in cited if not 0 <= i < n]
        if bad or not a.cause_turns:
            dropped.append(
                f"attribution at turn {a.turn} dropped: cites turn(s) {bad or 'none'} but the "
                f"conversation has turns 0..{n - 1}"
            )
            continue
        if a.quote and not any(
            _normalise(a.quote) in _normalise(turns[i].text) for i in a.cause_turns
        ):
            dropped.append(
                f"attribution at turn {a.turn} dropped: quote {a.quote[:60]!r} does not occur in "
                f"cited turn(s) {a.cause_turns}"
            )
            continue
        kept.append(a)
    return kept, dropped


def _normalise(text: str) -> str:
    # Quotes are compared case-insensitively with whitespace collapsed: an LLM often changes
    # case or line breaks of a verbatim span, which is still the same span.
    return re.sub(r"\s+", " ", text).strip().lower()


# ------------------------------------------------------------------------------ across a corpus


def conversation_features(analysis: ConversationAnalysis) -> dict[str, bool]:
    """Binary features of one analysed conversation used as candidate outcome drivers."""
    feats: dict[str, bool] = {f"goal intent = {analysis.scene.customer_goal.intent}": True}
    for event in analysis.friction:
        feats[f"friction: {event.kind.replace('_', ' ')}"] = True
    m = analysis.scene.metrics
    feats["customer sentiment ends negative"] = m.sentiment_end <= -0.05
    feats["customer sentiment ends positive"] = m.sentiment_end >= 0.05
    feats["sentiment drop (change point)"] = any(
        a.direction == "down" for a in analysis.attributions
    )
    feats["agent talk share > 60%"] = m.talk_share.get("agent", 0.0) > 0.6
    n_words = sum(len(t.text.split()) for t in analysis.turns if t.role == "customer")
    feats["long conversation (> 6 turns)"] = m.n_turns > 6
    feats["short first request (< 5 words)"] = (
        n_words > 0
        and len(next((t.text for t in analysis.turns if t.role == "customer"), "").split()) < 5
    )
    return feats


@dataclass(kw_only=True)
class Driver:
    """One candidate driver of the outcome, with its evidence."""

    feature: str
    n_with: int
    n_without: int
    rate_with: float
    rate_without: float
    difference: float
    difference_ci: tuple[float, float]
    p_value: float
    coefficient: float
    coefficient_ci: tuple[float, float]
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(kw_only=True)
class DriverReport:
    """Result of :func:`outcome_drivers`: drivers ranked by |rate difference| among significant
    ones (the 95 % interval excludes 0), then the rest."""

    outcome: str
    n_conversations: int
    base_rate: float
    drivers: list[Driver]
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "n_conversations": self.n_conversations,
            "base_rate": self.base_rate,
            "drivers": [d.to_dict() for d in self.drivers],
            "skipped": self.skipped,
        }


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95 % interval of p1 - p2 (Newcombe's method 10, from two Wilson intervals)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson(k1, n1)
    l2, u2 = _wilson(k2, n2)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (max(-1.0, lower), min(1.0, upper))


def outcome_label(outcome: str) -> Callable[[ConversationAnalysis], bool | None]:
    """A function giving the binary outcome of an analysis: ``status=<status>`` compares step 1's
    outcome; any other string reads that boolean field of the conversation metadata (``None``
    when it is missing)."""
    if not isinstance(outcome, str) or not outcome:
        raise ValueError(f"outcome={outcome!r}; expected 'status=resolved' or a metadata key")
    if outcome.startswith("status="):
        wanted = outcome.split("=", 1)[1]
        if wanted not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r}: status must be one of {', '.join(OUTCOMES)}")
        return lambda a: a.scene.outcome.status == wanted

    def from_meta(a: ConversationAnalysis) -> bool | None:
        value = a.meta.get(outcome)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(
            f"conversation {a.conversation_id!r}: outcome {outcome!r} is {value!r}; expected a "
            "boolean (true/false, yes/no, 1/0)"
        )

    return from_meta


def outcome_drivers(
    analyses: Sequence[ConversationAnalysis],
    outcome: str = "status=resolved",
    *,
    min_count: int = 5,
    n_bootstrap: int = 200,
    seed: int = 0,
    features: Callable[[ConversationAnalysis], dict[str, bool]] = conversation_features,
) -> DriverReport:
    """Rank conversation features by their association with a binary outcome.

    Parameters
    ----------
    analyses
        Analysed conversations.
    outcome
        ``status=<outcome status>`` (from step 1, e.g. ``status=resolved``), or the name of a
        boolean field of the conversation metadata (``resolved``, ``order_placed``...).
        Conversations without the field are skipped.
    min_count
        Features present (or absent) in fewer conversations are not reported.
    n_bootstrap
        Bootstrap resamples for the logistic-regression coefficient interval (0 to skip).
    """
    from scipy.stats import fisher_exact
    from sklearn.linear_model import LogisticRegression

    if not isinstance(outcome, str) or not outcome:
        raise ValueError(f"outcome={outcome!r}; expected 'status=resolved' or a metadata key")
    if min_count < 1:
        raise ValueError(f"min_count={min_count}; expected at least 1")
    get = outcome_label(outcome)
    rows: list[dict[str, bool]] = []
    ys: list[bool] = []
    ids: list[str] = []
    skipped: list[str] = []
    for a in analyses:
        label = get(a)
        if label is None:
            skipped.append(a.conversation_id)
            continue
        rows.append(features(a))
        ys.append(bool(label))
        ids.append(a.conversation_id)
    if len(ys) < 2 * min_count or len(set(ys)) < 2:
        raise ValueError(
            f"outcome {outcome!r}: need at least {2 * min_count} conversations with both "
            f"outcomes, got {len(ys)} ({sum(ys)} positive, {len(skipped)} without the label)"
        )
    names = sorted({k for r in rows for k in r})
    x = np.array([[r.get(k, False) for k in names] for r in rows], dtype=np.float64)
    y = np.array(ys, dtype=np.int64)
    keep = [j for j in range(len(names)) if min_count <= x[:, j].sum() <= len(y) - min_count]
    names = [names[j] for j in keep]
    x = x[:, keep]

    # Joint model: each coefficient is the feature's effect with the others held fixed, which
    # separates a driver from features that merely co-occur with it.
    def fit(xs: np.ndarray, ys_: np.ndarray) -> np.ndarray:
        if len(set(ys_.tolist())) < 2:
            return np.full(xs.shape[1], np.nan)
        model = LogisticRegression(C=1.0, max_iter=1000)
        model.fit(xs, ys_)
        return model.coef_[0]

    coef = fit(x, y) if names else np.zeros(0)
    boots = []
    rng = np.random.default_rng(seed)
    for _ in range(n_bootstrap if names else 0):
        sample = rng.integers(0, len(y), len(y))
        boots.append(fit(x[sample], y[sample]))
    boot = np.array(boots) if boots else np.zeros((0, len(names)))

    drivers = []
    for j, name in enumerate(names):
        has = x[:, j] > 0
        k1, n1 = int(y[has].sum()), int(has.sum())
        k2, n2 = int(y[~has].sum()), int((~has).sum())
        _, p = fisher_exact([[k1, n1 - k1], [k2, n2 - k2]])
        if boot.shape[0]:
            lo, hi = np.nanpercentile(boot[:, j], [2.5, 97.5])
            coef_ci = (round(float(lo), 4), round(float(hi), 4))
        else:
            coef_ci = (float("nan"), float("nan"))
        ci = _newcombe(k1, n1, k2, n2)
        drivers.append(
            Driver(
                feature=name,
                n_with=n1,
                n_without=n2,
                rate_with=round(k1 / n1, 4),
                rate_without=round(k2 / n2, 4),
                difference=round(k1 / n1 - k2 / n2, 4),
                difference_ci=(round(ci[0], 4), round(ci[1], 4)),
                p_value=float(p),
                coefficient=round(float(coef[j]), 4),
                coefficient_ci=coef_ci,
                examples=[ids[i] for i in np.flatnonzero(has)[:3]],
            )
        )

    def rank(d: Driver) -> tuple[int, float]:
        significant = d.difference_ci[0] > 0 or d.difference_ci[1] < 0
        return (0 if significant else 1, -abs(d.difference))

    drivers.sort(key=rank)
    return DriverReport(
        outcome=outcome,
        n_conversations=len(y),
        base_rate=round(float(y.mean()), 4),
        drivers=drivers,
        skipped=skipped,
    )
