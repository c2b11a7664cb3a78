"""Contract and invariant tests of GemFilter, SnapKV, H2O and the full-attention reference."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoConfig, AutoModelForCausalLM

from eightfold.longcontext import (
    H2O,
    FullAttention,
    GemFilter,
    SnapKV,
    accumulated_attention,
    avg_pool_scores,
    last_query_scores,
    snapkv_votes,
)
from eightfold.longcontext.base import project_keys, project_queries
from eightfold.models import tiny_causal_lm

ARCHS = ["llama", "mistral", "qwen2", "phi3", "qwen3"]


def make_model(arch: str, seed: int = 0, **overrides: Any) -> Any:
    if arch == "qwen3":
        config = AutoConfig.for_model(
            "qwen3", vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
            num_attention_heads=8, num_key_value_heads=4, head_dim=8, max_position_embeddings=512,
            tie_word_embeddings=False, **overrides,
        )  # fmt: skip
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).eval()
    else:
        model = tiny_causal_lm(arch, seed=seed, **overrides)
    model.set_attn_implementation("sdpa")
    return model


@pytest.fixture(scope="module")
def llama() -> Any:
    return make_model("llama")


def prompt(n: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 256, (batch, n), generator=gen)


METHODS = {
    "gemfilter": lambda k: GemFilter(filter_layer=1, topk=k),
    "snapkv": lambda k: SnapKV(budget=k, window=8),
    "h2o": lambda k: H2O(budget=k, window=8),
    "full": lambda k: FullAttention(),
}


# --- pure math on hand-made tensors -------------------------------------------------------


def test_last_query_scores_pairs_heads_by_repeat_interleave() -> None:
    query = torch.randn(1, 4, 1, 3)
    keys = torch.randn(1, 2, 7, 3)
    # Query heads 0,1 read KV head 0; heads 2,3 read KV head 1.
    expected = sum((query[0, h, 0] * keys[0, h // 2]).sum(-1) for h in range(4))
    torch.testing.assert_close(last_query_scores(query, keys)[0], expected)
    tiled = sum((query[0, h, 0] * keys[0, h % 2]).sum(-1) for h in range(4))
    assert not torch.allclose(last_query_scores(query, keys)[0], tiled)


def test_avg_pool_zero_pads_and_divides_by_kernel() -> None:
    raw = torch.tensor([-5.0, -5.0, -5.0, -5.0, -5.0, -5.0])
    pooled = avg_pool_scores(raw, 5)
    # The ends see two zero pads: (-5 * 3) / 5 = -3 > -5, so negative edges are pulled up.
    torch.testing.assert_close(pooled, torch.tensor([-3.0, -4.0, -5.0, -5.0, -4.0, -3.0]))
    assert torch.equal(avg_pool_scores(raw, 1), raw)


def test_snapkv_votes_match_explicit_attention() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 10, 8)
    full = torch.matmul(q, k.repeat_interleave(2, dim=1).transpose(-1, -2)) * 8**-0.5
    rows = torch.arange(7, 10).unsqueeze(1)
    full = full.masked_fill(torch.arange(10) > rows, float("-inf")).softmax(-1)
    votes = full[..., :7].sum(-2)  # (1, 4, 7)
    pooled = F.avg_pool1d(votes.reshape(4, 1, 7), 5, 1, 2).reshape(1, 2, 2, 7).mean(2)
    torch.testing.assert_close(snapkv_votes(q, k, 8**-0.5, 5), pooled)


def test_h2o_column_sums_match_explicit_attention_in_any_chunking(llama: Any) -> None:
    attn = llama.model.layers[1].self_attn
    hidden = torch.randn(1, 20, 64)
    rope = llama.model.rotary_emb(hidden, torch.arange(20).unsqueeze(0))
    q = project_queries(attn, hidden, rope, slice(0, None))
    k = project_keys(attn, hidden, rope)
    logits = torch.matmul(q, k.repeat_interleave(2, dim=1).transpose(-1, -2)) * attn.scaling
    probs = logits.masked_fill(torch.ones(20, 20).triu(1).bool(), float("-inf")).softmax(-1)
    expected = probs.sum(-2).reshape(1, 4, 2, 20)
    for chunk in (1, 8 * 20 * 3, 1 << 24):
        got = accumulated_attention(attn, hidden, rope, k, chunk_elements=chunk)
        torch.testing.assert_close(got, expected)


# --- the contract every method keeps --------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", list(METHODS))
def test_short_prompt_equals_plain_generation(arch: str, method: str) -> None:
    model = make_model(arch)
    ids = prompt(40, seed=1)
    ref = model.generate(ids, max_new_tokens=5, do_sample=False)
    out = METHODS[method](64).generate(model, ids, max_new_tokens=5, do_sample=False)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("method", list(METHODS))
def test_sampling_passes_through_generate(llama: Any, method: str) -> None:
    ids = prompt(30, seed=2)
    kwargs = {"max_new_tokens": 6, "do_sample": True, "top_k": 20, "temperature": 1.3}
    torch.manual_seed(7)
    ref = llama.generate(ids, **kwargs)
    torch.manual_seed(7)
    out = METHODS[method](64).generate(llama, ids, **kwargs)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("method", list(METHODS))
def test_padded_batch_equals_rows_alone(llama: Any, method: str) -> None:
    rows = [prompt(50, seed=3)[0], prompt(37, seed=4)[0]]
    ids = torch.zeros(2, 50, dtype=torch.long)
    mask = torch.zeros(2, 50, dtype=torch.long)
    ids[0], mask[0] = rows[0], 1
    ids[1, 13:], mask[1, 13:] = rows[1], 1  # left padding
    m = METHODS[method](24)
    out = m.generate(llama, ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    for i, row in enumerate(rows):
        alone = m.generate(llama, row.unsqueeze(0), max_new_tokens=4, do_sample=False)
        assert torch.equal(out[i, 50:], alone[0, row.numel() :])
        assert torch.equal(out[i, :50], ids[i])


# --- GemFilter ------------------------------------------------------------------------------


def test_selection_is_sorted_unique_and_sized(llama: Any) -> None:
    ids = prompt(90, seed=5, batch=2)
    for k in (1, 5, 33, 90, 200):
        sel = GemFilter(filter_layer=2, topk=k).select(llama, ids)
        assert sel.shape == (2, min(k, 90))
        for row in sel:
            assert torch.equal(row, torch.unique(row))  # unique and ascending
            assert int(row.min()) >= 0 and int(row.max()) < 90


def test_selection_only_depends_on_layers_up_to_the_filter_layer() -> None:
    model = make_model("llama")
    ids = prompt(120, seed=6)
    gf = GemFilter(filter_layer=1, topk=16)
    before = gf.select(model, ids)
    with torch.no_grad():
        for p in model.model.layers[2:].parameters():
            p.mul_(-3.0)
        model.model.layers[1].self_attn.o_proj.weight.mul_(5.0)
        model.model.layers[1].mlp.up_proj.weight.mul_(5.0)
        model.lm_head.weight.mul_(2.0)
    assert torch.equal(gf.select(model, ids), before)
    with torch.no_grad():
        model.model.layers[1].self_attn.k_proj.weight.mul_(-1.0)
    assert not torch.equal(gf.select(model, ids), before)


def test_second_pass_runs_the_kept_tokens_at_fresh_positions(llama: Any) -> None:
    ids = prompt(100, seed=7)
    gf = GemFilter(filter_layer=1, topk=20)
    sel = gf.select(llama, ids)
    out = gf.prefill(llama, ids)
    with torch.no_grad():
        ref = llama(ids.gather(1, sel), logits_to_keep=1).logits[:, -1]
    torch.testing.assert_close(out.logits, ref, rtol=0, atol=0)
    assert out.kv_length == 20 and out.next_position == 20
    assert out.cache.get_seq_length() == 20


def test_gqa_selection_equals_mha_with_duplicated_kv_heads() -> None:
    gqa = make_model("llama")
    mha = make_model("llama", num_key_value_heads=8)
    state = gqa.state_dict()
    for i, layer in enumerate(mha.model.layers):
        for name in ("k_proj", "v_proj"):
            w = state[f"model.layers.{i}.self_attn.{name}.weight"].view(4, 8, 64)
            getattr(layer.self_attn, name).weight.data = w.repeat_interleave(2, 0).reshape(64, 64)
    mha.load_state_dict(
        {k: v for k, v in state.items() if "k_proj" not in k and "v_proj" not in k}, strict=False
    )
    ids = prompt(150, seed=8)
    gf = GemFilter(filter_layer=2, topk=25)
    assert torch.equal(gf.select(gqa, ids), gf.select(mha, ids))


def test_keep_last_protects_the_question(llama: Any) -> None:
    ids = prompt(200, seed=9)
    plain = GemFilter(filter_layer=1, topk=12).select(llama, ids)[0]
    kept = GemFilter(filter_layer=1, topk=12, keep_last=5).select(llama, ids)[0]
    assert kept.numel() == 12
    assert set(range(195, 200)) <= set(kept.tolist())
    assert not set(range(195, 200)) <= set(plain.tolist())


class _LargestTensor(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_selection_never_builds_an_n_by_n_tensor() -> None:
    model = make_model("llama", num_hidden_layers=2)
    n = 1536
    with _LargestTensor() as probe:
        GemFilter(filter_layer=1, topk=64).select(model, prompt(n, seed=10))
    # Largest activations are (n, intermediate=128); an attention matrix would be n * n.
    assert probe.largest <= 128 * n < n * n


# --- SnapKV and H2O -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SnapKV, H2O])
def test_compressed_cache_has_budget_entries_and_keeps_the_window(llama: Any, cls: Any) -> None:
    ids = prompt(120, seed=11)
    method = cls(budget=40, window=8)
    out = method.prefill(llama, ids)
    for layer in out.cache.layers:
        assert layer.keys.shape[-2] == 40 and layer.values.shape[-2] == 40
    # The window's keys are the last 8 cached entries, identical to full prefill's last keys.
    full = FullAttention().prefill(llama, ids)
    for comp, ref in zip(out.cache.layers, full.cache.layers, strict=True):
        torch.testing.assert_close(comp.keys[..., -8:, :], ref.keys[..., -8:, :])
    torch.testing.assert_close(out.logits, full.logits)  # the first token sees everything


@pytest.mark.parametrize("cls", [SnapKV, H2O])
def test_decoding_continues_at_the_original_positions(llama: Any, cls: Any) -> None:
    ids = prompt(100, seed=12)
    method = cls(budget=32, window=8)
    out = method.generate(llama, ids, max_new_tokens=5, do_sample=False)[0, 100:].tolist()
    state = method.prefill(llama, ids)
    token = state.logits.argmax(-1, keepdim=True)
    manual, cache = [int(token)], state.cache
    with torch.no_grad():
        for t in range(4):
            o = llama(input_ids=token, cache=cache, position_ids=torch.tensor([[100 + t]]))
            token = o.logits[:, -1].argmax(-1, keepdim=True)
            manual.append(int(token))
    assert out == manual
    assert cache.get_seq_length() == 32 + 4


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"topk": 0}, "topk"),
        ({"topk": -3}, "topk"),
        ({"filter_layer": -1}, "filter_layer"),
        ({"pool_kernel": 4}, "pool_kernel"),
        ({"topk": 4, "keep_last": 5}, "keep_last"),
    ],
)
def test_gemfilter_rejects_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GemFilter(**kwargs)


def test_gemfilter_rejects_bad_calls(llama: Any) -> None:
    with pytest.raises(ValueError, match="outside the model's 4 layers"):
        GemFilter(filter_layer=4).select(llama, prompt(10))
    with pytest.raises(ValueError, match="no default filter_layer"):
        GemFilter().select(llama, prompt(10))
    with pytest.raises(ValueError, match="empty"):
        GemFilter(filter_layer=1).select(llama, torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(TypeError, match="input_ids"):
        GemFilter(filter_layer=1).select(llama, [[1, 2, 3]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_new_tokens"):
        GemFilter(filter_layer=1).generate(llama, prompt(10), max_length=20)
    with pytest.raises(ValueError, match="zeros between"):
        GemFilter(filter_layer=1).select(llama, prompt(5), torch.tensor([[1, 0, 1, 1, 1]]))
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, :20] = 0
    with pytest.raises(ValueError, match="different numbers"):
        GemFilter(filter_layer=1, topk=15).select(llama, prompt(30, batch=2), mask)


def test_gemfilter_refuses_eager_attention() -> None:
    model = tiny_causal_lm("llama")  # built with eager attention
    with pytest.raises(ValueError, match="set_attn_implementation"):
        GemFilter(filter_layer=1).select(model, prompt(10))


def test_unsupported_architecture_is_named() -> None:
    config = AutoConfig.for_model(
        "gpt2",
        n_embd=32,
        n_layer=2,
        n_head=4,
        vocab_size=64,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = AutoModelForCausalLM.from_config(config)
    for method in (GemFilter(filter_layer=0), SnapKV(budget=8, window=2), H2O(budget=8, window=2)):
        with pytest.raises(NotImplementedError, match="llama, mistral, qwen2, qwen3, phi3"):
            method.generate(model, prompt(10) % 64, max_new_tokens=1)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (SnapKV, {"budget": 0}),
        (SnapKV, {"budget": 8, "window": 9}),
        (SnapKV, {"budget": 8, "window": 0}),
        (SnapKV, {"pool_kernel": 2}),
        (H2O, {"budget": 4, "window": 5}),
    ],
)
def test_compressors_reject_bad_settings(cls: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        cls(**kwargs)
