"""The pairwise judge against a local fake OpenAI-compatible server."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from eightfold.instruct.judge import (
    PairwiseJudge,
    length_controlled_win_rate,
    load_outputs,
    parse_verdict,
    save_outputs,
)
from eightfold.llm import LLMConfig, LLMResponseError
from tests.fake_openai import FakeReply, fake_openai

INSTRUCTIONS = [f"Question {i}?" for i in range(6)]
GOOD = [{"instruction": q, "output": f"GOOD answer to {q}"} for q in INSTRUCTIONS]
BAD = [{"instruction": q, "output": f"weak reply {i}"} for i, q in enumerate(INSTRUCTIONS)]


def _shown(request: dict, label: str) -> str:
    text = request["messages"][-1]["content"]
    match = re.search(rf"# Response {label}\n(.*?)(?:\n\n# |\n\nWhich)", text, re.DOTALL)
    assert match is not None
    return match.group(1)


def _prefers_good(request: dict) -> str:
    return "A" if "GOOD" in _shown(request, "A") else "B"


def _judge(server, **kwargs) -> PairwiseJudge:
    config = LLMConfig(
        base_url=server.url,
        model="fake-judge",
        backoff=0,
        timeout=5,
        max_retries=kwargs.pop("max_retries", 0),
    )
    return PairwiseJudge(config, cache=kwargs.pop("cache", None), **kwargs)


def test_parse_verdict():
    assert parse_verdict("A") == "A"
    assert parse_verdict(" b.") == "B"
    assert parse_verdict("Response A is better because...") == "A"
    assert parse_verdict("Output (b)") == "B"
    assert parse_verdict("Tie") == "tie"
    assert parse_verdict('{"winner": "B"}') == "B"
    assert parse_verdict("I think Response A and Response B are both fine") is None
    assert parse_verdict("hmm") is None


def test_win_rate_with_both_orders():
    with fake_openai(_prefers_good) as server:
        report = _judge(server).compare(GOOD, BAD)
        assert len(server.requests) == 2 * len(INSTRUCTIONS)
    assert report.win_rate == 1.0 and report.wins == 6 and report.failed == 0
    assert report.ci_low == 1.0 and report.model_mean_length > report.reference_mean_length
    with fake_openai(_prefers_good) as server:
        reverse = _judge(server).compare(BAD, GOOD)
    assert reverse.win_rate == 0.0 and reverse.losses == 6


def test_position_bias_cancels_with_both_orders():
    with fake_openai(lambda request: "A") as server:
        report = _judge(server).compare(GOOD, BAD)
    assert report.win_rate == 0.5 and report.ties == 6
    assert all(p.verdicts == ("model", "reference") for p in report.pairs)


def test_single_random_order():
    with fake_openai(_prefers_good) as server:
        report = _judge(server, both_orders=False).compare(GOOD, BAD)
        assert len(server.requests) == len(INSTRUCTIONS)
        firsts = ["GOOD" in _shown(r, "A") for r in server.requests]
    assert report.win_rate == 1.0
    assert 0 < sum(firsts) < len(firsts)  # both positions were used


def test_malformed_reply_is_retried_then_counted_as_tie(caplog):
    one = GOOD[:1]
    with fake_openai(["no idea", "A", "B"]) as server:
        report = _judge(server).compare(one, BAD[:1])
        assert len(server.requests) == 3
    # Order 1 (model shown first): retried, then "A" = model; order 2: "B" = model.
    assert report.pairs[0].verdicts == ("model", "model") and report.win_rate == 1.0

    with (
        caplog.at_level(logging.WARNING, logger="eightfold.instruct.judge"),
        fake_openai(lambda request: "Both responses are fine.") as server,
    ):
        report = _judge(server, output_retries=1).compare(one, BAD[:1])
        assert len(server.requests) == 4  # two orders x (first try + one retry)
    assert report.failed == 1 and report.win_rate == 0.5
    assert any("count as ties" in r.getMessage() for r in caplog.records)


def test_timeouts_and_server_errors_become_ties(caplog):
    script = [FakeReply(delay=1.0, content="A"), FakeReply(status=503), FakeReply(status=503)]
    with (
        caplog.at_level(logging.WARNING, logger="eightfold.instruct.judge"),
        fake_openai(script) as server,
    ):
        config = LLMConfig(base_url=server.url, model="fake", timeout=0.3, max_retries=1, backoff=0)
        report = PairwiseJudge(config, cache=None).compare(GOOD[:1], BAD[:1])
    assert report.failed == 1 and report.failed_verdicts == 2 and report.win_rate == 0.5
    assert report.pairs[0].verdicts == ("failed", "failed")
    assert any("unavailable after retries" in r.getMessage() for r in caplog.records)
    assert any("count as ties" in r.getMessage() for r in caplog.records)


def test_one_timed_out_order_is_a_tie_within_its_pair(caplog):
    # Model shown first: the request times out twice (no verdict, 0.5); swapped: "B" = model (1).
    script = [FakeReply(delay=1.0, content="A"), FakeReply(delay=1.0, content="A"), "B"]
    with (
        caplog.at_level(logging.WARNING, logger="eightfold.instruct.judge"),
        fake_openai(script) as server,
    ):
        config = LLMConfig(base_url=server.url, model="fake", timeout=0.3, max_retries=1, backoff=0)
        report = PairwiseJudge(config, cache=None).compare(GOOD[:1], BAD[:1])
        assert len(server.requests) == 3 and server.unscripted == 0
    assert report.pairs[0].verdicts == ("failed", "model")
    assert report.pairs[0].score == 0.75 and report.win_rate == 0.75
    assert report.failed == 0 and report.failed_verdicts == 1 and report.wins == 1
    assert any("count as ties" in r.getMessage() for r in caplog.records)


def test_wrong_key_or_model_raises():
    with (
        fake_openai([FakeReply(status=401, content="bad key")]) as server,
        pytest.raises(LLMResponseError),
    ):
        _judge(server).compare(GOOD[:1], BAD[:1])


def test_judgements_are_cached(tmp_path):
    with fake_openai(_prefers_good) as server:
        first = _judge(server, cache=tmp_path).compare(GOOD, BAD)
        asked = len(server.requests)
        second = _judge(server, cache=tmp_path).compare(GOOD, BAD)
        assert len(server.requests) == asked
    assert first.win_rate == second.win_rate == 1.0


def test_mismatched_instruction_sets_are_rejected():
    with fake_openai(_prefers_good) as server, pytest.raises(ValueError, match="different"):
        _judge(server).compare(GOOD, BAD[:-1])


def test_length_controlled_win_rate_removes_a_length_effect():
    rng = np.random.default_rng(0)
    diff = rng.normal(80, 100, size=400)  # the model is usually longer
    x = np.tanh(diff / diff.std())
    scores = 1 / (1 + np.exp(-3 * x))  # preference explained by length alone
    model = 200 + diff
    reference = np.full_like(diff, 200)
    assert scores.mean() > 0.6
    assert length_controlled_win_rate(scores, model, reference) == pytest.approx(0.5, abs=0.02)


def test_outputs_roundtrip_and_errors(tmp_path):
    records = [{**r, "generator": "m", "n_tokens": 3} for r in GOOD]
    assert load_outputs(save_outputs(records, tmp_path / "a.jsonl")) == records
    alpaca = load_outputs(save_outputs(records, tmp_path / "a.json"))
    assert alpaca[0] == {
        "instruction": GOOD[0]["instruction"],
        "output": GOOD[0]["output"],
        "generator": "m",
    }
    (tmp_path / "bad.jsonl").write_text(
        '{"instruction": "x", "output": "y"}\n{"instruction": "z"}\n'
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing string field 'output'"):
        load_outputs(tmp_path / "bad.jsonl")
