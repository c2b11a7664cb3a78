"""Tables to graph data: the mapping spec, the derived relationships and every source."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from eightfold.graphrag import (
    CsvTables,
    InternationalResults,
    SoccerNetGames,
    StatsBombMatches,
    parse_mapping,
    tables_to_graph,
)

MAPPING = {
    "tables": {
        "games": {
            "node": "Game",
            "key": "gid",
            "properties": {"date": "DATE", "hg": "INT64", "ag": "INT64"},
            "relationships": [
                {"type": "HOME_TEAM", "column": "home", "node": "Team"},
                {"type": "AWAY_TEAM", "column": "away", "node": "Team"},
            ],
            "derived": [
                {"type": "WINNER", "node": "Team", "rule": "greater",
                 "compare": ["hg", "ag"], "choose": ["home", "away"]},
                {"type": "LOSER", "node": "Team", "rule": "less",
                 "compare": ["hg", "ag"], "choose": ["home", "away"]},
            ],
        },
        "goals": {
            "node": "Goal",
            "properties": {"minute": "INT64"},
            "relationships": [{"type": "IN_GAME", "column": "gid", "node": "Game"}],
        },
    }
}  # fmt: skip


def small_tables() -> dict[str, pd.DataFrame]:
    games = pd.DataFrame(
        {
            "gid": ["g1", "g2", "g3"],
            "date": ["2020-01-01", "2020-02-01", "2020-03-01"],
            "home": ["Alpha", "Beta", "Alpha"],
            "away": ["Beta", "Gamma", "Gamma"],
            "hg": ["2", "1", "NA"],
            "ag": ["0", "1", "3"],
        },
        dtype=object,
    )
    goals = pd.DataFrame({"gid": ["g1", "g1", "g9"], "minute": ["10", "NA", "5"]}, dtype=object)
    return {"games": games, "goals": goals}


def edges(data, kind):
    frames = [b.edges for b in data.relationships if b.type == kind]
    return sorted(map(tuple, pd.concat(frames).to_numpy().tolist())) if frames else []


def test_tables_to_graph_nodes_edges_and_derived_relationships():
    data = tables_to_graph(small_tables(), parse_mapping(MAPPING))

    assert sorted(data.nodes["Team"]["id"]) == ["Alpha", "Beta", "Gamma"]
    assert data.nodes["Game"]["hg"].tolist() == [2, 1, None]  # "NA" is missing, not a string
    # A win, a draw (no WINNER/LOSER edge), and a game with an unknown score (no edge either).
    assert edges(data, "WINNER") == [("g1", "Alpha")]
    assert edges(data, "LOSER") == [("g1", "Beta")]
    assert edges(data, "HOME_TEAM") == [("g1", "Alpha"), ("g2", "Beta"), ("g3", "Alpha")]
    # The goal of an unknown game is dropped and counted, never attached to the wrong node.
    assert edges(data, "IN_GAME") == [("goals:0", "g1"), ("goals:1", "g1")]
    assert data.provenance["dangling"] == {"goals.IN_GAME": 1}
    assert data.schema.relationships["WINNER"].pairs == (("Game", "Team"),)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["tables"]["games"]["properties"].update(hg="INTEGER"), "must be one of"),
        (lambda m: m["tables"]["games"].update(colour="red"), "unknown keys"),
        (lambda m: m["tables"]["games"].update(node="Game Node"), "plain identifier"),
        (lambda m: m["tables"]["games"]["derived"][0].update(rule="bigger"), "rule"),
        (lambda m: m["tables"]["goals"].update(node="Game"), "more than one table"),
        (lambda m: m.update(tables={}), "empty"),
    ],
)
def test_mapping_errors_name_the_problem(change, message):
    mapping = json.loads(json.dumps(MAPPING))
    change(mapping)
    with pytest.raises(ValueError, match=message):
        parse_mapping(mapping)


def test_schema_naming_a_missing_column_is_reported():
    tables = small_tables()
    tables["games"] = tables["games"].drop(columns=["away"])
    with pytest.raises(ValueError, match=r"column\(s\) \['away'\].*its columns are"):
        tables_to_graph(tables, parse_mapping(MAPPING))


def test_bad_cell_and_duplicate_key_are_reported():
    tables = small_tables()
    tables["games"].loc[1, "hg"] = "two"
    with pytest.raises(
        ValueError, match=r"'games', column 'hg', row 2: 'two' is not a valid INT64"
    ):
        tables_to_graph(tables, parse_mapping(MAPPING))
    tables = small_tables()
    tables["games"].loc[1, "gid"] = "g1"
    with pytest.raises(ValueError, match="duplicated key"):
        tables_to_graph(tables, parse_mapping(MAPPING))


def test_csv_source_keeps_quoted_commas_and_reports_malformed_files(tmp_path):
    (tmp_path / "games.csv").write_text(
        'gid,date,home,away,hg,ag\ng1,2020-01-01,"Washington, D.C.",Beta,1,0\n', encoding="utf-8"
    )
    (tmp_path / "goals.csv").write_text("gid,minute\ng1,3\n", encoding="utf-8")
    mapping = json.loads(json.dumps(MAPPING))
    mapping["tables"]["games"]["file"] = "games.csv"
    mapping["tables"]["goals"]["file"] = "goals.csv"
    (tmp_path / "schema.json").write_text(json.dumps(mapping), encoding="utf-8")
    data = CsvTables(tmp_path / "schema.json").load()
    assert "Washington, D.C." in data.nodes["Team"]["id"].tolist()
    assert edges(data, "WINNER") == [("g1", "Washington, D.C.")]

    (tmp_path / "goals.csv").write_text('gid,minute\ng1,3,extra,"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read table 'goals'"):
        CsvTables(tmp_path / "schema.json").load()


def test_csv_schema_without_file_and_missing_schema(tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps(MAPPING), encoding="utf-8")
    with pytest.raises(ValueError, match="has no 'file'"):
        CsvTables(tmp_path / "schema.json")
    with pytest.raises(FileNotFoundError):
        CsvTables(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid json"):
        CsvTables(tmp_path / "bad.json")


def test_toml_schema_file(tmp_path):
    (tmp_path / "teams.csv").write_text("name,founded\nAlpha,1900\n", encoding="utf-8")
    (tmp_path / "schema.toml").write_text(
        '[tables.teams]\nfile = "teams.csv"\nnode = "Team"\nkey = "name"\n'
        '[tables.teams.properties]\nfounded = "INT64"\n',
        encoding="utf-8",
    )
    data = CsvTables(tmp_path / "schema.toml").load()
    assert data.nodes["Team"].to_dict("records") == [{"id": "Alpha", "founded": 1900}]


def test_international_slice_matches_the_csv(slice_source, data_dir):
    data = slice_source.load()
    raw = pd.read_csv(data_dir / "international_results" / "results.csv", dtype=str)
    expected = raw[(raw["date"] >= "2018-01-01") & (raw["date"] <= "2019-12-31")]
    assert len(data.nodes["Match"]) == len(expected)
    hs, as_ = expected["home_score"].astype(int), expected["away_score"].astype(int)
    assert sum(len(b.edges) for b in data.relationships if b.type == "WINNER") == int(
        (hs != as_).sum()
    )
    teams = set(expected["home_team"]) | set(expected["away_team"])
    assert set(data.nodes["Team"]["id"]) == teams


def test_international_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="since"):
        InternationalResults(since="last year")
    with pytest.raises(NotADirectoryError):
        InternationalResults(tmp_path / "absent")


def test_soccernet_game_list(tmp_path):
    games = {
        "england_epl": {
            "2014-2015": [
                "2015-02-21 - 18-00 Chelsea 1 - 1 Burnley",
                "2015-04-04 - 19-30 Burnley 0 - 1 Arsenal",
            ]
        },
        "europe_uefa-champions-league": {
            "2016-2017": ["2016-09-13 - 21-45 Paris SG 1 - 1 Arsenal"]
        },
    }
    (tmp_path / "SoccerNetGamesTrain.json").write_text(json.dumps(games), encoding="utf-8")
    data = SoccerNetGames(tmp_path).load()
    assert len(data.nodes["Game"]) == 3
    assert set(data.nodes["Team"]["id"]) == {"Chelsea", "Burnley", "Arsenal", "Paris SG"}
    assert edges(data, "WINNER") == [
        ("england_epl/2014-2015/2015-04-04 - 19-30 Burnley 0 - 1 Arsenal", "Arsenal")
    ]
    assert set(data.nodes["League"]["id"]) == {"england_epl", "europe_uefa-champions-league"}
    assert data.nodes["Game"]["split"].tolist() == ["train"] * 3

    (tmp_path / "SoccerNetGamesValid.json").write_text(
        json.dumps({"x": {"y": ["not a game"]}}), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="not 'YYYY-MM-DD"):
        SoccerNetGames(tmp_path).load()


def test_statsbomb_events_and_lineups(tmp_path):
    events = [
        {"id": "e1", "type": {"name": "Shot"}, "period": 1, "minute": 10, "second": 5,
         "team": {"name": "Barcelona"}, "player": {"id": 5503, "name": "Lionel Messi"},
         "shot": {"outcome": {"name": "Goal"}}},
        {"id": "e2", "type": {"name": "Pass"}, "period": 1, "minute": 11, "second": 0,
         "team": {"name": "Alavés"}, "player": {"id": 7, "name": "Someone"}},
        {"id": "e3", "type": {"name": "Half End"}, "period": 1, "minute": 45, "second": 0,
         "team": {"name": "Barcelona"}},
    ]  # fmt: skip
    lineups = [
        {"team_name": "Barcelona", "lineup": [
            {"player_id": 5503, "player_name": "Lionel Messi", "jersey_number": 10,
             "country": {"name": "Argentina"}}]},
        {"team_name": "Alavés", "lineup": [
            {"player_id": 7, "player_name": "Someone", "jersey_number": 4}]},
    ]  # fmt: skip
    (tmp_path / "events").mkdir()
    (tmp_path / "lineups").mkdir()
    (tmp_path / "events" / "303470.json").write_text(json.dumps(events), encoding="utf-8")
    (tmp_path / "lineups" / "303470.json").write_text(json.dumps(lineups), encoding="utf-8")
    data = StatsBombMatches(
        [tmp_path / "events" / "303470.json"], [tmp_path / "lineups" / "303470.json"]
    ).load()
    shots = data.nodes["Event"]
    assert shots.loc[shots["id"] == "e1", "outcome"].item() == "Goal"
    assert ("e1", "5503") in edges(data, "BY_PLAYER")
    assert sorted(edges(data, "PLAYED_IN")) == [("5503", "303470"), ("7", "303470")]
    assert edges(data, "PLAYS_FOR") == [("5503", "Barcelona"), ("7", "Alavés")]
    with pytest.raises(FileNotFoundError):
        StatsBombMatches([tmp_path / "nope.json"], [])
