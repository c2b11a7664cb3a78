"""Intent discovery scores, guideline checks, exemplars and training-pair export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from eightfold.conversation import (
    ExemplarIndex,
    HashingEncoder,
    check_guidelines,
    clustering_scores,
    discover_intents,
    dpo_pairs,
    hungarian_accuracy,
    load_catalogue,
    load_guidelines,
    sft_pairs,
    write_jsonl,
)
from tests.conversation.conv_fixtures import FRUSTRATED, ORDER_OK, conv, hashing_analyzer


def test_hungarian_accuracy_known_answers() -> None:
    assert hungarian_accuracy([2, 2, 0, 0, 1, 1], ["a", "a", "b", "b", "c", "c"]) == 1.0
    # Best one-to-one map: 0->a (2 right), 1->b (2 right); the lone "c" cannot be matched.
    assert hungarian_accuracy([0, 0, 0, 1, 1], ["a", "a", "b", "b", "b"]) == pytest.approx(0.8)
    assert hungarian_accuracy([0, 0, 0, 0], ["a", "b", "c", "d"]) == 0.25
    with pytest.raises(ValueError, match="predicted has 2 items"):
        hungarian_accuracy([0, 1], ["a"])


def test_clustering_scores_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, 50)
    pred = (gold + (rng.random(50) < 0.3)) % 4
    scores = clustering_scores(pred, gold.tolist())
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(gold, pred))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(gold, pred))


def test_discover_intents_separable() -> None:
    texts = [
        "refund my money back please",
        "i want my money back refund",
        "money back refund now",
        "reset my password login",
        "password login broken",
        "cannot login password",
        "pizza delivery late order",
        "late pizza order delivery",
        "where is my pizza order",
    ]
    gold = ["refund"] * 3 + ["login"] * 3 + ["delivery"] * 3
    clusters = discover_intents(texts, 3, encoder=HashingEncoder(), seed=0)
    assert clustering_scores(clusters.labels, gold)["acc"] == 1.0
    assert sorted(clusters.sizes) == [3, 3, 3]
    assert any("password" in name or "login" in name for name in clusters.names)
    with pytest.raises(ValueError, match="only 9 texts"):
        discover_intents(texts, 10, encoder=HashingEncoder())


def test_catalogue_validation(tmp_path: Path) -> None:
    assert "place_order" in load_catalogue().labels
    with pytest.raises(ValueError, match="non-empty list"):
        load_catalogue({"a": []})
    bad = tmp_path / "c.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_catalogue(bad)


def _rules(tmp_path: Path, rules: list[dict]) -> list:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": rules}), encoding="utf-8")
    return load_guidelines(path)


def test_each_guideline_kind(tmp_path: Path) -> None:
    a = hashing_analyzer().analyze(conv(FRUSTRATED))
    rules = _rules(
        tmp_path,
        [
            {"id": "greet", "kind": "within_first", "n": 1, "pattern": r"\bhello\b"},
            {"id": "close", "kind": "in_last", "n": 1, "pattern": r"\bthank"},
            {"id": "sorry", "kind": "respond_to_negative", "threshold": -0.3, "pattern": "sorry"},
            {"id": "no_cant", "kind": "forbid", "pattern": r"can't"},
            {"id": "short", "kind": "max_words", "n": 6},
            {"id": "ask", "kind": "require", "pattern": "account number"},
            {"id": "confirm", "kind": "before", "first": "correct", "then": "find"},
            {"id": "orders_only", "kind": "forbid", "pattern": "account", "when_intent": ["x"]},
        ],
    )
    got = {(v.rule, v.turn) for v in check_guidelines(a, rules)}
    assert got == {
        ("greet", 1),
        ("close", 3),
        ("no_cant", 3),
        ("short", 1),
        ("short", 3),
        ("confirm", 3),
    }
    yaml_path = tmp_path / "rules.yaml"
    yaml_path.write_text("rules:\n  - {id: r, kind: forbid, pattern: sorry}\n", encoding="utf-8")
    assert load_guidelines(yaml_path)[0].kind == "forbid"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"id": "x", "kind": "sometimes", "pattern": "a"}, "kind 'sometimes'"),
        ({"id": "x", "kind": "forbid"}, "needs the field 'pattern'"),
        ({"id": "x", "kind": "forbid", "pattern": "("}, "not a valid regular expression"),
        ({"id": "x", "kind": "max_words", "n": 0}, "positive integer"),
        ({"id": "x", "kind": "forbid", "pattern": "a", "colour": 1}, "unknown field"),
    ],
)
def test_bad_guidelines(tmp_path: Path, rule: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _rules(tmp_path, [rule])


def test_exemplars_and_training_pairs(tmp_path: Path) -> None:
    analyzer = hashing_analyzer()
    good = [analyzer.analyze(conv(ORDER_OK, cid=f"ok{i}")) for i in range(2)]
    bad_turns = [
        ("customer", "Hi, I'd like to order a large latte please."),
        ("agent", "We don't have that, calm down."),
    ]
    bad = analyzer.analyze(conv(bad_turns, cid="bad"))
    assert bad.scene.outcome.status == "unresolved"
    items = [*good, bad]
    rules = load_guidelines()
    index = ExemplarIndex.build(items, encoder=HashingEncoder(), guidelines=rules)
    assert len(index) == 4  # two agent turns from each resolved conversation
    hit = index.search("I'd like a large latte", intent="place_order", k=1)[0]
    assert hit.turn == 1 and hit.similarity > 0.3

    sft = sft_pairs(items, guidelines=rules)
    assert len(sft) == 4
    assert sft[0]["prompt"][-1] == {"role": "user", "content": ORDER_OK[0][1]}
    assert sft[0]["completion"] == [{"role": "assistant", "content": ORDER_OK[1][1]}]
    messages = sft_pairs(items, format="messages")
    assert messages[1]["messages"][-1]["role"] == "assistant" and len(messages[1]["messages"]) == 4

    dpo = dpo_pairs(items, index, guidelines=rules, min_similarity=0.3)
    assert len(dpo) == 1
    pair = dpo[0]
    assert pair["rejected"][0]["content"] == "We don't have that, calm down."
    assert pair["chosen"][0]["content"] == ORDER_OK[1][1]
    assert "guideline no_blame" in pair["meta"]["reason"]
    assert "outcome unresolved" in pair["meta"]["reason"]
    out = write_jsonl(dpo, tmp_path / "dpo.jsonl")
    assert json.loads(out.read_text().splitlines()[0])["meta"]["conversation_id"] == "bad"
    with pytest.raises(ValueError, match="format="):
        sft_pairs(items, format="alpaca")  # type: ignore[arg-type]
