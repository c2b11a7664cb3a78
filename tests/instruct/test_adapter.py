"""The rule-based adapter against the official code's golden fixtures, and its bug fixes."""

from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

from eightfold.instruct import (
    PAPER_UNIFORM_TABLE,
    AdapterConfig,
    ResolvedRules,
    RuleBasedAdapter,
    parse_rules,
    product_of_experts_logits,
    resolve_piece,
    start_piece_score,
)
from eightfold.instruct.adapter import LLAMA2

GOLDEN = "implicit_instruction"


@pytest.fixture(scope="module")
def golden(golden_dir):
    folder = golden_dir / GOLDEN
    cases = json.loads((folder / "cases.json").read_text())
    arrays = np.load(folder / "implicit_instruction.npz")
    return folder, cases, {k: arrays[k] for k in arrays.files}


def _expected(arrays, case_id: str, vocab: int = 32000) -> torch.Tensor:
    out = torch.zeros(vocab)
    ids = torch.tensor(arrays[f"{case_id}__bias_ids"], dtype=torch.long)
    out[ids] = torch.tensor(arrays[f"{case_id}__bias_values"], dtype=torch.float32)
    return out


def _ids(arrays, sequence: str) -> torch.Tensor:
    return torch.tensor(arrays[f"{sequence}__ids"], dtype=torch.long)[None]


def _recorded_start_scores(arrays) -> torch.Tensor:
    # At n = 0 on the same sequence, "eos-uniform-diversity-start" minus "eos-uniform-diversity"
    # is 5 x the start rule's piece score of every Llama-2 id (the vocabulary itself is not here).
    return (_expected(arrays, "b0005") - _expected(arrays, "b0000")) / 5.0


def _adapter_for(arrays, magic) -> RuleBasedAdapter:
    config = AdapterConfig(rules=magic)
    if "start" not in config.enabled:
        return RuleBasedAdapter.llama2(config=config)
    base = RuleBasedAdapter.llama2(config=AdapterConfig(rules="eos-uniform-diversity"))
    rules = ResolvedRules(**{**base.rules.__dict__, "start_scores": _recorded_start_scores(arrays)})
    return RuleBasedAdapter.from_token_ids(rules, config=config)


def test_bias_cases_match_official(golden):
    _, cases, arrays = golden
    checked = 0
    for case in cases["bias_cases"]:
        if case["status"] != "ok" or "batch_with" in case:
            continue
        magic = case["magic_string"]
        if ("start" in str(magic) or magic is True) and case["generated_len"] == 0:
            continue  # full-vocabulary piece scores: checked in test_start_rule_piece_scores
        adapter = _adapter_for(arrays, magic)
        got = adapter.bias(_ids(arrays, case["sequence"]))[0]
        want = _expected(arrays, case["case_id"])
        assert torch.allclose(got, want, atol=1e-6, rtol=0), case["case_id"]
        assert int((got != 0).sum()) == case["n_nonzero"], case["case_id"]
        checked += 1
    assert checked == 87


def test_first_step_bias_of_tiramisu_prompt(golden):
    arrays = golden[2]
    got = RuleBasedAdapter.llama2().bias(_ids(arrays, "s000"))[0]
    nonzero = {int(i): float(got[i]) for i in got.nonzero().flatten()}
    assert len(nonzero) == 29
    assert nonzero[13] == -0.5 and nonzero[29989] == -5.5 and nonzero[881] == -6.0
    assert 2 not in nonzero  # n = 0: no EOS score yet


def test_eos_ramp_schedule_faithful_and_fixed():
    prompt = [1, 529, 29989, 1792, 29989, 29958, 13, 29954, 13, *LLAMA2.assistant_signature]

    def eos_at(adapter: RuleBasedAdapter, n: int) -> float:
        ids = torch.tensor([prompt + [3000] * n])
        return float(adapter.bias(ids)[0, LLAMA2.eos_id])

    faithful = RuleBasedAdapter.llama2(config=AdapterConfig(rules="eos"))
    assert [round(eos_at(faithful, n), 4) for n in (0, 1, 125, 249, 250, 1100)] == [
        0.0,
        0.06,
        7.5,
        14.94,
        0.0,
        0.0,
    ]
    fixed = faithful.with_config(faithful=False)
    assert [round(eos_at(fixed, n), 4) for n in (0, 1, 249, 250, 1100)] == [
        0.0,
        0.06,
        14.94,
        15.0,
        15.0,
    ]
    stop = faithful.with_config(faithful=False, hard_stop_tokens=300)
    row = stop.bias(torch.tensor([prompt + [3000] * 300]))[0]
    assert row[LLAMA2.eos_id] == 15.0 and torch.isinf(row[3]) and row[3] < 0
    with pytest.raises(ValueError, match="faithful=False"):
        AdapterConfig(hard_stop_tokens=1024)


def test_batch_rows_get_their_own_bias(golden):
    # The official code copies row 0's bias to every row (fixture b0089 records that); here each
    # row keeps its own, and row 0's equals the official value.
    _, cases, arrays = golden
    case = next(c for c in cases["bias_cases"] if c["case_id"] == "b0089")
    row0, row1 = _ids(arrays, case["batch_with"])[0], _ids(arrays, case["sequence"])[0]
    assert row0.numel() == row1.numel()
    adapter = RuleBasedAdapter.llama2()
    batch = adapter.bias(torch.stack([row0, row1]))
    official = _expected(arrays, "b0089")
    assert torch.allclose(batch[0], official)
    assert torch.equal(batch[1], adapter.bias(row1[None])[0])
    assert not torch.allclose(batch[1], official)


@pytest.mark.parametrize(("case_id", "tag"), [("b0090", "<|user|>"), ("b0091", "<|assistant|>")])
def test_missing_tag_is_a_clear_error(golden, case_id, tag):
    _, cases, arrays = golden
    case = next(c for c in cases["bias_cases"] if c["case_id"] == case_id)
    with pytest.raises(ValueError, match=r"no '" + tag.replace("|", r"\|")):
        RuleBasedAdapter.llama2().bias(_ids(arrays, case["sequence"]))


def test_start_rule_piece_scores(golden):
    _, cases, arrays = golden
    recorded = _recorded_start_scores(arrays)
    histogram = Counter(str(int(v)) for v in recorded.tolist())
    assert dict(histogram) == cases["start_rule_score_histogram"]
    for token_id, piece in cases["token_strings"].items():
        assert start_piece_score(piece) == recorded[int(token_id)], piece
    assert start_piece_score("Ġokay") == 1 and start_piece_score("ĠI") == -3


def test_greedy_continuations_match_official(golden):
    folder, cases, arrays = golden
    model = AutoModelForCausalLM.from_pretrained(folder / "tiny_llama", dtype=torch.float32)
    model.eval()
    model.generation_config.eos_token_id = None  # the fixtures do not stop at EOS
    config = GenerationConfig(max_new_tokens=40, do_sample=False, pad_token_id=0)
    for case in cases["greedy_cases"]:
        cid = case["case_id"]
        ids = torch.tensor(arrays[f"{cid}__input_ids"], dtype=torch.long)[None]
        adapter = _adapter_for(arrays, case["magic_string"])
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            generation_config=config,
            logits_processor=[adapter],
        )
        assert (
            out[0, ids.shape[1] :].tolist() == arrays[f"{cid}__combined_continuation"].tolist()
        ), cid


def test_product_of_experts_equals_additive_processor():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(3, 50, generator=gen) * 4
    bias = torch.zeros(3, 50)
    bias[:, [1, 7, 9]] = torch.tensor([2.0, -4.0, 0.5])
    poe = product_of_experts_logits(base, bias)
    additive = base + bias
    assert torch.equal(poe.argmax(-1), additive.argmax(-1))
    assert torch.allclose(poe.softmax(-1), additive.softmax(-1), atol=1e-6)


def _llama_like_tokenizer() -> PreTrainedTokenizerFast:
    # A synthetic vocabulary with Llama-2's pieces at Llama-2's ids (the real file is licensed).
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"<filler{i}>": i for i in range(32000)}
    named = {0: "<unk>", 1: "<s>", 2: "</s>", 465: "ass", 22137: "istant", 1792: "user"}
    named.update({e.llama2_id: e.llama2_piece for e in PAPER_UNIFORM_TABLE})
    for token_id, piece in named.items():
        del vocab[f"<filler{token_id}>"]
        vocab[piece] = token_id
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>")


def test_piece_table_resolves_to_official_ids():
    tokenizer = _llama_like_tokenizer()
    for entry in PAPER_UNIFORM_TABLE:
        assert resolve_piece(tokenizer, entry.text) == entry.llama2_id, entry


def test_faithful_llama2_ids_rejects_other_tokenizers(bpe_tokenizer):
    with pytest.raises(ValueError, match="not Llama-2's"):
        RuleBasedAdapter(bpe_tokenizer, faithful_llama2_ids=True)


def test_byte_level_tokenizer_resolution(bpe_tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="eightfold.instruct.adapter"):
        adapter = RuleBasedAdapter(bpe_tokenizer)
        RuleBasedAdapter(bpe_tokenizer)
    vocab = bpe_tokenizer.get_vocab()
    assert adapter.rules.eos_id == bpe_tokenizer.eos_token_id
    assert adapter.rules.uniform[vocab["!"]] == 1.0
    assert adapter.rules.uniform[vocab["Ċ"]] == 1.0  # newline
    assert adapter.rules.uniform[vocab["I"]] == -5.0
    missing = [e.text for e in PAPER_UNIFORM_TABLE if resolve_piece(bpe_tokenizer, e.text) is None]
    assert missing, "the small test vocabulary should lack some of the 15 tokens"
    warnings = [r for r in caplog.records if "uniform-rule texts" in r.getMessage()]
    assert len(warnings) == 1  # reported once, not per adapter
    prompt = adapter.template.prompt("Explain x.")
    ids = bpe_tokenizer(prompt, return_tensors="pt").input_ids
    assert int(adapter.response_lengths(ids)[0]) == 0


def test_tokenizer_without_eos_is_rejected(bpe_tokenizer):
    import copy

    tokenizer = copy.deepcopy(bpe_tokenizer)
    tokenizer.eos_token = None
    with pytest.raises(ValueError, match="no EOS token"):
        RuleBasedAdapter(tokenizer)


def test_generation_with_cache_and_padded_batch(bpe_tokenizer, tiny_lm):
    adapter = RuleBasedAdapter(bpe_tokenizer)
    tokenizer = bpe_tokenizer
    tokenizer.padding_side = "left"
    prompts = [
        adapter.template.prompt("Explain x."),
        adapter.template.prompt("What does len() do?"),
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    config = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    cached = tiny_lm.generate(
        **batch, generation_config=config, logits_processor=[adapter], use_cache=True
    )
    uncached = tiny_lm.generate(
        **batch, generation_config=config, logits_processor=[adapter], use_cache=False
    )
    assert torch.equal(cached, uncached)
    # Each row of the batch is biased by its own history.
    full = cached
    rows = adapter.bias(full)
    for i in range(2):
        start = int(batch["attention_mask"][i].argmax())
        alone = adapter.bias(full[i : i + 1, start:])[0]
        assert torch.equal(rows[i], alone)
    base = tiny_lm.generate(**batch, generation_config=config)
    assert not torch.equal(base, cached)


def test_parse_rules_follows_magic_strings():
    assert parse_rules("eos-uniform-diversity") == ("eos", "uniform", "diversity")
    assert parse_rules(True) == ("eos", "uniform", "diversity", "start")
    assert parse_rules(["diversity", "eos"]) == ("eos", "diversity")
    with pytest.raises(ValueError, match="names no rule"):
        parse_rules("none")
    with pytest.raises(ValueError, match="expected a non-empty selection"):
        parse_rules(["eos", "typo"])
