"""Step 4, conversation generation: simulate customers against an agent and re-analyse the result.

A :class:`Scenario` (intent, opening request, slots the customer has in mind, persona, emotion
arc) drives a customer; an agent answers. Two customers and two agents combine freely:

- :class:`TemplateCustomer`: seeded templates, fully deterministic for a given seed;
- :class:`LLMCustomer`: an LLM that plays the persona through an OpenAI-compatible client;
- :class:`RuleAgent`: asks for missing slots, confirms, completes; with ``misunderstand`` > 0 it
  sometimes asks again for a slot it was given (friction, for testing analytics);
- :class:`EndpointAgent`: any OpenAI-compatible chat endpoint (the agent under test).

:func:`simulate` stops when the agent completes the request (the customer then closes) or after
``max_turns``. :func:`evaluate_simulations` analyses the generated conversations with step 1 and
reports the success rate (outcome ``resolved``) and the number of turns to the goal (the turn
cited as outcome evidence, plus one).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from eightfold.conversation.schema import Conversation, ConversationAnalysis, Turn

logger = logging.getLogger(__name__)

__all__ = [
    "EndpointAgent",
    "LLMCustomer",
    "RuleAgent",
    "Scenario",
    "SimulationReport",
    "TemplateCustomer",
    "evaluate_simulations",
    "scenario_from_analysis",
    "simulate",
    "template_batch",
]

PERSONAS = ("polite", "terse", "impatient")
Message = dict[str, str]

_DONE = re.compile(
    r"\b(has been (placed|processed|completed|submitted|done)|all set|will be ready|"
    r"pick (it )?up|have a (nice|good|great) day)\b",
    re.I,
)
_CONFIRM_Q = re.compile(r"\b(correct|is that (right|all|it)|confirm|look (right|good))\b", re.I)


@dataclass(kw_only=True)
class Scenario:
    """What the simulated customer wants and how they behave.

    Parameters
    ----------
    intent
        Goal intent label (used for reporting and for the agent's wording).
    request
        The customer's opening request, without slot values.
    slots
        Slot name to the value the customer has in mind (``{"milk": "oat milk"}``).
    persona
        ``polite``, ``terse`` or ``impatient`` (wording, and how much is said up front).
    emotion_arc
        Emotion of successive customer turns (the last one repeats), e.g.
        ``["neutral", "frustration", "joy"]``.
    """

    intent: str
    request: str
    slots: dict[str, str] = field(default_factory=dict)
    persona: str = "polite"
    emotion_arc: list[str] = field(default_factory=lambda: ["neutral"])

    def __post_init__(self) -> None:
        if not self.intent or not isinstance(self.intent, str):
            raise ValueError(f"intent={self.intent!r}; expected a non-empty string")
        if not self.request or not isinstance(self.request, str):
            raise ValueError(f"request={self.request!r}; expected a non-empty string")
        if self.persona not in PERSONAS:
            raise ValueError(f"persona={self.persona!r}; expected one of {', '.join(PERSONAS)}")
        if not self.emotion_arc:
            raise ValueError("emotion_arc: expected at least one emotion label")
        for name, value in self.slots.items():
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"slots[{name!r}]={value!r}; expected a non-empty string")


class Customer(Protocol):
    def reply(self, history: Sequence[Message]) -> tuple[str, bool]:
        """The next customer message and whether the customer ends the conversation."""
        ...


class Agent(Protocol):
    def reply(self, history: Sequence[Message]) -> str: ...


# --------------------------------------------------------------------------- template customer

_EMOTION_TAIL = {
    "frustration": ["This is taking a while.", "I already said that."],
    "anger": ["This is ridiculous.", "Terrible service so far."],
    "joy": ["Great, thanks!", "Perfect, thank you!"],
    "sadness": ["Unfortunately I'm in a hurry.", "That's disappointing."],
    "fear": ["I'm worried it will be late."],
    "surprise": ["Oh wow, really?"],
}


class TemplateCustomer:
    """A deterministic customer: says the request, answers slot questions, confirms, closes."""

    def __init__(self, scenario: Scenario, *, seed: int = 0, disclose: float = 0.5) -> None:
        if not 0.0 <= disclose <= 1.0:
            raise ValueError(f"disclose={disclose!r}; expected a probability in [0, 1]")
        self.scenario = scenario
        self.rng = random.Random(seed)
        self.turn = 0
        # Which slots the opening request already names; terse customers say less.
        p = disclose * (0.5 if scenario.persona == "terse" else 1.0)
        self.told = {name for name in scenario.slots if self.rng.random() < p}

    def _emotion(self) -> str:
        arc = self.scenario.emotion_arc
        return arc[min(self.turn, len(arc) - 1)]

    def _style(self, text: str, *, please: bool = True) -> str:
        text = text.strip()
        if please and self.scenario.persona == "polite" and "please" not in text.lower():
            text = text.rstrip(".!?") + ", please"
        if not text.endswith((".", "!", "?")):
            text += "."
        tails = _EMOTION_TAIL.get(self._emotion())
        if tails:
            text = f"{text} {self.rng.choice(tails)}"
        if self.scenario.persona == "impatient":
            text = f"{text} Quickly."
        return text

    def reply(self, history: Sequence[Message]) -> tuple[str, bool]:
        s = self.scenario
        agent_text = next(
            (m["content"] for m in reversed(history) if m["role"] == "assistant"), None
        )
        if agent_text is None:
            parts = [s.request] + [s.slots[n] for n in s.slots if n in self.told]
            opening = parts[0] + (" with " + " and ".join(parts[1:]) if parts[1:] else "")
            greeting = "Hi, " if s.persona == "polite" else ""
            text, done = self._style(greeting + opening), False
        elif _DONE.search(agent_text):
            text = "Thanks, bye." if s.persona != "impatient" else "Finally. Bye."
            done = True
        elif _CONFIRM_Q.search(agent_text):
            missing = [n for n in s.slots if n not in self.told]
            if missing:
                self.told.update(missing)
                text, done = (
                    self._style("No, also " + " and ".join(s.slots[n] for n in missing)),
                    False,
                )
            else:
                text, done = self._style("Yes, that's right", please=False), False
        else:
            asked = [
                n for n in s.slots if re.search(r"\b" + re.escape(n) + r"\b", agent_text, re.I)
            ]
            if asked:
                again = [n for n in asked if n in self.told]
                self.told.update(asked)
                values = " and ".join(s.slots[n] for n in asked)
                text = f"I already said {values}" if again else values
                text, done = self._style(text), False
            else:
                missing = [n for n in s.slots if n not in self.told]
                self.told.update(missing)
                text = " and ".join(s.slots[n] for n in missing) if missing else "That's all"
                text, done = self._style(text), False
        self.turn += 1
        return text, done


# ------------------------------------------------------------------------------ rule agent


class RuleAgent:
    """A slot-filling agent: greets, asks for each missing slot, confirms, completes.

    Parameters
    ----------
    slots
        Slot names the agent must fill; a slot is filled when its value (from ``values``, or any
        answer to the question about it) appears in a customer message.
    values
        Known surface values per slot, used to recognise a filled slot in free text.
    misunderstand
        Probability of asking again for a slot that was already given.
    """

    def __init__(
        self,
        slots: Sequence[str],
        *,
        values: dict[str, Sequence[str]] | None = None,
        misunderstand: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= misunderstand <= 1.0:
            raise ValueError(f"misunderstand={misunderstand!r}; expected a probability in [0, 1]")
        self.slots = list(slots)
        self.values = {k: [v.lower() for v in vs] for k, vs in (values or {}).items()}
        self.misunderstand = misunderstand
        self.rng = random.Random(seed)
        self.filled: set[str] = set()
        self.asked: str | None = None
        self.confirmed_asked = False

    def reply(self, history: Sequence[Message]) -> str:
        last = history[-1]["content"] if history else ""
        lowered = last.lower()
        for slot in self.slots:
            if any(v in lowered for v in self.values.get(slot, [])):
                self.filled.add(slot)
        if self.asked is not None and lowered.strip():
            self.filled.add(self.asked)
        self.asked = None
        first = sum(1 for m in history if m["role"] == "assistant") == 0
        if self.confirmed_asked and re.match(r"\W*(yes|yeah|yep|correct|right)", lowered):
            return "Thank you, your request has been completed. Have a nice day!"
        missing = [s for s in self.slots if s not in self.filled]
        if self.filled and self.rng.random() < self.misunderstand:
            slot = self.rng.choice(sorted(self.filled))
            self.filled.discard(slot)
            missing = [slot]
        if missing:
            self.asked = missing[0]
            prefix = "Hello! Happy to help. " if first else ""
            return f"{prefix}Which {missing[0]} would you like?"
        self.confirmed_asked = True
        prefix = "Hello! " if first else ""
        return f"{prefix}Got it. Is that correct?"


# ------------------------------------------------------------------------------ LLM roles


def _chat(client: Any, messages: list[Message], **kwargs: Any) -> str:
    """One chat completion through ``eightfold.llm``'s client (``chat`` or ``complete``)."""
    for name in ("chat", "complete"):
        method = getattr(client, name, None)
        if callable(method):
            result = method(messages, **kwargs)
            return result if isinstance(result, str) else str(getattr(result, "text", result))
    raise TypeError(
        f"client: expected an eightfold.llm client with a chat(messages) method, got "
        f"{type(client).__name__}"
    )


class LLMCustomer:
    """An LLM playing the customer of a scenario (persona, goal, emotion arc)."""

    def __init__(self, scenario: Scenario, client: Any, *, max_turns: int = 12) -> None:
        self.scenario = scenario
        self.client = client
        self.max_turns = max_turns
        self.turn = 0

    def reply(self, history: Sequence[Message]) -> tuple[str, bool]:
        s = self.scenario
        arc = s.emotion_arc[min(self.turn, len(s.emotion_arc) - 1)]
        system = (
            "You are a customer talking to a customer-service agent. Stay in character.\n"
            f"Your goal ({s.intent}): {s.request}.\n"
            f"Details you know: {s.slots}.\nPersona: {s.persona}. Current emotion: {arc}.\n"
            "Reply with one short customer message. When your goal is met, reply with a short "
            "goodbye that ends with [END]."
        )
        # Roles are swapped: to the customer model, the agent's turns are the "user".
        swapped = [
            {"role": "user" if m["role"] == "assistant" else "assistant", "content": m["content"]}
            for m in history
        ]
        if not swapped:
            swapped = [{"role": "user", "content": "(the agent is waiting for you to start)"}]
        text = _chat(self.client, [{"role": "system", "content": system}, *swapped]).strip()
        self.turn += 1
        done = "[END]" in text
        return text.replace("[END]", "").strip() or "Bye.", done


class EndpointAgent:
    """The agent under test behind an OpenAI-compatible endpoint (through ``eightfold.llm``)."""

    def __init__(self, client: Any, *, system: str | None = None) -> None:
        self.client = client
        self.system = system or "You are a helpful, concise customer-service agent."

    def reply(self, history: Sequence[Message]) -> str:
        return _chat(self.client, [{"role": "system", "content": self.system}, *history]).strip()


# ------------------------------------------------------------------------------ simulation


def simulate(
    customer: Customer,
    agent: Agent,
    *,
    conversation_id: str,
    max_turns: int = 12,
    meta: dict[str, Any] | None = None,
) -> Conversation:
    """Let ``customer`` and ``agent`` talk until the customer ends or ``max_turns`` is reached."""
    if not isinstance(max_turns, int) or max_turns < 2:
        raise ValueError(f"max_turns={max_turns!r}; expected an integer of at least 2")
    history: list[Message] = []
    while len(history) < max_turns:
        text, done = customer.reply(history)
        history.append({"role": "user", "content": text})
        if done or len(history) >= max_turns:
            break
        history.append({"role": "assistant", "content": agent.reply(history)})
    turns = [
        Turn(
            idx=i,
            speaker="customer" if m["role"] == "user" else "agent",
            role="customer" if m["role"] == "user" else "agent",
            text=m["content"],
        )
        for i, m in enumerate(history)
    ]
    return Conversation(id=conversation_id, turns=turns, meta={"simulated": True, **(meta or {})})


def scenario_from_analysis(analysis: ConversationAnalysis) -> Scenario:
    """A scenario that replays an analysed conversation: its goal, the entities the customer
    named as slots, a persona from the customer's traits and the customer's emotion arc."""
    goal = analysis.scene.customer_goal
    customer_turns = {t.idx for t in analysis.turns if t.role == "customer"}
    slots: dict[str, str] = {}
    for e in analysis.scene.entities:
        if e.turn in customer_turns and e.type != "redacted":
            name = e.type if e.type not in slots else f"{e.type} {len(slots)}"
            slots[name] = e.value
    traits = next((p.profile.traits for p in analysis.participants if p.role == "customer"), [])
    persona = "impatient" if "frustrated" in traits else "terse" if "terse" in traits else "polite"
    arc: list[str] = [str(t.emotion.label) for t in analysis.turns if t.role == "customer"]
    arc = arc or ["neutral"]
    request = goal.text.strip() or goal.intent.replace("_", " ")
    for value in slots.values():
        request = re.sub(re.escape(value), "", request, flags=re.I).strip(" ,.")
    return Scenario(
        intent=goal.intent,
        request=request or goal.intent.replace("_", " "),
        slots=slots,
        persona=persona,
        emotion_arc=arc,
    )


@dataclass(kw_only=True)
class SimulationReport:
    """Step-1 analysis of simulated conversations."""

    n: int
    success_rate: float
    mean_turns_to_goal: float | None
    outcomes: dict[str, int]
    per_intent: dict[str, dict[str, float]]
    analyses: list[ConversationAnalysis] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "analyses"}


def evaluate_simulations(
    conversations: Sequence[Conversation],
    analyze_many: Callable[..., tuple[list[ConversationAnalysis], list[Any]]],
) -> SimulationReport:
    """Analyse simulated conversations again (step 1) and measure success and turns to goal."""
    analyses, errors = analyze_many(conversations)
    if errors:
        logger.warning("%d simulated conversation(s) could not be analysed", len(errors))
    if not analyses:
        raise ValueError("no simulated conversation could be analysed")
    outcomes: dict[str, int] = {}
    turns_to_goal = []
    per_intent: dict[str, list[tuple[bool, int | None]]] = {}
    for a in analyses:
        status = a.scene.outcome.status
        outcomes[status] = outcomes.get(status, 0) + 1
        ok = status == "resolved"
        steps = (
            a.scene.outcome.evidence_turns[0] + 1 if ok and a.scene.outcome.evidence_turns else None
        )
        if steps is not None:
            turns_to_goal.append(steps)
        intent = str(a.meta.get("intent", a.scene.customer_goal.intent))
        per_intent.setdefault(intent, []).append((ok, steps))
    summary = {
        intent: {
            "n": float(len(rows)),
            "success_rate": round(sum(ok for ok, _ in rows) / len(rows), 4),
            "mean_turns_to_goal": (
                round(float(np.mean([s for _, s in rows if s is not None])), 3)
                if any(s is not None for _, s in rows)
                else float("nan")
            ),
        }
        for intent, rows in sorted(per_intent.items())
    }
    return SimulationReport(
        n=len(analyses),
        success_rate=round(outcomes.get("resolved", 0) / len(analyses), 4),
        mean_turns_to_goal=round(float(np.mean(turns_to_goal)), 3) if turns_to_goal else None,
        outcomes=outcomes,
        per_intent=summary,
        analyses=analyses,
    )


def template_batch(
    scenarios: Sequence[Scenario],
    n: int,
    *,
    seed: int = 0,
    misunderstand: float = 0.0,
    max_turns: int = 12,
    disclose: float = 0.5,
    agent_factory: Callable[[Scenario, int], Agent] | None = None,
) -> list[Conversation]:
    """``n`` template conversations cycling through ``scenarios`` (seed ``seed + i`` each)."""
    if not scenarios:
        raise ValueError("scenarios: expected at least one scenario")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}; expected a positive integer")
    out = []
    for i in range(n):
        s = scenarios[i % len(scenarios)]
        customer = TemplateCustomer(s, seed=seed + i, disclose=disclose)
        agent = (
            agent_factory(s, seed + i)
            if agent_factory is not None
            else RuleAgent(
                list(s.slots),
                values={k: [v] for k, v in s.slots.items()},
                misunderstand=misunderstand,
                seed=seed + i,
            )
        )
        out.append(
            simulate(
                customer,
                agent,
                conversation_id=f"sim-{seed}-{i}",
                max_turns=max_turns,
                meta={"intent": s.intent, "persona": s.persona},
            )
        )
    return out
