from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eightfold.models import (
    TINY_ARCHITECTURES,
    load_causal_lm,
    resolve_model_path,
    tiny_causal_lm,
    tiny_config,
)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_tiny_models_are_seeded_gqa_and_divisible_by_four(arch: str) -> None:
    config = tiny_config(arch)
    assert config.num_key_value_heads < config.num_attention_heads  # grouped-query attention
    for size in (config.hidden_size, config.intermediate_size, config.vocab_size):
        assert size % 4 == 0
    a, b = tiny_causal_lm(arch, seed=3), tiny_causal_lm(arch, seed=3)
    c = tiny_causal_lm(arch, seed=4)
    x = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        la, lb, lc = (m(input_ids=x).logits for m in (a, b, c))
    assert torch.equal(la, lb)
    assert not torch.equal(la, lc)


def test_tiny_config_rejects_unknown_architecture() -> None:
    with pytest.raises(ValueError, match="expected one of llama, mistral"):
        tiny_config("gpt2")


def test_missing_folder_and_missing_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path(tmp_path / "nope" / "deeper")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model_path(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="is a file"):
        resolve_model_path(tmp_path / "weights.bin")


@pytest.mark.parametrize("name", ["./my-lm", "~/no-such-eightfold-model", "runs/a/b"])
def test_relative_and_home_paths_are_folders_not_hub_ids(name: str) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; pass an existing folder"):
        resolve_model_path(name)


def test_bare_name_that_is_no_folder_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="No local folder 'my-missing-lm' exists"):
        load_causal_lm("my-missing-lm")


def test_offline_hub_id_error_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline.*download it first"):
        load_causal_lm("eightfold-test/does-not-exist")


def test_load_round_trip(tmp_path: Path) -> None:
    model = tiny_causal_lm("qwen2", seed=1)
    model.save_pretrained(tmp_path, safe_serialization=True)
    loaded = load_causal_lm(tmp_path)
    assert loaded.tokenizer is None
    x = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x).logits, loaded.model(input_ids=x).logits)
    with pytest.raises(FileNotFoundError, match="no usable tokenizer"):
        load_causal_lm(tmp_path, require_tokenizer=True)


def test_damaged_weights_and_config_name_the_folder(tmp_path: Path) -> None:
    model = tiny_causal_lm("llama", seed=0)
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="damaged or not a safetensors file"):
        load_causal_lm(tmp_path / "m")
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="could not load the model folder") as info:
        load_causal_lm(tmp_path / "m")
    assert "offline" not in str(info.value)
