"""Answers with provenance, and :class:`GraphQA`, the question-answering entry point.

An :class:`Answer` always carries the query that produced it, its parameters, the result rows
and a ``truncated`` flag, next to a deterministic sentence and a typed ``value`` (int, float,
str, bool or list) that evaluation compares with gold answers. Numbers come from the database;
nothing here recomputes them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from eightfold.graphrag.questions import (
    Ambiguity,
    CannotAnswer,
    EntityCatalogue,
    GraphProfile,
    ParsedQuestion,
    QuestionParser,
    looks_like_query,
)
from eightfold.graphrag.store import GraphStore, QueryError

logger = logging.getLogger(__name__)

__all__ = ["Answer", "GraphQA", "verbalise"]

ANSWERED, CANNOT_ANSWER, AMBIGUOUS, FAILED = "answered", "cannot_answer", "ambiguous", "failed"


@dataclass
class Answer:
    """The answer to one question, with the query and rows it came from.

    Attributes
    ----------
    status
        ``"answered"``, ``"cannot_answer"`` (outside the grammar or unknown entity),
        ``"ambiguous"`` (a name matched several entities) or ``"failed"`` (the database refused).
    text
        A sentence for people.
    value
        The typed answer (``None`` unless answered).
    cypher, params, columns, rows
        Provenance: exactly what ran and what came back.
    truncated
        True when more rows existed than were kept.
    suggestions
        Candidate names, or example questions, when the question could not be answered.
    """

    question: str
    status: str
    text: str
    value: Any = None
    intent: str | None = None
    method: str = "template"
    cypher: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    suggestions: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.status == ANSWERED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _join(names: list[str]) -> str:
    if not names:
        return "none"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _scope(parsed: ParsedQuestion) -> str:
    filters = parsed.filters()
    return f" {filters}" if filters else ""


def verbalise(parsed: ParsedQuestion, columns: list[str], rows: list[list[Any]]) -> tuple[Any, str]:
    """The typed value and a sentence for a parsed question's result rows.

    Parameters
    ----------
    parsed
        The question as parsed (intent, slots, filters).
    columns, rows
        The result of the intent's template.
    """
    s = parsed.slots
    scope = _scope(parsed)
    first = dict(zip(columns, rows[0], strict=True)) if rows else {}
    intent = parsed.intent

    if intent == "team_exists":
        value = bool(first.get("n"))
        return (
            value,
            f"{'Yes' if value else 'No'}, {s['team']} is {'' if value else 'not '}in the graph.",
        )
    if intent in ("team_wins", "team_losses", "team_draws", "team_matches", "shootout_wins"):
        n = int(first.get("n") or 0)
        verb = {
            "team_wins": "won",
            "team_losses": "lost",
            "team_draws": "drew",
            "team_matches": "played",
            "shootout_wins": "won",
        }[intent]
        noun = "penalty shootout" if intent == "shootout_wins" else "match"
        plural = "" if n == 1 else "es" if noun == "match" else "s"
        return n, f"{s['team']} {verb} {n} {noun}{plural}{scope}."
    if intent in ("head_to_head_count", "ever_played", "first_meeting", "head_to_head_winner"):
        played = int(first.get("played") or 0)
        a, b = s["team"], s["team2"]
        if intent == "head_to_head_count":
            return (
                played,
                f"{a} and {b} played each other {played} time{'s' if played != 1 else ''}{scope}.",
            )
        if intent == "ever_played":
            value = played > 0
            text = (
                f"Yes, {a} and {b} played each other {played} "
                f"time{'s' if played != 1 else ''}{scope}."
                if value
                else f"No, {a} and {b} never played each other{scope}."
            )
            return value, text
        if intent == "first_meeting":
            date = first.get("first_date") if played else None
            if date is None:
                return None, f"{a} and {b} never played each other{scope}."
            return date, f"{a} and {b} first played each other on {date}{scope}."
        wins_a, wins_b = int(first.get("wins_team") or 0), int(first.get("wins_team2") or 0)
        if played == 0:
            return None, f"{a} and {b} never played each other{scope}."
        leader = a if wins_a > wins_b else b if wins_b > wins_a else "tie"
        if leader == "tie":
            return "tie", f"{a} and {b} each won {wins_a} of their {played} meetings{scope}."
        return (
            leader,
            f"{leader} won more: {a} {wins_a}, {b} {wins_b}, out of {played} meetings{scope}.",
        )
    if intent == "compare_wins":
        wins = {row[0]: int(row[1]) for row in rows}
        wa, wb = wins.get(s["team"], 0), wins.get(s["team2"], 0)
        leader = s["team"] if wa > wb else s["team2"] if wb > wa else "tie"
        text = f"{s['team']} won {wa} and {s['team2']} won {wb} matches{scope}"
        return leader, text + (f"; {leader} won more." if leader != "tie" else "; a tie.")
    if intent == "match_result":
        results = [f"{r[0]} {r[1]} {r[2]}-{r[3]} {r[4]}" for r in rows]
        if not results:
            return [], f"No match between {s['team']} and {s['team2']}{scope} is in the graph."
        return (
            results,
            f"{len(results)} match{'es' if len(results) != 1 else ''}{scope}: "
            + "; ".join(results)
            + ".",
        )
    if intent == "team_goals":
        goals = int(first.get("goals") or 0)
        return (
            goals,
            f"{s['team']} scored {goals} goals in {int(first.get('matches') or 0)} matches{scope}.",
        )
    if intent == "avg_goals":
        matches = int(first.get("matches") or 0)
        if not matches:
            return None, f"No matches{scope} are in the graph."
        mean = round(float(first["avg_goals"]), 2)
        return mean, f"On average {mean} goals per match were scored in {matches} matches{scope}."
    if intent == "home_win_share":
        matches = int(first.get("matches") or 0)
        if not matches:
            return None, f"No matches with a home team{scope} are in the graph."
        share = round(100.0 * int(first["home_wins"]) / matches, 1)
        return share, f"The home team won {share}% of {matches} matches{scope}."
    if intent == "most_wins":
        teams = [row[0] for row in rows]
        detail = ", ".join(f"{row[0]} ({row[1]})" for row in rows)
        return teams, f"Most wins{scope}: {detail or 'no matches'}."
    if intent == "top_scorers":
        names = [row[0] for row in rows]
        detail = ", ".join(f"{row[0]} ({row[1]}, {row[2]})" for row in rows)
        who = f" for {s['team']}" if s.get("team") else ""
        return names, f"Top scorers{who}{scope}: {detail or 'no goals recorded'}."
    if intent in ("player_goals", "player_penalties"):
        n = int(first.get("goals") or 0)
        kind = "penalty goal" if intent == "player_penalties" else "goal"
        return (
            n,
            f"{s['player']} ({s['player_team']}) scored {n} {kind}{'s' if n != 1 else ''}{scope}.",
        )
    if intent == "scored_against":
        n = int(first.get("goals") or 0)
        if n:
            return (
                True,
                f"Yes, {s['player']} scored {n} goal{'s' if n != 1 else ''} against "
                f"{s['team2']}{scope}.",
            )
        return False, f"No, {s['player']} never scored against {s['team2']}{scope}."
    if intent in ("opponents", "competitions_of_team"):
        names = sorted(row[0] for row in rows)
        what = "opponents" if intent == "opponents" else "competitions"
        return names, f"{s['team']} {what}{scope} ({len(names)}): {_join(names)}."
    raise AssertionError(f"no verbaliser for intent {intent!r}")


class GraphQA:
    """Answer questions over a built graph: templates offline, an LLM optionally.

    Parameters
    ----------
    store
        An open :class:`~eightfold.graphrag.store.GraphStore`.
    llm
        An :class:`~eightfold.llm.LLMClient`; when given, questions outside the grammar go to the
        LLM text-to-Cypher path (:class:`~eightfold.graphrag.cypher.TextToCypher`), whose query is
        checked before it runs. ``None`` (the default) keeps everything offline.
    prefer
        With an LLM: ``"templates"`` (default) answers from the grammar and sends only questions
        outside it to the LLM; ``"llm"`` asks the LLM first and falls back to the templates when
        its query fails a check or the database.
    max_rows
        Rows kept per answer; more set ``truncated``.
    timeout_s
        Per-query timeout.

    Examples
    --------
    >>> qa = GraphQA(GraphStore.open("intl-graph"))  # doctest: +SKIP
    >>> qa.ask("How many matches did Brazil win at the World Cup?").text  # doctest: +SKIP
    'Brazil won 79 matches in FIFA World Cup.'
    """

    def __init__(
        self,
        store: GraphStore,
        *,
        llm: Any = None,
        prefer: str = "templates",
        max_rows: int = 100,
        timeout_s: float = 10.0,
    ) -> None:
        if prefer not in ("templates", "llm"):
            raise ValueError(f"prefer must be 'templates' or 'llm', got {prefer!r}")
        self.prefer = prefer
        if not isinstance(store, GraphStore):
            raise TypeError(
                f"store must be a GraphStore (GraphStore.open(path)), got {type(store).__name__}"
            )
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"max_rows must be a positive int, got {max_rows!r}")
        self.store = store
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.schema = store.schema()
        self.profile = GraphProfile.detect(self.schema)
        self.parser: QuestionParser | None = None
        if self.profile is not None:
            started = time.perf_counter()
            catalogue = EntityCatalogue.from_store(store, self.profile)
            self.parser = QuestionParser(catalogue, self.profile)
            logger.info("entity catalogue built in %.2f s", time.perf_counter() - started)
        else:
            logger.warning(
                "the graph's schema is not a match-results graph; template questions are off"
            )
        self.text_to_cypher = None
        if llm is not None:
            from eightfold.graphrag.cypher import TextToCypher

            self.text_to_cypher = TextToCypher(
                llm, self.schema, max_rows=max_rows, timeout_s=timeout_s
            )

    def capabilities(self) -> list[str]:
        """Example questions this graph can answer offline."""
        return self.parser.capabilities() if self.parser else []

    def ask(self, question: str) -> Answer:
        """Answer one question. Never raises for a bad question: the answer says what went wrong.

        Raises
        ------
        TypeError
            ``question`` is not a string.
        """
        if not isinstance(question, str):
            raise TypeError(f"question must be a string, got {type(question).__name__}")
        started = time.perf_counter()
        llm_first = self.text_to_cypher is not None and self.prefer == "llm"
        if llm_first and not looks_like_query(question):
            assert self.text_to_cypher is not None
            answer = self.text_to_cypher.answer(question, self.store)
            if answer.answered:
                return answer
            logger.info("the LLM path failed; falling back to the templates")
        if self.parser is None:
            refusal = CannotAnswer("this graph has no offline question grammar")
        else:
            try:
                parsed = self.parser.parse(question)
            except Ambiguity as exc:
                return Answer(
                    question,
                    AMBIGUOUS,
                    f"Cannot answer yet: {exc.reason}.",
                    suggestions=exc.candidates,
                    timings={"parse_s": time.perf_counter() - started},
                )
            except CannotAnswer as exc:
                refusal = exc
            else:
                return self._answer_parsed(question, parsed, started)

        if self.text_to_cypher is not None and not llm_first and not looks_like_query(question):
            return self.text_to_cypher.answer(question, self.store, fallback=refusal)
        hint = ""
        if refusal.suggestions and "did you mean" not in refusal.reason:
            hint = " Try: " + " | ".join(refusal.suggestions[:8])
        return Answer(
            question,
            CANNOT_ANSWER,
            f"Cannot answer: {refusal.reason}.{hint}",
            suggestions=refusal.suggestions,
            timings={"parse_s": time.perf_counter() - started},
        )

    def _answer_parsed(self, question: str, parsed: ParsedQuestion, started: float) -> Answer:
        assert self.parser is not None
        cypher, params = self.parser.to_cypher(parsed)
        parsed_at = time.perf_counter()
        try:
            result = self.store.run(cypher, params, timeout_s=self.timeout_s)
        except QueryError as exc:
            return Answer(
                question,
                FAILED,
                f"The database could not run the query: {exc}",
                intent=parsed.intent,
                cypher=cypher,
                params=params,
            )
        ran_at = time.perf_counter()
        rows = result.rows
        truncated = len(rows) > self.max_rows
        rows = rows[: self.max_rows]
        value, text = verbalise(parsed, result.columns, rows)
        if truncated:
            text += f" (Only the first {self.max_rows} rows were kept.)"
        done = time.perf_counter()
        return Answer(
            question,
            ANSWERED,
            text,
            value=value,
            intent=parsed.intent,
            cypher=cypher,
            params=params,
            columns=result.columns,
            rows=rows,
            truncated=truncated,
            timings={
                "parse_s": parsed_at - started,
                "db_s": ran_at - parsed_at,
                "verbalise_s": done - ran_at,
                "total_s": done - started,
            },
        )
