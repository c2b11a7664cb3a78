from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import eightfold.pretrain as pretrain
from eightfold.pretrain import LMTrainingConfig, train_lm


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
    words += ["while", "python", "parses", "code"]
    gen = torch.Generator().manual_seed(0)
    for i in range(60):
        idx = torch.randint(0, len(words), (120,), generator=gen).tolist()
        (folder / f"doc{i:02d}.txt").write_text(" ".join(words[j] for j in idx), encoding="utf-8")
    return folder


def _config(corpus: Path, **kw: object) -> LMTrainingConfig:
    base = dict(
        corpus=str(corpus),
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        block_size=32,
        batch_size=4,
        steps=12,
        warmup_steps=2,
        checkpoint_every=4,
        eval_blocks=4,
    )
    base.update(kw)
    return LMTrainingConfig(**base)  # type: ignore[arg-type]


def test_train_lm_saves_a_loadable_folder_that_beats_unigram(tmp_path: Path) -> None:
    config = _config(_corpus(tmp_path), steps=40, learning_rate=5e-3)
    result = train_lm(config, tmp_path / "lm")
    folder = tmp_path / "lm"
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert not (tmp_path / "lm.partial").exists()
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.eos_token == "</s>" and model.config.num_key_value_heads == 2
    assert result.test_perplexity < result.unigram_test_perplexity


def test_interrupted_training_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _corpus(tmp_path)
    reference = train_lm(_config(corpus), tmp_path / "ref")
    assert reference.resumed_from_step == 0

    real_lr = pretrain._lr_at

    def interrupt_at_step_6(step: int, config: LMTrainingConfig) -> float:
        if step == 6:
            raise KeyboardInterrupt
        return real_lr(step, config)

    monkeypatch.setattr(pretrain, "_lr_at", interrupt_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train_lm(_config(corpus), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "run.partial" / "checkpoint" / "state.json").is_file()

    monkeypatch.setattr(pretrain, "_lr_at", real_lr)
    resumed = train_lm(_config(corpus), tmp_path / "run")
    assert resumed.resumed_from_step == 4
    a = load_file(str(tmp_path / "ref" / "model.safetensors"))
    b = load_file(str(tmp_path / "run" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    (tmp_path / "run.partial").mkdir()
    (tmp_path / "run.partial" / "settings.json").write_text("{}")
    with pytest.raises(ValueError, match="other settings"):
        train_lm(_config(corpus), tmp_path / "run")


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match="steps=0"):
        LMTrainingConfig(steps=0)
    with pytest.raises(ValueError, match="not divisible by num_attention_heads"):
        LMTrainingConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="byte-level BPE needs at least"):
        LMTrainingConfig(vocab_size=100)
