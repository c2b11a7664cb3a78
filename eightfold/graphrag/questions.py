"""Questions to parameterised Cypher, offline: an entity catalogue and a grammar of intents.

The parser never guesses. A question is first normalised (case, accents, punctuation), then its
time range ("in 2014", "between 1990 and 2000", "since 2010", "in the 1990s", "on 2014-07-08")
and competition ("at the World Cup", "in friendlies") are read off, and what is left must match
one of the intent patterns below. Entity slots are linked to names in the graph through the
:class:`EntityCatalogue` (exact, alias, then fuzzy matching with rapidfuzz); an unknown name or an
ambiguous one is reported back, and a question outside the grammar gets a "cannot answer" that
lists what can be asked.

Each intent owns a Cypher template assembled from fixed fragments and the graph's own labels;
user text only ever reaches the database as a ``$parameter`` value.
"""

from __future__ import annotations

import datetime
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eightfold.graphrag.schema import GraphSchema

logger = logging.getLogger(__name__)

__all__ = [
    "INTENTS",
    "Ambiguity",
    "CannotAnswer",
    "EntityCatalogue",
    "GraphProfile",
    "Intent",
    "ParsedQuestion",
    "QuestionParser",
    "TimeRange",
    "looks_like_query",
    "normalise",
]

EARLIEST, LATEST = "0000-01-01", "9999-12-31"

# Names written differently from the data set's spelling (in the spirit of SoccerRAG's augmented
# team and league tables); keys are normalised forms.
TEAM_ALIASES: dict[str, str] = {
    "usa": "United States",
    "us": "United States",
    "united states of america": "United States",
    "usmnt": "United States",
    "holland": "Netherlands",
    "the netherlands": "Netherlands",
    "cote d ivoire": "Ivory Coast",
    "czechia": "Czech Republic",
    "korea republic": "South Korea",
    "republic of korea": "South Korea",
    "korea dpr": "North Korea",
    "dpr korea": "North Korea",
    "ir iran": "Iran",
    "china pr": "China",
    "ireland": "Republic of Ireland",
    "eire": "Republic of Ireland",
    "uae": "United Arab Emirates",
    "turkiye": "Turkey",
    "brasil": "Brazil",
    "deutschland": "Germany",
    "espana": "Spain",
    "bosnia": "Bosnia and Herzegovina",
    "trinidad": "Trinidad and Tobago",
    "cabo verde": "Cape Verde",
    "east timor": "Timor-Leste",
    "swaziland": "Eswatini",
    "burma": "Myanmar",
    "macedonia": "North Macedonia",
    "zaire": "DR Congo",
    "soviet union": "Russia",
    "ussr": "Russia",
}

COMPETITION_ALIASES: dict[str, str] = {
    "world cup": "FIFA World Cup",
    "the world cup": "FIFA World Cup",
    "wc": "FIFA World Cup",
    "world cup qualifiers": "FIFA World Cup qualification",
    "world cup qualifying": "FIFA World Cup qualification",
    "world cup qualification": "FIFA World Cup qualification",
    "euros": "UEFA Euro",
    "euro": "UEFA Euro",
    "european championship": "UEFA Euro",
    "european championships": "UEFA Euro",
    "euro qualifiers": "UEFA Euro qualification",
    "euro qualifying": "UEFA Euro qualification",
    "copa america": "Copa América",
    "afcon": "African Cup of Nations",
    "africa cup of nations": "African Cup of Nations",
    "asian cup": "AFC Asian Cup",
    "nations league": "UEFA Nations League",
    "friendlies": "Friendly",
    "friendly matches": "Friendly",
    "friendly games": "Friendly",
    "friendly": "Friendly",
    "premier league": "england_epl",
    "epl": "england_epl",
    "la liga": "spain_laliga",
    "laliga": "spain_laliga",
    "serie a": "italy_serie-a",
    "bundesliga": "germany_bundesliga",
    "ligue 1": "france_ligue-1",
    "champions league": "europe_uefa-champions-league",
    "ucl": "europe_uefa-champions-league",
}

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "fifteen": 15,
    "twenty": 20,
}
MAX_K = 50

# Characters and clause shapes that belong to a query language, not to a question.
_QUERY_CHARS = re.compile(r"[{}\[\];$`<>|\\]|//|/\*")
_QUERY_SHAPE = re.compile(
    r"\b(match|create|merge|delete|detach|set|remove|call|unwind|foreach|return|load\s+csv)\b"
    r"\s*[(:{]",
    re.IGNORECASE,
)


def looks_like_query(text: str) -> bool:
    """True when a question carries query syntax or characters no question needs."""
    return bool(_QUERY_CHARS.search(text) or _QUERY_SHAPE.search(text))


def normalise(text: str) -> str:
    """Lowercase, strip accents, turn punctuation into spaces (keeping ISO dates), squeeze."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("’", "'").replace("–", "-")
    text = re.sub(r"(?<=\w)'s\b", "", text)  # possessive: "Brazil's" -> "Brazil"
    text = re.sub(r"[^a-z0-9\-]+", " ", text)
    text = re.sub(r"(?<![0-9])-|-(?![0-9])", " ", text)  # hyphens only survive inside dates
    return re.sub(r"\s+", " ", text).strip()


class CannotAnswer(Exception):
    """The question is outside the grammar or names something the graph does not have."""

    def __init__(self, reason: str, *, suggestions: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.suggestions = list(suggestions)


class Ambiguity(CannotAnswer):
    """A name matches several entities equally well; the candidates are given back."""

    def __init__(self, kind: str, mention: str, candidates: Sequence[str]) -> None:
        super().__init__(
            f"{mention!r} could be several {kind}s: {', '.join(candidates)}; please say which",
            suggestions=candidates,
        )
        self.kind = kind
        self.mention = mention
        self.candidates = list(candidates)


@dataclass(frozen=True)
class TimeRange:
    """An inclusive range of ISO dates; the default covers everything."""

    start: str = EARLIEST
    end: str = LATEST

    @property
    def is_all(self) -> bool:
        return self.start == EARLIEST and self.end == LATEST

    def describe(self) -> str:
        if self.is_all:
            return ""
        if self.start == self.end:
            return f"on {self.start}"
        if self.start[:4] == self.end[:4] and self.start[5:] == "01-01" and self.end[5:] == "12-31":
            return f"in {self.start[:4]}"
        if self.end == LATEST:
            return f"since {self.start}"
        if self.start == EARLIEST:
            return f"up to {self.end}"
        return f"between {self.start} and {self.end}"


def _year(value: str) -> int:
    year = int(value)
    if not 1800 <= year <= 2200:
        raise CannotAnswer(f"the year {value} is outside the data (1872 onwards)")
    return year


def _day(value: str) -> str:
    try:
        datetime.date.fromisoformat(value)
    except ValueError as exc:
        raise CannotAnswer(f"{value} is not a calendar date; write it as YYYY-MM-DD") from exc
    return value


def extract_time(text: str) -> tuple[TimeRange, str]:
    """Read a time range off a normalised question; return it and the remaining text."""
    rules: list[tuple[str, Callable[[re.Match[str]], TimeRange]]] = [
        (
            r"\b(?:between|from) (\d{4}) (?:and|to|until|through|till) (\d{4})\b",
            lambda m: TimeRange(
                f"{min(_year(m[1]), _year(m[2]))}-01-01", f"{max(_year(m[1]), _year(m[2]))}-12-31"
            ),
        ),
        (r"\bon (\d{4}-\d{2}-\d{2})\b", lambda m: TimeRange(_day(m[1]), m[1])),
        (r"\bin the (\d{3})0s\b", lambda m: TimeRange(f"{m[1]}0-01-01", f"{m[1]}9-12-31")),
        (r"\b(?:since|from) (\d{4})\b", lambda m: TimeRange(f"{_year(m[1])}-01-01", LATEST)),
        (r"\bafter (\d{4})\b", lambda m: TimeRange(f"{_year(m[1]) + 1}-01-01", LATEST)),
        (
            r"\b(?:before|prior to) (\d{4})\b",
            lambda m: TimeRange(EARLIEST, f"{_year(m[1]) - 1}-12-31"),
        ),
        (
            r"\b(?:in|during) (?:the )?(?:year )?(\d{4})\b",
            lambda m: TimeRange(f"{_year(m[1])}-01-01", f"{_year(m[1])}-12-31"),
        ),
    ]
    for pattern, make in rules:
        match = re.search(pattern, text)
        if match:
            rest = (text[: match.start()] + " " + text[match.end() :]).strip()
            return make(match), re.sub(r"\s+", " ", rest)
    return TimeRange(), text


@dataclass
class LinkResult:
    canonical: str
    score: float
    how: str


class EntityCatalogue:
    """Names in the graph, their aliases, and a linker that refuses to guess.

    Parameters
    ----------
    teams, competitions
        Canonical names as stored in the graph.
    players
        ``(player id, name, team)`` triples.
    accept
        Fuzzy score (0-100, rapidfuzz ``ratio`` on normalised text) at or above which the best
        match is taken, provided no other candidate is within ``margin`` of it.
    suggest
        Score at or above which candidates are offered back when nothing is accepted.
    """

    def __init__(
        self,
        teams: Iterable[str],
        competitions: Iterable[str] = (),
        players: Iterable[tuple[str, str, str]] = (),
        *,
        accept: float = 80.0,
        suggest: float = 60.0,
        margin: float = 4.0,
    ) -> None:
        self.teams = sorted(set(teams))
        self.competitions = sorted(set(competitions))
        self.accept, self.suggest, self.margin = accept, suggest, margin
        self._team_index = {normalise(name): name for name in self.teams}
        for alias, name in TEAM_ALIASES.items():
            if name in self.teams:
                self._team_index.setdefault(alias, name)
        self._competition_index = {normalise(name): name for name in self.competitions}
        for alias, name in COMPETITION_ALIASES.items():
            if name in self.competitions:
                self._competition_index.setdefault(alias, name)
        # Longest first so "world cup qualification" wins over "world cup".
        self._competition_keys = sorted(self._competition_index, key=len, reverse=True)
        self.players: dict[str, list[tuple[str, str, str]]] = {}
        self._surnames: dict[str, set[str]] = {}
        for pid, name, team in players:
            key = normalise(name)
            self.players.setdefault(key, []).append((pid, name, team))
            parts = key.split()
            if len(parts) > 1:
                self._surnames.setdefault(parts[-1], set()).add(key)

    @classmethod
    def from_store(cls, store: Any, profile: GraphProfile) -> EntityCatalogue:
        """Read team, competition and player names from a graph store."""
        teams = [row[0] for row in store.run("MATCH (t:Team) RETURN t.name").rows if row[0]]
        competitions: list[str] = []
        if profile.competition:
            query = f"MATCH (c:{profile.competition}) RETURN c.name"
            competitions = [row[0] for row in store.run(query).rows if row[0]]
        players: list[tuple[str, str, str]] = []
        if profile.has_players:
            # Own goals are credited to the other side's team, so only a player's own goals
            # for their side say which team they play for.
            rows = store.run(
                "MATCH (g:Goal)-[:SCORED_BY]->(p:Player) WHERE g.own_goal = false "
                "RETURN DISTINCT p.id, p.name, p.team"
            ).rows
            players = [(r[0], r[1], r[2]) for r in rows if r[1]]
        return cls(teams, competitions, players)

    def _fuzzy(
        self, mention: str, index: Mapping[str, str], kind: str, *, fuzzy: bool = True
    ) -> LinkResult:
        from rapidfuzz import fuzz, process

        key = normalise(mention)
        if not key:
            raise CannotAnswer(f"no {kind} name was given")
        if key in index:
            return LinkResult(
                index[key], 100.0, "exact" if normalise(index[key]) == key else "alias"
            )
        if not fuzzy:
            raise CannotAnswer(f"unknown {kind} {mention!r}")
        # Part of a name ("Korea", "Trinidad"): one name containing those words is taken, several
        # are an ambiguity to report.
        words = set(key.split())
        containing = sorted({name for k, name in index.items() if words <= set(k.split())})
        if len(containing) == 1:
            return LinkResult(containing[0], 90.0, "partial")
        if len(containing) > 1:
            raise Ambiguity(kind, mention, containing[:10])
        hits = process.extract(key, list(index), scorer=fuzz.ratio, limit=5)
        if not hits:
            raise CannotAnswer(f"unknown {kind} {mention!r}")
        best_key, best, _ = hits[0]
        rivals = [
            index[k]
            for k, score, _ in hits[1:]
            if score >= best - self.margin and index[k] != index[best_key]
        ]
        if best >= self.accept and not rivals:
            return LinkResult(index[best_key], float(best), "fuzzy")
        candidates = []
        for k, score, _ in hits:
            if score >= self.suggest and index[k] not in candidates:
                candidates.append(index[k])
        # Several names about equally close ("Korea": North or South) is an ambiguity to
        # report; one weak candidate is an unknown name with a suggestion.
        close = [c for c in candidates if c == index[best_key] or c in rivals]
        if best >= self.suggest and len(close) > 1:
            raise Ambiguity(kind, mention, close)
        raise CannotAnswer(
            f"unknown {kind} {mention!r}"
            + (f"; did you mean {' or '.join(candidates)}?" if candidates else ""),
            suggestions=candidates,
        )

    def team(self, mention: str, *, fuzzy: bool = True) -> str:
        """The canonical team name for a mention; raises :class:`CannotAnswer` otherwise."""
        return self._fuzzy(mention, self._team_index, "team", fuzzy=fuzzy).canonical

    def has_team(self, name: str) -> bool:
        return name in self.teams

    def find_competition(self, text: str) -> tuple[str | None, str]:
        """Find a competition named in normalised text; return it and the text without it."""
        for key in self._competition_keys:
            pattern = (
                rf"\b(?:(?:in|at|during|of) )?(?:the )?{re.escape(key)}"
                r"(?: (?:matches|games|tournament|finals))?\b"
            )
            match = re.search(pattern, text)
            if match:
                rest = (text[: match.start()] + " " + text[match.end() :]).strip()
                return self._competition_index[key], re.sub(r"\s+", " ", rest)
        return None, text

    def player(
        self, mention: str, team: str | None = None, *, fuzzy: bool = True
    ) -> list[tuple[str, str, str]]:
        """Player nodes ``(id, name, team)`` for a mention, optionally restricted to a team.

        One person may appear under one name for one team; the same name for several teams is
        reported as an :class:`Ambiguity` unless ``team`` settles it.
        """
        from rapidfuzz import fuzz, process

        key = normalise(mention)
        if not key:
            raise CannotAnswer("no player name was given")
        names: list[str]
        if key in self.players:
            names = [key]
        elif not fuzzy:
            raise CannotAnswer(f"unknown player {mention!r}")
        elif key in self._surnames:
            # A surname alone is a looser reading: only in the second pass.
            names = sorted(self._surnames[key])
        else:
            hits = process.extract(key, list(self.players), scorer=fuzz.ratio, limit=5)
            # A misspelt surname alone ("Mesi") is closer to a surname than to any full name.
            surname_hits = (
                process.extract(key, list(self._surnames), scorer=fuzz.ratio, limit=5)
                if " " not in key
                else []
            )
            best = max([s for _, s, _ in hits[:1] + surname_hits[:1]], default=0.0)
            if best < self.accept:
                suggestions = [self.players[k][0][1] for k, s, _ in hits if s >= self.suggest]
                for k, s, _ in surname_hits:
                    if s >= self.suggest:
                        for name in sorted(self._surnames[k]):
                            suggestion = self.players[name][0][1]
                            if suggestion not in suggestions:
                                suggestions.append(suggestion)
                raise CannotAnswer(
                    f"unknown player {mention!r}"
                    + (f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""),
                    suggestions=suggestions,
                )
            names = [k for k, s, _ in hits if s >= best - self.margin]
            for k, s, _ in surname_hits:
                if s >= best - self.margin:
                    names.extend(n for n in sorted(self._surnames[k]) if n not in names)
        found = [entry for name in names for entry in self.players[name]]
        if team is not None:
            found = [entry for entry in found if entry[2] == team]
            if not found:
                raise CannotAnswer(f"no player {mention!r} scored for {team} in the data")
        distinct = sorted({f"{name} ({side})" for _, name, side in found})
        if len(distinct) > 1:
            raise Ambiguity("player", mention, distinct)
        return found


@dataclass(frozen=True)
class GraphProfile:
    """Which labels and properties of a graph play the roles the templates need."""

    match: str
    home_score: str
    away_score: str
    competition: str | None
    competition_rel: str | None
    has_players: bool
    has_neutral: bool
    has_shootouts: bool

    @classmethod
    def detect(cls, schema: GraphSchema) -> GraphProfile | None:
        """Recognise a soccer results graph (international results or SoccerNet games)."""
        needed = {"Team"}
        for match, home, away, comp, rel in (
            ("Match", "home_score", "away_score", "Tournament", "IN_TOURNAMENT"),
            ("Game", "home_goals", "away_goals", "League", "IN_LEAGUE"),
        ):
            node = schema.nodes.get(match)
            if node is None or not needed <= set(schema.nodes):
                continue
            if home not in node.properties or "date" not in node.properties:
                continue
            rels = set(schema.relationships)
            if not {"HOME_TEAM", "AWAY_TEAM", "WINNER", "LOSER", "PARTICIPATED_IN"} <= rels:
                continue
            return cls(
                match=match,
                home_score=home,
                away_score=away,
                competition=comp if comp in schema.nodes and rel in rels else None,
                competition_rel=rel if comp in schema.nodes and rel in rels else None,
                has_players={"Player", "Goal"} <= set(schema.nodes) and "SCORED_BY" in rels,
                has_neutral="neutral" in node.properties,
                has_shootouts="Shootout" in schema.nodes and "SHOOTOUT_WINNER" in rels,
            )
        return None


@dataclass
class ParsedQuestion:
    """An intent with linked slots, ready to become a query."""

    intent: str
    slots: dict[str, Any]
    time: TimeRange = field(default_factory=TimeRange)
    competition: str | None = None

    def filters(self) -> str:
        """A human description of the filters, e.g. "at the FIFA World Cup in 2014"."""
        parts = []
        if self.competition:
            parts.append(
                f"in {self.competition}" + (" matches" if self.competition == "Friendly" else "")
            )
        if not self.time.is_all:
            parts.append(self.time.describe())
        return " ".join(parts)


# --------------------------------------------------------------------------------------------
# intents


@dataclass(frozen=True)
class Intent:
    """One kind of question: its patterns, the slots it needs, and its Cypher template.

    ``template(profile, parsed)`` returns ``(cypher, params)``; the cypher text is built from
    fixed fragments and schema labels only.
    """

    name: str
    kind: str
    patterns: tuple[str, ...]
    template: Callable[[GraphProfile, ParsedQuestion], tuple[str, dict[str, Any]]]
    example: str
    needs_players: bool = False
    needs_shootouts: bool = False
    needs_neutral: bool = False


TEAM = r"(?P<team>[a-z0-9][a-z0-9 \-]*?)"
TEAM2 = r"(?P<team2>[a-z0-9][a-z0-9 \-]*?)"
_TEAM_LONGEST = TEAM.replace("*?)", "*)")


def _splits(pattern: str) -> list[str]:
    """A two-team pattern, plus a variant that gives the first team the longest name.

    "between trinidad and tobago and barbados" splits after "trinidad" with the shortest first
    name; when that reading does not link, the longest first name is tried next.
    """
    if TEAM in pattern and TEAM2 in pattern:
        return [pattern, pattern.replace(TEAM, _TEAM_LONGEST)]
    return [pattern]


PLAYER = r"(?P<player>[a-z][a-z \-]*?)"
K = r"(?P<k>\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|fifteen|twenty)"
VS = r"(?:vs|v|versus|and|against|with)"
MATCHES = r"(?:matches|games|internationals|international matches)"


def _where(profile: GraphProfile, parsed: ParsedQuestion, var: str = "m") -> tuple[str, str]:
    """The competition pattern and the time condition shared by every template."""
    pattern = ""
    if parsed.competition and profile.competition:
        pattern = (
            f", ({var})-[:{profile.competition_rel}]->"
            f"(:{profile.competition} {{name: $competition}})"
        )
    condition = f"{var}.date >= $date_from AND {var}.date <= $date_to"
    return pattern, condition


def _params(parsed: ParsedQuestion, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"date_from": parsed.time.start, "date_to": parsed.time.end}
    if parsed.competition:
        params["competition"] = parsed.competition
    params.update(extra)
    return params


def _team_count(rel: str | None, condition: str = "") -> Callable[..., tuple[str, dict[str, Any]]]:
    def template(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
        comp, when = _where(p, q)
        if rel:
            head = f"MATCH (m:{p.match})-[:{rel}]->(t:Team {{name: $team}}){comp}"
        else:
            head = f"MATCH (t:Team {{name: $team}})-[:PARTICIPATED_IN]->(m:{p.match}){comp}"
        extra = condition.format(h=f"m.{p.home_score}", a=f"m.{p.away_score}")
        cypher = f"{head} WHERE {when}{extra} RETURN count(m) AS n"
        return cypher, _params(q, team=q.slots["team"])

    return template


def _team_goals(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    return (
        f"MATCH (t:Team {{name: $team}})-[:PARTICIPATED_IN]->(m:{p.match})-[:HOME_TEAM]->"
        f"(h:Team){comp} WHERE {when} RETURN sum(CASE WHEN h.name = $team THEN "
        f"m.{p.home_score} ELSE m.{p.away_score} END) AS goals, count(m) AS matches",
        _params(q, team=q.slots["team"]),
    )


def _head_to_head(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    return (
        f"MATCH (a:Team {{name: $team}})-[:PARTICIPATED_IN]->(m:{p.match})"
        f"<-[:PARTICIPATED_IN]-(b:Team {{name: $team2}}){comp} WHERE {when} "
        f"OPTIONAL MATCH (m)-[:WINNER]->(w:Team) "
        "RETURN count(m) AS played, "
        "sum(CASE WHEN w.name = $team THEN 1 ELSE 0 END) AS wins_team, "
        "sum(CASE WHEN w.name = $team2 THEN 1 ELSE 0 END) AS wins_team2, "
        "min(m.date) AS first_date",
        _params(q, team=q.slots["team"], team2=q.slots["team2"]),
    )


def _compare_wins(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    return (
        f"MATCH (m:{p.match})-[:WINNER]->(t:Team){comp} "
        f"WHERE t.name IN [$team, $team2] AND {when} RETURN t.name AS team, count(m) AS wins",
        _params(q, team=q.slots["team"], team2=q.slots["team2"]),
    )


def _match_result(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    return (
        f"MATCH (m:{p.match})-[:HOME_TEAM]->(h:Team), (m)-[:AWAY_TEAM]->(a:Team){comp} "
        f"WHERE ((h.name = $team AND a.name = $team2) OR (h.name = $team2 AND a.name = $team)) "
        f"AND {when} RETURN m.date AS date, h.name AS home, m.{p.home_score} AS home_score, "
        f"m.{p.away_score} AS away_score, a.name AS away ORDER BY date",
        _params(q, team=q.slots["team"], team2=q.slots["team2"]),
    )


def _avg_goals(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    return (
        f"MATCH (m:{p.match}){comp} WHERE {when} "
        f"RETURN avg(m.{p.home_score} + m.{p.away_score}) AS avg_goals, count(m) AS matches",
        _params(q),
    )


def _home_win_share(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    neutral = " AND m.neutral = false" if p.has_neutral else ""
    return (
        f"MATCH (m:{p.match}){comp} WHERE {when}{neutral} "
        f"RETURN sum(CASE WHEN m.{p.home_score} > m.{p.away_score} THEN 1 ELSE 0 END) AS "
        "home_wins, count(m) AS matches",
        _params(q),
    )


def _most_wins(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    return (
        f"MATCH (m:{p.match})-[:WINNER]->(t:Team){comp} WHERE {when} "
        "RETURN t.name AS team, count(m) AS wins ORDER BY wins DESC, team ASC LIMIT $k",
        _params(q, k=q.slots["k"]),
    )


def _opponents(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    return (
        f"MATCH (a:Team {{name: $team}})-[:PARTICIPATED_IN]->(m:{p.match})"
        f"<-[:PARTICIPATED_IN]-(b:Team){comp} WHERE {when} AND b.name <> $team "
        "RETURN DISTINCT b.name AS opponent ORDER BY opponent",
        _params(q, team=q.slots["team"]),
    )


def _competitions_of(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    _, when = _where(p, q)
    return (
        f"MATCH (t:Team {{name: $team}})-[:PARTICIPATED_IN]->(m:{p.match})"
        f"-[:{p.competition_rel}]->(c:{p.competition}) WHERE {when} "
        "RETURN DISTINCT c.name AS competition ORDER BY competition",
        _params(q, team=q.slots["team"]),
    )


def _player_goals(penalty: bool) -> Callable[..., tuple[str, dict[str, Any]]]:
    def template(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
        comp, when = _where(p, q)
        extra = " AND g.penalty = true" if penalty else ""
        return (
            f"MATCH (g:Goal)-[:SCORED_BY]->(p:Player), (g)-[:IN_MATCH]->(m:{p.match}){comp} "
            f"WHERE p.id IN $players AND g.own_goal = false{extra} AND {when} "
            "RETURN count(g) AS goals",
            _params(q, players=q.slots["player_ids"]),
        )

    return template


def _top_scorers(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    team = " AND p.team = $team" if q.slots.get("team") else ""
    params = _params(q, k=q.slots["k"])
    if q.slots.get("team"):
        params["team"] = q.slots["team"]
    return (
        f"MATCH (g:Goal)-[:SCORED_BY]->(p:Player), (g)-[:IN_MATCH]->(m:{p.match}){comp} "
        f"WHERE g.own_goal = false{team} AND {when} "
        "RETURN p.name AS player, p.team AS team, count(g) AS goals "
        "ORDER BY goals DESC, player ASC, team ASC LIMIT $k",
        params,
    )


def _scored_against(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q)
    return (
        f"MATCH (g:Goal)-[:SCORED_BY]->(p:Player), (g)-[:IN_MATCH]->(m:{p.match})"
        f"<-[:PARTICIPATED_IN]-(o:Team {{name: $team2}}){comp} "
        f"WHERE p.id IN $players AND g.own_goal = false AND p.team <> $team2 AND {when} "
        "RETURN count(g) AS goals",
        _params(q, players=q.slots["player_ids"], team2=q.slots["team2"]),
    )


def _shootout_wins(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    comp, when = _where(p, q, "s")
    if comp:
        comp = (
            f", (s)-[:SHOOTOUT_OF]->(m:{p.match})-[:{p.competition_rel}]->"
            f"(:{p.competition} {{name: $competition}})"
        )
    return (
        f"MATCH (s:Shootout)-[:SHOOTOUT_WINNER]->(t:Team {{name: $team}}){comp} WHERE {when} "
        "RETURN count(s) AS n",
        _params(q, team=q.slots["team"]),
    )


def _team_exists(p: GraphProfile, q: ParsedQuestion) -> tuple[str, dict[str, Any]]:
    return "MATCH (t:Team) WHERE t.name = $team RETURN count(t) AS n", {"team": q.slots["team"]}


INTENTS: tuple[Intent, ...] = (
    Intent(
        "team_exists",
        "existence",
        (
            rf"^(?:is|are) {TEAM} (?:in|part of|covered by|included in) (?:the"
            rf" )?(?:data|dataset|data set|graph|database)$",
            rf"^(?:does|do) (?:the )?(?:data|dataset|data set|graph|database)"
            rf" (?:have|include|contain|cover) {TEAM}$",
        ),
        _team_exists,
        "Is Brazil in the data?",
    ),
    Intent(
        "head_to_head_winner",
        "compare",
        (
            rf"^who (?:has )?won more (?:often |{MATCHES} )?(?:between|when) {TEAM}"
            rf" (?:and|played|met|faced) {TEAM2}(?: played| met)?$",
            rf"^(?:in|across) {MATCHES} between {TEAM} and {TEAM2} who (?:has )?won more(?:"
            rf" often)?$",
            rf"^who (?:has|had) the better head to head record {TEAM} or {TEAM2}$",
            rf"^who leads the head to head between {TEAM} and {TEAM2}$",
        ),
        _head_to_head,
        "Who won more matches between Brazil and Argentina?",
    ),
    Intent(
        "compare_wins",
        "compare",
        (
            rf"^(?:who|which team) (?:has |had )?won more {MATCHES} {TEAM} or {TEAM2}$",
            rf"^(?:did|has) {TEAM} or {TEAM2} win more {MATCHES}$",
            rf"^(?:who|which team) has more wins {TEAM} or {TEAM2}$",
            rf"^(?:who|which team) (?:has |had )?(?:won more|more wins)(?: {MATCHES})? {TEAM} or"
            rf" {TEAM2}$",
        ),
        _compare_wins,
        "Who won more matches, Spain or Italy?",
    ),
    Intent(
        "first_meeting",
        "lookup",
        (
            rf"^when did {TEAM} (?:first|initially) (?:play|meet|face) {TEAM2}$",
            rf"^when (?:was|is) the first (?:match|game|meeting) between {TEAM} and {TEAM2}$",
            rf"^when did {TEAM} and {TEAM2} (?:first )?(?:play|meet) (?:each other )?for the"
            rf" first time$",
            rf"^when did {TEAM} and {TEAM2} first (?:play|meet)(?: each other)?$",
        ),
        _head_to_head,
        "When did England first play Scotland?",
    ),
    Intent(
        "ever_played",
        "existence",
        (
            rf"^(?:have|has|did) {TEAM} and {TEAM2} ever (?:played|play|met|meet|faced|face)"
            r"(?: each other| one another)?$",
            rf"^(?:have|has|did) {TEAM} ever (?:played|play|met|meet|faced|face)(?: against)?"
            rf" {TEAM2}$",
            rf"^(?:have|has|did) {TEAM} (?:played|play|met|meet|faced|face) {TEAM2}(?: ever)?$",
            rf"^is there (?:a|any) (?:match|game) between {TEAM} and {TEAM2}$",
        ),
        _head_to_head,
        "Have Brazil and Japan ever played each other?",
    ),
    Intent(
        "match_result",
        "lookup",
        (
            rf"^what (?:was|were|is) the (?:score|scores|result|results|final score)(?: of| in|"
            rf" for)?(?: the)?(?: {MATCHES}| match| game)?(?: between)? {TEAM} {VS} {TEAM2}$",
            rf"^how did (?:the )?(?:match|game) (?:between )?{TEAM} {VS} {TEAM2} end$",
            rf"^(?:score|result) (?:of )?{TEAM} {VS} {TEAM2}$",
            rf"^what was the (?:score|result) when {TEAM} played {TEAM2}$",
        ),
        _match_result,
        "What was the score of Brazil vs Germany on 2014-07-08?",
    ),
    Intent(
        "head_to_head_count",
        "count",
        (
            rf"^how many times (?:have|has|did) {TEAM} and {TEAM2} "
            r"(?:played|play|met|meet|faced|face)(?: each other| one another)?$",
            rf"^how many times (?:have|has|did) {TEAM} (?:played|play|met|meet|faced|face)"
            rf"(?: against)? {TEAM2}$",
            rf"^how many {MATCHES} (?:have|has|did) {TEAM} (?:played|play)"
            rf" (?:against|with|versus|vs) {TEAM2}$",
            rf"^how many {MATCHES} (?:were there |have there been )?between {TEAM} and {TEAM2}$",
            rf"^number of {MATCHES} between {TEAM} and {TEAM2}$",
        ),
        _head_to_head,
        "How many times have England and Scotland played each other?",
    ),
    Intent(
        "player_penalties",
        "count",
        (
            rf"^how many penalt(?:y|ies)(?: goals)? (?:did|has|have) {PLAYER}"
            rf" (?:score|scored|convert|converted)(?: for (?P<team>[a-z ]+?))?$",
            rf"^how many goals (?:did|has) {PLAYER} score from (?:the )?penalt(?:y|ies)(?: spot)?$",
        ),
        _player_goals(penalty=True),
        "How many penalties did Cristiano Ronaldo score?",
        needs_players=True,
    ),
    Intent(
        "scored_against",
        "existence",
        (rf"^(?:did|has|have) {PLAYER} (?:ever )?(?:score|scored) (?:a goal )?against {TEAM2}$",),
        _scored_against,
        "Did Lionel Messi ever score against Brazil?",
        needs_players=True,
    ),
    Intent(
        "top_scorers",
        "topk",
        (
            rf"^who (?:are|were) the (?:top|best|leading) {K} (?:goal ?scorers|scorers)(?: for"
            rf" (?P<team>[a-z ]+?))?$",
            rf"^(?:list|name|give me|show) the (?:top|best|leading) {K} (?:goal"
            rf" ?scorers|scorers)(?: for (?P<team>[a-z ]+?))?$",
            rf"^(?:which|what) {K} players scored the most goals(?: for (?P<team>[a-z ]+?))?$",
            r"^who (?:is|was) the (?:top|best|leading) (?:goal ?scorer|scorer)(?: for"
            r" (?P<team>[a-z ]+?))?$",
            r"^who scored the most goals(?: for (?P<team>[a-z ]+?))?$",
            rf"^top {K} (?:goal ?scorers|scorers)(?: for (?P<team>[a-z ]+?))?$",
        ),
        _top_scorers,
        "Who are the top 5 scorers at the FIFA World Cup?",
        needs_players=True,
    ),
    Intent(
        "player_goals",
        "count",
        (
            rf"^how many goals (?:did|has|have) {PLAYER} (?:score|scored|got|get|netted)(?: for"
            rf" (?P<team>[a-z ]+?))?$",
            rf"^how many times (?:did|has) {PLAYER} score(?: for (?P<team>[a-z ]+?))?$",
            rf"^(?:what is|what was|what s) (?:the )?(?:number of |total )?goals? (?:count |tally"
            rf" )?(?:of|for|by) {PLAYER}$",
            rf"^number of goals (?:scored )?by {PLAYER}(?: for (?P<team>[a-z ]+?))?$",
            rf"^{PLAYER} goals(?: for (?P<team>[a-z ]+?))?$",
        ),
        _player_goals(penalty=False),
        "How many goals did Lionel Messi score?",
        needs_players=True,
    ),
    Intent(
        "most_wins",
        "topk",
        (
            rf"^which {K} teams (?:won|have won|had) the most (?:{MATCHES}|wins)$",
            rf"^(?:which|what) (?:team|country) (?:won|has won|had) the most (?:{MATCHES}|wins)$",
            rf"^(?:list|name|give me|show) the {K} teams with the most wins$",
            rf"^(?:what are )?the {K} teams with the most wins$",
            rf"^top {K} teams by wins$",
        ),
        _most_wins,
        "Which 3 teams won the most matches at the World Cup?",
    ),
    Intent(
        "team_goals",
        "aggregate",
        (
            rf"^how many goals (?:did|has|have) {TEAM} (?:score|scored)(?: in total| overall|"
            rf" altogether)?$",
            rf"^(?:what is|what was) the (?:total )?number of goals (?:scored )?by {TEAM}$",
            rf"^total goals (?:scored )?by {TEAM}$",
        ),
        _team_goals,
        "How many goals did Germany score at the World Cup?",
    ),
    Intent(
        "avg_goals",
        "aggregate",
        (
            r"^(?:what is|what was|what s) the (?:average|mean) (?:number of )?goals per"
            r" (?:match|game)$",
            r"^how many goals (?:were|are) scored per (?:match|game) on average$",
            r"^(?:average|mean) goals per (?:match|game)$",
            r"^on average how many goals (?:were|are) scored per (?:match|game)$",
        ),
        _avg_goals,
        "What is the average number of goals per match at the World Cup?",
    ),
    Intent(
        "home_win_share",
        "aggregate",
        (
            r"^(?:what|which) (?:share|percentage|proportion|fraction) of (?:matches|games)"
            r" (?:did|do|were) (?:the )?home (?:teams?|side) win$",
            r"^(?:what|which) (?:share|percentage|proportion|fraction) of (?:matches|games)"
            r" (?:were )?won by the home (?:team|side)$",
            r"^how often (?:did|does|do) the home (?:team|side) win$",
            r"^home win (?:rate|percentage|share)$",
        ),
        _home_win_share,
        "What share of matches did the home team win in 2010?",
    ),
    Intent(
        "shootout_wins",
        "count",
        (
            rf"^how many (?:penalty )?shoot ?outs (?:did|has|have) {TEAM} won$",
            rf"^how many (?:penalty )?shoot ?outs (?:did|has|have) {TEAM} win$",
            rf"^how many times (?:did|has) {TEAM} win (?:a|on) (?:penalty )?(?:shoot"
            rf" ?outs?|penalties)$",
        ),
        _shootout_wins,
        "How many penalty shootouts has Argentina won?",
        needs_shootouts=True,
    ),
    Intent(
        "team_wins",
        "count",
        (
            rf"^how many {MATCHES} (?:did|has|have) {TEAM} (?:win|won)$",
            rf"^how many (?:wins|victories) (?:did|does|has|have) {TEAM}(?: have| had| got|"
            rf" recorded)?$",
            rf"^how many times (?:did|has|have) {TEAM} (?:win|won)$",
            rf"^(?:number|count) of (?:wins|victories) (?:for|by) {TEAM}$",
            rf"^{TEAM} wins$",
        ),
        _team_count("WINNER"),
        "How many matches did Brazil win in 2002?",
    ),
    Intent(
        "team_losses",
        "count",
        (
            rf"^how many {MATCHES} (?:did|has|have) {TEAM} (?:lose|lost)$",
            rf"^how many (?:defeats|losses) (?:did|does|has|have) {TEAM}"
            r"(?: have| had| suffered| suffer)?$",
            rf"^how many times (?:did|has|have) {TEAM} (?:lose|lost)$",
            rf"^(?:number|count) of (?:defeats|losses) (?:for|of) {TEAM}$",
        ),
        _team_count("LOSER"),
        "How many matches did Italy lose at the Euros?",
    ),
    Intent(
        "team_draws",
        "count",
        (
            rf"^how many {MATCHES} (?:did|has|have) {TEAM} (?:draw|drawn|drew|tie|tied)$",
            rf"^how many draws (?:did|does|has|have) {TEAM}(?: have| had)?$",
            rf"^(?:number|count) of draws (?:for|of|by) {TEAM}$",
        ),
        _team_count(None, " AND {h} = {a}"),
        "How many matches did France draw in 2018?",
    ),
    Intent(
        "team_matches",
        "count",
        (
            rf"^how many {MATCHES} (?:did|has|have) {TEAM} (?:play|played)$",
            rf"^how many {MATCHES} (?:did|has|have) {TEAM} (?:taken part in|participated"
            rf" in|featured in)$",
            rf"^(?:number|count) of {MATCHES} (?:played )?(?:by|for) {TEAM}$",
        ),
        _team_count(None),
        "How many matches has Japan played since 2000?",
    ),
    Intent(
        "opponents",
        "list",
        (
            rf"^(?:which|what) (?:teams|countries|opponents|sides) did {TEAM}"
            rf" (?:play|face|meet)(?: against)?$",
            rf"^(?:who|which teams) (?:did|has) {TEAM} (?:play|played|face|faced)(?: against)?$",
            rf"^(?:list|name|show) (?:the )?(?:opponents|teams) (?:of|that played|faced by)"
            rf" {TEAM}$",
            rf"^(?:list|name|show) {TEAM} opponents$",
        ),
        _opponents,
        "Which teams did Japan play in 2019?",
    ),
    Intent(
        "competitions_of_team",
        "list",
        (
            rf"^(?:which|what) (?:tournaments|competitions) did {TEAM} (?:play|take"
            rf" part|participate|compete) in$",
            rf"^(?:in )?(?:which|what) (?:tournaments|competitions) did {TEAM} (?:play|take"
            rf" part|participate|compete)$",
            rf"^(?:list|name|show) (?:the )?(?:tournaments|competitions) {TEAM} played in$",
        ),
        _competitions_of,
        "Which tournaments did Spain play in 2010?",
    ),
)

INTENTS_BY_NAME = {intent.name: intent for intent in INTENTS}
_FILLER = re.compile(
    r"^(?:please |can you |could you |tell me |i want to know |i d like to know |do you know )+"
    r"|(?: please| in total| overall| altogether| of all time| all time| ever)+$"
)


class QuestionParser:
    """Match a question against the intent grammar and link its entities.

    Parameters
    ----------
    catalogue
        The graph's names.
    profile
        Which labels play the roles the templates need.
    """

    def __init__(self, catalogue: EntityCatalogue, profile: GraphProfile) -> None:
        self.catalogue = catalogue
        self.profile = profile
        self.intents = [
            intent
            for intent in INTENTS
            if (profile.has_players or not intent.needs_players)
            and (profile.has_shootouts or not intent.needs_shootouts)
            and (profile.competition or intent.name != "competitions_of_team")
        ]
        self._compiled = [
            (intent, [re.compile(p) for pattern in intent.patterns for p in _splits(pattern)])
            for intent in self.intents
        ]

    def capabilities(self) -> list[str]:
        """One example question per supported intent."""
        return [intent.example for intent in self.intents]

    def parse(self, question: str) -> ParsedQuestion:
        """Turn a question into a :class:`ParsedQuestion`.

        Raises
        ------
        CannotAnswer
            The question is not in the grammar, or names an unknown entity.
        Ambiguity
            A name matches several entities.
        """
        if not isinstance(question, str):
            raise TypeError(f"question must be a string, got {type(question).__name__}")
        if looks_like_query(question):
            raise CannotAnswer(
                "the question contains query syntax or special characters ({ } [ ] ; $ ` < > |); "
                "ask in plain words, e.g. " + self.intents[0].example
            )
        text = normalise(question)
        if not text:
            raise CannotAnswer("the question is empty")
        if len(text) > 300:
            raise CannotAnswer("the question is too long (over 300 characters)")

        time, text = extract_time(text)
        competition, text = self.catalogue.find_competition(text)
        text = _FILLER.sub("", text).strip()
        # Filler removal may expose more filler at the ends ("please tell me ... ever").
        text = _FILLER.sub("", text).strip()

        # Two passes: exact names and aliases first, so "How many goals did Jordan score?"
        # means the team before any fuzzy reading can make it a player; then fuzzy matching.
        errors: list[CannotAnswer] = []
        for fuzzy in (False, True):
            for intent, patterns in self._compiled:
                for pattern in patterns:
                    match = pattern.match(text)
                    if not match:
                        continue
                    try:
                        slots = self._link(intent, match.groupdict(), fuzzy=fuzzy)
                    except CannotAnswer as exc:
                        errors.append(exc)
                        continue
                    return ParsedQuestion(intent.name, slots, time, competition)
        if errors:
            ambiguous = [exc for exc in errors if isinstance(exc, Ambiguity)]
            raise ambiguous[0] if ambiguous else errors[-1]
        raise CannotAnswer(
            "this question is outside what the graph can answer offline",
            suggestions=self.capabilities(),
        )

    def _link(
        self, intent: Intent, groups: dict[str, str | None], *, fuzzy: bool = True
    ) -> dict[str, Any]:
        slots: dict[str, Any] = {}
        if intent.name == "team_exists":
            mention = groups["team"] or ""
            try:
                slots["team"] = self.catalogue.team(mention, fuzzy=fuzzy)
            except CannotAnswer:
                if not fuzzy:
                    raise
                # An existence question about an unknown name has an answer: no.
                slots["team"] = mention
            return slots
        for name in ("team", "team2"):
            if groups.get(name):
                slots[name] = self.catalogue.team(groups[name] or "", fuzzy=fuzzy)
        if "team" in slots and "team2" in slots and slots["team"] == slots["team2"]:
            raise CannotAnswer(f"both teams are {slots['team']}; name two different teams")
        if groups.get("player"):
            found = self.catalogue.player(groups["player"] or "", slots.get("team"), fuzzy=fuzzy)
            slots["player"] = found[0][1]
            slots["player_team"] = found[0][2]
            slots["player_ids"] = sorted(entry[0] for entry in found)
        if intent.kind == "topk":
            raw = groups.get("k")
            k = 1 if raw is None else NUMBER_WORDS.get(raw) or int(raw)
            if not 1 <= k <= MAX_K:
                raise CannotAnswer(f"ask for between 1 and {MAX_K} results, not {k}")
            slots["k"] = k
        if intent.name in ("head_to_head_count", "ever_played") and "team2" not in slots:
            raise CannotAnswer("name the two teams, e.g. 'Have Brazil and Japan ever played?'")
        return slots

    def to_cypher(self, parsed: ParsedQuestion) -> tuple[str, dict[str, Any]]:
        """The parameterised Cypher and its parameters for a parsed question."""
        intent = INTENTS_BY_NAME[parsed.intent]
        if parsed.competition and not self.profile.competition:
            raise CannotAnswer("this graph has no competitions to filter on")
        return intent.template(self.profile, parsed)
