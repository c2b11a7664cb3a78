"""Gold answers computed directly with pandas, independently of the Cypher templates.

This module reads the source tables of the international results and answers each kind of
question with plain DataFrame operations. It shares no code with the graph templates (it knows
nothing of nodes or queries), so agreement between the two is evidence that both are right. It is
also the "direct pandas" system of the evaluation, and the reader of the row-chunk RAG baseline,
which applies the same functions to the rows it retrieved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["GOLD_FUNCTIONS", "SoccerTables", "gold_answer"]

_EARLIEST, _LATEST = "0000-01-01", "9999-12-31"


@dataclass
class SoccerTables:
    """Typed results, goals and shootouts, with each goal and shootout's tournament attached.

    Parameters
    ----------
    results, goals, shootouts
        Frames with the columns of the international results CSV files (strings are fine).
    """

    results: pd.DataFrame
    goals: pd.DataFrame
    shootouts: pd.DataFrame

    @classmethod
    def from_raw(cls, tables: Mapping[str, pd.DataFrame]) -> SoccerTables:
        results = tables["results"].copy()
        results = results[
            results["home_score"].astype(str).str.strip().str.fullmatch(r"\d+")
            & results["away_score"].astype(str).str.strip().str.fullmatch(r"\d+")
        ].copy()
        results["home_score"] = results["home_score"].astype(int)
        results["away_score"] = results["away_score"].astype(int)
        results["neutral"] = results["neutral"].astype(str).str.upper().eq("TRUE")
        # Goals and shootouts name their match by date and teams; when two matches share
        # them, the first one listed is meant.
        first = results.drop_duplicates(["date", "home_team", "away_team"])[
            ["date", "home_team", "away_team", "tournament"]
        ]
        goals = tables["goalscorers"].copy()
        goals = goals[goals["scorer"].astype(str).str.strip().ne("NA")]
        goals = goals[goals["scorer"].astype(str).str.strip().ne("")]
        goals["own_goal"] = goals["own_goal"].astype(str).str.upper().eq("TRUE")
        goals["penalty"] = goals["penalty"].astype(str).str.upper().eq("TRUE")
        goals = goals.merge(first, on=["date", "home_team", "away_team"], how="inner")
        shootouts = tables["shootouts"].copy()
        shootouts = shootouts.merge(first, on=["date", "home_team", "away_team"], how="left")
        return cls(results.reset_index(drop=True), goals.reset_index(drop=True), shootouts)

    def subset(
        self,
        result_rows: Any = None,
        goal_rows: Any = None,
        shootout_rows: Any = None,
    ) -> SoccerTables:
        """The same tables restricted to some row positions (the rows a retriever returned)."""

        def take(frame: pd.DataFrame, rows: Any) -> pd.DataFrame:
            if rows is None:
                return frame.iloc[0:0]
            return frame.iloc[sorted(set(rows))]

        return SoccerTables(
            take(self.results, result_rows),
            take(self.goals, goal_rows),
            take(self.shootouts, shootout_rows),
        )


def _filter(frame: pd.DataFrame, slots: Mapping[str, Any]) -> pd.DataFrame:
    start = slots.get("date_from") or _EARLIEST
    end = slots.get("date_to") or _LATEST
    keep = (frame["date"] >= start) & (frame["date"] <= end)
    if slots.get("competition"):
        keep &= frame["tournament"] == slots["competition"]
    return frame[keep]


def _played(t: SoccerTables, slots: Mapping[str, Any], team: str) -> pd.DataFrame:
    frame = _filter(t.results, slots)
    return frame[(frame["home_team"] == team) | (frame["away_team"] == team)]


def _winner(frame: pd.DataFrame) -> pd.Series:
    home = frame["home_score"] > frame["away_score"]
    away = frame["away_score"] > frame["home_score"]
    return frame["home_team"].where(home, frame["away_team"].where(away, None))


def _loser(frame: pd.DataFrame) -> pd.Series:
    home = frame["home_score"] < frame["away_score"]
    away = frame["away_score"] < frame["home_score"]
    return frame["home_team"].where(home, frame["away_team"].where(away, None))


def _h2h(t: SoccerTables, s: Mapping[str, Any]) -> pd.DataFrame:
    frame = _filter(t.results, s)
    a, b = s["team"], s["team2"]
    pair = ((frame["home_team"] == a) & (frame["away_team"] == b)) | (
        (frame["home_team"] == b) & (frame["away_team"] == a)
    )
    return frame[pair]


def _wins(t: SoccerTables, s: Mapping[str, Any]) -> int:
    return int((_winner(_played(t, s, s["team"])) == s["team"]).sum())


def _losses(t: SoccerTables, s: Mapping[str, Any]) -> int:
    return int((_loser(_played(t, s, s["team"])) == s["team"]).sum())


def _draws(t: SoccerTables, s: Mapping[str, Any]) -> int:
    frame = _played(t, s, s["team"])
    return int((frame["home_score"] == frame["away_score"]).sum())


def _matches(t: SoccerTables, s: Mapping[str, Any]) -> int:
    return len(_played(t, s, s["team"]))


def _team_goals(t: SoccerTables, s: Mapping[str, Any]) -> int:
    frame = _played(t, s, s["team"])
    home = frame.loc[frame["home_team"] == s["team"], "home_score"].sum()
    away = frame.loc[frame["away_team"] == s["team"], "away_score"].sum()
    return int(home + away)


def _h2h_count(t: SoccerTables, s: Mapping[str, Any]) -> int:
    return len(_h2h(t, s))


def _ever_played(t: SoccerTables, s: Mapping[str, Any]) -> bool:
    return len(_h2h(t, s)) > 0


def _first_meeting(t: SoccerTables, s: Mapping[str, Any]) -> str | None:
    frame = _h2h(t, s)
    return None if frame.empty else str(frame["date"].min())


def _h2h_winner(t: SoccerTables, s: Mapping[str, Any]) -> str | None:
    frame = _h2h(t, s)
    if frame.empty:
        return None
    winners = _winner(frame)
    a, b = int((winners == s["team"]).sum()), int((winners == s["team2"]).sum())
    return s["team"] if a > b else s["team2"] if b > a else "tie"


def _compare_wins(t: SoccerTables, s: Mapping[str, Any]) -> str:
    a = _wins(t, {**s, "team": s["team"]})
    b = _wins(t, {**s, "team": s["team2"]})
    return s["team"] if a > b else s["team2"] if b > a else "tie"


def _match_result(t: SoccerTables, s: Mapping[str, Any]) -> list[str]:
    frame = _h2h(t, s).sort_values("date", kind="stable")
    return [
        f"{r.date} {r.home_team} {r.home_score}-{r.away_score} {r.away_team}"
        for r in frame.itertuples()
    ]


def _avg_goals(t: SoccerTables, s: Mapping[str, Any]) -> float | None:
    frame = _filter(t.results, s)
    if frame.empty:
        return None
    return round(float((frame["home_score"] + frame["away_score"]).mean()), 2)


def _home_win_share(t: SoccerTables, s: Mapping[str, Any]) -> float | None:
    frame = _filter(t.results, s)
    frame = frame[~frame["neutral"]]
    if frame.empty:
        return None
    return round(100.0 * float((frame["home_score"] > frame["away_score"]).mean()), 1)


def _most_wins(t: SoccerTables, s: Mapping[str, Any]) -> list[str]:
    winners = _winner(_filter(t.results, s)).dropna()
    counts = winners.value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [name for name, _ in ranked[: s["k"]]]


def _scoring(t: SoccerTables, s: Mapping[str, Any]) -> pd.DataFrame:
    goals = _filter(t.goals, s)
    return goals[~goals["own_goal"]]


def _top_scorers(t: SoccerTables, s: Mapping[str, Any]) -> list[str]:
    goals = _scoring(t, s)
    if s.get("team"):
        goals = goals[goals["team"] == s["team"]]
    counts = goals.groupby(["scorer", "team"]).size()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1]))
    return [scorer for (scorer, _), _ in ranked[: s["k"]]]


def _player_goals(t: SoccerTables, s: Mapping[str, Any]) -> int:
    goals = _scoring(t, s)
    return int(((goals["scorer"] == s["player"]) & (goals["team"] == s["player_team"])).sum())


def _player_penalties(t: SoccerTables, s: Mapping[str, Any]) -> int:
    goals = _scoring(t, s)
    mine = (goals["scorer"] == s["player"]) & (goals["team"] == s["player_team"])
    return int((mine & goals["penalty"]).sum())


def _scored_against(t: SoccerTables, s: Mapping[str, Any]) -> bool:
    goals = _scoring(t, s)
    opponent = s["team2"]
    mine = (goals["scorer"] == s["player"]) & (goals["team"] == s["player_team"])
    against = (goals["home_team"] == opponent) | (goals["away_team"] == opponent)
    return bool((mine & against & (goals["team"] != opponent)).any())


def _opponents(t: SoccerTables, s: Mapping[str, Any]) -> list[str]:
    frame = _played(t, s, s["team"])
    others = set(frame["home_team"]) | set(frame["away_team"])
    others.discard(s["team"])
    return sorted(others)


def _competitions(t: SoccerTables, s: Mapping[str, Any]) -> list[str]:
    return sorted(set(_played(t, s, s["team"])["tournament"]))


def _shootout_wins(t: SoccerTables, s: Mapping[str, Any]) -> int:
    frame = t.shootouts
    start, end = s.get("date_from") or _EARLIEST, s.get("date_to") or _LATEST
    keep = (frame["winner"] == s["team"]) & (frame["date"] >= start) & (frame["date"] <= end)
    if s.get("competition"):
        keep &= frame["tournament"] == s["competition"]
    return int(keep.sum())


def _team_exists(t: SoccerTables, s: Mapping[str, Any]) -> bool:
    return s["team"] in set(t.results["home_team"]) | set(t.results["away_team"])


GOLD_FUNCTIONS: dict[str, Callable[[SoccerTables, Mapping[str, Any]], Any]] = {
    "team_wins": _wins,
    "team_losses": _losses,
    "team_draws": _draws,
    "team_matches": _matches,
    "team_goals": _team_goals,
    "head_to_head_count": _h2h_count,
    "ever_played": _ever_played,
    "first_meeting": _first_meeting,
    "head_to_head_winner": _h2h_winner,
    "compare_wins": _compare_wins,
    "match_result": _match_result,
    "avg_goals": _avg_goals,
    "home_win_share": _home_win_share,
    "most_wins": _most_wins,
    "top_scorers": _top_scorers,
    "player_goals": _player_goals,
    "player_penalties": _player_penalties,
    "scored_against": _scored_against,
    "opponents": _opponents,
    "competitions_of_team": _competitions,
    "shootout_wins": _shootout_wins,
    "team_exists": _team_exists,
}


def gold_answer(tables: SoccerTables, intent: str, slots: Mapping[str, Any]) -> Any:
    """The answer to one question from the tables.

    Parameters
    ----------
    tables
        The data (or a subset of it).
    intent
        One of :data:`GOLD_FUNCTIONS`.
    slots
        ``team``, ``team2``, ``player``, ``player_team``, ``k``, ``competition``,
        ``date_from`` and ``date_to`` as the intent needs.
    """
    if intent not in GOLD_FUNCTIONS:
        raise ValueError(f"intent must be one of {sorted(GOLD_FUNCTIONS)}, got {intent!r}")
    return GOLD_FUNCTIONS[intent](tables, slots)
