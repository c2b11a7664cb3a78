"""The LLM text-to-Cypher path: extraction, read-only and schema guards, LIMIT, repair, fallback."""

from __future__ import annotations

import time

import pytest

from eightfold.graphrag import (
    CypherRejected,
    GraphQA,
    GraphStore,
    check_read_only,
    check_schema,
    extract_cypher,
    impose_limit,
    strip_comments,
)
from eightfold.llm import LLMClient, LLMConfig
from tests.fake_openai import FakeReply, fake_openai

GOOD = "MATCH (m:Match)-[:WINNER]->(t:Team {name: 'Japan'}) RETURN count(m) AS wins"


@pytest.mark.parametrize(
    "reply",
    [
        GOOD,
        f"```cypher\n{GOOD};\n```",
        f"Cypher: {GOOD}<|im_end|>",
        f"Here is the query:\n```\n{GOOD}\n```\nIt counts wins.",
    ],
)
def test_extract_cypher_strips_fences_prefixes_and_tokens(reply):
    assert extract_cypher(reply) == GOOD


@pytest.mark.parametrize(
    "cypher",
    [
        "CREATE (:Team {name: 'X'}) RETURN 1",
        "MATCH (t:Team) DETACH DELETE t RETURN count(*)",
        "match (t:Team) set t.name = 'x' return t",
        "MATCH (t:Team) MERGE (t)-[:WINNER]->(t) RETURN t",
        "MATCH (t:Team) REMOVE t.name RETURN t",
        "MATCH (t:Team) FOREACH (x IN [1] | CREATE (:Team)) RETURN t",
        "CALL db.labels() YIELD label RETURN label",
        "LOAD CSV FROM 'http://evil.example/x.csv' AS row RETURN row",
        "MATCH (t:Team) RETURN t; MATCH (n) DELETE n",
        "MATCH (t:Team) ＣＲＥＡＴＥ (:Team) RETURN t",  # full-width letters
        "MATCH (t:Team) /* harmless */ CREATE (:Team) RETURN t",
        "MATCH (t:Team) CALL { CREATE (:Team) } RETURN t",
    ],
)
def test_write_queries_are_refused(cypher):
    with pytest.raises(CypherRejected) as info:
        check_read_only(cypher)
    assert info.value.write


def test_read_queries_pass_even_with_keywords_inside_strings():
    check_read_only(GOOD)
    check_read_only("MATCH (t:Team) WHERE t.name = 'CREATE SET DELETE' RETURN t.name // delete")


def test_schema_check(slice_graph):
    with GraphStore.open(slice_graph) as store:
        schema = store.schema()
    check_schema(GOOD, schema)
    check_schema(
        "MATCH (g:Goal)-[:SCORED_BY]->(p:Player), (g)-[:IN_MATCH]->(m:Match) "
        "WHERE m.date >= '2019-01-01' RETURN p.name, count(g) AS n",
        schema,
    )
    with pytest.raises(CypherRejected, match="unknown relationship type 'SCORED_GOAL'"):
        check_schema("MATCH (p:Player)-[:SCORED_GOAL]->(m:Match) RETURN count(*) AS n", schema)
    with pytest.raises(CypherRejected, match="unknown node label 'Club'"):
        check_schema("MATCH (c:Club) RETURN c.name AS n", schema)
    with pytest.raises(CypherRejected, match="reverse the arrow"):
        check_schema("MATCH (t:Team)-[:HOME_TEAM]->(m:Match) RETURN count(m) AS n", schema)
    with pytest.raises(CypherRejected, match="no property 'attendance'"):
        check_schema("MATCH (m:Match) RETURN m.attendance AS a", schema)
    with pytest.raises(CypherRejected, match="no property 'colour'"):
        check_schema("MATCH (t:Team {colour: 'red'}) RETURN t.name AS n", schema)


def test_impose_limit():
    assert impose_limit("MATCH (t:Team) RETURN t.name", 11).endswith("RETURN t.name LIMIT 11")
    assert impose_limit("MATCH (t:Team) RETURN t.name LIMIT 5", 11).endswith("LIMIT 5")
    assert impose_limit("MATCH (t:Team) RETURN t.name LIMIT 500", 11).endswith("t.name LIMIT 11")


def test_a_comment_cannot_hide_the_imposed_limit():
    limited = impose_limit("MATCH (a:Match), (b:Match) RETURN a.id, b.id // just a comment", 11)
    assert limited == "MATCH (a:Match), (b:Match) RETURN a.id, b.id LIMIT 11"
    limited = impose_limit("MATCH (t:Team) RETURN t.name /* LIMIT 5", 11)
    assert limited == "MATCH (t:Team) RETURN t.name LIMIT 11"
    assert extract_cypher("MATCH (t:Team) RETURN count(t) AS n // CREATE (x:Team)") == (
        "MATCH (t:Team) RETURN count(t) AS n"
    )


def test_string_literals_keep_their_slashes_and_positions():
    query = "MATCH (t:Team {name: 'http://x /* y */ LIMIT 1'}) RETURN t.name LIMIT 500"
    assert strip_comments(query) == query
    assert impose_limit(query, 11) == (
        "MATCH (t:Team {name: 'http://x /* y */ LIMIT 1'}) RETURN t.name LIMIT 11"
    )


def client(url: str) -> LLMClient:
    return LLMClient(LLMConfig(base_url=url, model="fake", backoff=0, max_retries=0))


OFF_GRAMMAR = "Which city hosted the most matches?"
CITY_QUERY = (
    "MATCH (m:Match) RETURN m.city AS city, count(m) AS matches ORDER BY matches DESC, city LIMIT 1"
)


def test_llm_answers_questions_outside_the_grammar(slice_graph):
    with GraphStore.open(slice_graph) as store, fake_openai([CITY_QUERY]) as server:
        answer = GraphQA(store, llm=client(server.url)).ask(OFF_GRAMMAR)
    assert answer.answered and answer.method == "llm"
    assert answer.columns == ["city", "matches"] and len(answer.rows) == 1
    prompt = server.requests[0]["messages"][0]["content"]
    assert "(:Match)-[:WINNER]->(:Team)" in prompt  # the schema is in the prompt
    # In-grammar questions never reach the LLM by default.
    with GraphStore.open(slice_graph) as store, fake_openai([]) as server:
        answer = GraphQA(store, llm=client(server.url)).ask("How many matches did Japan win?")
    assert answer.answered and answer.method == "template" and server.requests == []


@pytest.mark.parametrize(
    "write",
    [
        "MATCH (n) DETACH DELETE n RETURN count(*)",
        "CREATE (:Team {id: 'X', name: 'X'}) RETURN 1",
        "MATCH (t:Team) SET t.name = 'hacked' RETURN t.name",
        "MERGE (t:Team {id: 'X'}) RETURN t",
        "CALL db.labels() YIELD label RETURN label",
    ],
)
def test_llm_write_queries_are_refused_without_repair_and_graph_is_unchanged(slice_graph, write):
    with GraphStore.open(slice_graph) as store:
        before = store.counts()
        with fake_openai([write, CITY_QUERY]) as server:
            answer = GraphQA(store, llm=client(server.url)).ask(OFF_GRAMMAR)
        assert not answer.answered
        assert "not read-only" in answer.text
        assert len(server.requests) == 1  # no repair round for a write attempt
        assert store.counts() == before


def test_the_database_refuses_writes_even_past_the_keyword_guard(slice_graph, monkeypatch):
    from eightfold.graphrag import cypher as cypher_module

    monkeypatch.setattr(cypher_module, "check_read_only", lambda cypher: None)
    write = "MATCH (t:Team {name: 'Japan'}) SET t.name = 'hacked' RETURN t.name AS name"
    with GraphStore.open(slice_graph) as store:
        before = store.counts()
        with fake_openai([write, write]) as server:
            answer = GraphQA(store, llm=client(server.url)).ask(OFF_GRAMMAR)
        assert not answer.answered and "read-only" in answer.text
        assert store.counts() == before
        assert store.run("MATCH (t:Team {name: 'Japan'}) RETURN count(t)").rows == [[1]]


def test_one_repair_round_with_the_error(slice_graph):
    bad = "MATCH (m:Match)-[:PLAYED_AT]->(c:City) RETURN c.name AS city"
    with GraphStore.open(slice_graph) as store, fake_openai([bad, CITY_QUERY]) as server:
        answer = GraphQA(store, llm=client(server.url)).ask(OFF_GRAMMAR)
    assert answer.answered
    repair = server.requests[1]["messages"]
    assert repair[-2]["content"] == bad and "unknown node label 'City'" in repair[-1]["content"]


def test_llm_failures_fall_back_to_the_templates(slice_graph):
    bad = "MATCH (x:Nothing) RETURN x"
    script = [bad, bad, FakeReply(status=500)]
    with GraphStore.open(slice_graph) as store, fake_openai(script) as server:
        qa = GraphQA(store, llm=client(server.url), prefer="llm")
        answer = qa.ask("How many matches did Japan win in 2019?")
        assert answer.answered and answer.method == "template"
        assert len(server.requests) == 2
        # The server now fails: the template path still answers.
        answer = qa.ask("How many matches did Japan win in 2019?")
        assert answer.answered and answer.method == "template"


def test_llm_queries_run_under_a_timeout(slice_graph):
    heavy = (
        "MATCH (a:Match), (b:Match), (c:Match) "
        "WHERE a.home_score + b.away_score + c.home_score = 57 RETURN count(*) AS n"
    )
    with GraphStore.open(slice_graph) as store, fake_openai([heavy, heavy]) as server:
        started = time.perf_counter()
        answer = GraphQA(store, llm=client(server.url), timeout_s=0.3).ask(OFF_GRAMMAR)
        elapsed = time.perf_counter() - started
    assert not answer.answered and "0.3 s timeout" in answer.text
    assert len(server.requests) == 2  # the timeout error goes back for one repair round
    assert elapsed < 10  # two runs stopped at the timeout, not 8e9 rows enumerated


def test_llm_rows_are_truncated_and_flagged(slice_graph):
    many = "MATCH (t:Team) RETURN t.name AS team ORDER BY team"
    with GraphStore.open(slice_graph) as store, fake_openai([many]) as server:
        answer = GraphQA(store, llm=client(server.url), max_rows=5).ask("List every team.")
    assert answer.truncated and len(answer.rows) == 5
    assert answer.cypher.endswith("LIMIT 6")


def test_questions_carrying_cypher_never_reach_the_llm(slice_graph):
    question = "How many matches did Japan win'}) MATCH (n) DETACH DELETE n //"
    with GraphStore.open(slice_graph) as store, fake_openai([GOOD]) as server:
        answer = GraphQA(store, llm=client(server.url)).ask(question)
    assert not answer.answered and server.requests == []
