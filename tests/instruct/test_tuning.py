"""Tuning data, masking and a short training run with resume and LoRA."""

from __future__ import annotations

import json

import pytest
import torch

from eightfold.instruct import TULU
from eightfold.instruct.data import (
    SupervisedCollator,
    builtin_instructions,
    encode_conversation,
    load_conversations,
    load_jsonl,
    single_task_messages,
    strip_instructions,
)
from eightfold.instruct.tuning import LoraSettings, TuningConfig, preset, tune


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_errors_name_the_line(tmp_path):
    good = {"instruction": "Say hi.", "response": "Hi!"}
    path = _write(tmp_path / "a.jsonl", [good, "", {"instruction": "x"}])
    with pytest.raises(ValueError, match=r"a.jsonl:3: missing field 'response'"):
        load_conversations(path)
    path = _write(tmp_path / "b.jsonl", [good, "{not json"])
    with pytest.raises(ValueError, match=r"b.jsonl:2: not valid JSON"):
        load_jsonl(path)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="has no rows"):
        load_conversations(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError):
        load_conversations(tmp_path / "missing.jsonl")
    path = _write(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(ValueError, match="c.jsonl:1: no assistant message"):
        load_conversations(path)


def test_strip_instructions_blanks_user_turns_only():
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "More"},
        {"role": "assistant", "content": "Sure"},
    ]
    stripped = strip_instructions(messages)
    assert [m["content"] for m in stripped] == ["", "Hello", "", "Sure"]
    assert messages[0]["content"] == "Hi"  # input untouched
    assert TULU.render(stripped[:2], "</s>") == "<|user|>\n\n<|assistant|>\nHello</s>"


def test_loss_mask_covers_responses_and_eos(bpe_tokenizer):
    messages = [
        {"role": "user", "content": "Explain x."},
        {"role": "assistant", "content": "It is one."},
        {"role": "user", "content": "And y?"},
        {"role": "assistant", "content": "Two."},
    ]
    example = encode_conversation(bpe_tokenizer, messages)
    labelled = example.labels != -100
    spans = []  # contiguous labelled runs, decoded
    run: list[int] = []
    for token, on in zip(example.input_ids.tolist(), labelled.tolist(), strict=True):
        if on:
            run.append(token)
        elif run:
            spans.append(bpe_tokenizer.decode(run))
            run = []
    if run:
        spans.append(bpe_tokenizer.decode(run))
    # Response, EOS and the newline closing the first turn; the tags and instructions are context.
    assert spans == ["It is one.</s>\n", "Two.</s>"]
    assert example.input_ids[-1] == bpe_tokenizer.eos_token_id


def test_collator_pads_with_ignored_labels():
    batch = SupervisedCollator(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_single_task_formatters():
    gsm = single_task_messages({"question": "1+1?", "answer": "2\n#### 2"}, "gsm")
    assert gsm[1]["content"].endswith("#### 2")
    recipe = single_task_messages(
        {"Title": "Tea", "Ingredients": "['water', 'tea leaves']", "Instructions": "Boil."},
        "recipes",
    )
    assert recipe[0]["content"] == "Recipe for Tea"
    assert recipe[1]["content"] == " - water\n - tea leaves\n\nBoil."
    chess = single_task_messages(
        {"pgn": '[Event "x"]\n[WhiteElo "1500"]\n[BlackElo "1600"]\n\n1. e4 e5 2. Nf3 1-0'},
        "chess",
    )
    assert chess[0]["content"] == '[WhiteElo "1500"]\n[BlackElo "1600"]'
    assert chess[1]["content"].startswith("1. e4")
    assert single_task_messages({"poem name": "", "content": "x"}, "poetry") is None
    poem = single_task_messages({"poem name": "Sea", "content": "Waves."}, "poetry")
    assert poem[0]["content"] == "Write a poem called Sea"
    mbpp = single_task_messages(
        {"text": "Add.", "code": "def add(a, b):\n    return a + b"}, "mbpp"
    )
    assert mbpp[1]["content"].startswith("def add")
    with pytest.raises(ValueError, match="missing field 'answer'"):
        single_task_messages({"question": "q"}, "gsm", "f.jsonl:4")


def test_presets_follow_the_paper():
    assert preset("llama2-7b-response").epochs == 5 and preset("olmo-7b-response").epochs == 7
    assert preset("llama2-7b-gsm").task == "gsm" and preset("llama2-7b-gsm").max_examples == 1000
    assert preset("olmo-7b-instruction").learning_rate == 3e-6
    assert preset("llama2-7b-recipes").effective_batch_size == 64
    with pytest.raises(ValueError, match="expected one of"):
        preset("gpt-4")
    with pytest.raises(ValueError, match="mode="):
        TuningConfig(mode="chat")


def test_builtin_instruction_set():
    rows = builtin_instructions()
    assert len(rows) >= 40 and all(r["instruction"] and r["response"] for r in rows)


def test_empty_data_is_rejected(bpe_tokenizer, tiny_lm, tmp_path):
    with pytest.raises(ValueError, match="data is empty"):
        tune(tiny_lm, [], tmp_path / "run", tokenizer=bpe_tokenizer)


@pytest.mark.slow
def test_response_tuning_loss_falls_and_resumes(bpe_tokenizer, tiny_lm, tmp_path):
    rows = builtin_instructions()[:8]
    before = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    config = preset("tiny-cpu", max_steps=4, save_steps=2, logging_steps=1, max_length=96)
    first = tune(tiny_lm, rows, tmp_path / "run", config=config, tokenizer=bpe_tokenizer)
    assert first.steps == 4 and first.resumed_from is None
    assert all(torch.equal(before[k], v) for k, v in tiny_lm.state_dict().items())
    longer = preset("tiny-cpu", max_steps=12, save_steps=2, logging_steps=1, max_length=96)
    second = tune(tiny_lm, rows, tmp_path / "run", config=longer, tokenizer=bpe_tokenizer)
    assert second.resumed_from is not None and second.resumed_from.endswith("checkpoint-4")
    assert second.steps == 12
    losses = [h["loss"] for h in second.history]
    assert losses[-1] < losses[0]
    saved = json.loads((tmp_path / "run" / "model" / "tuning.json").read_text())
    assert saved["steps"] == 12 and saved["config"]["mode"] == "response"
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_lora_tuning_saves_a_merged_model(bpe_tokenizer, tiny_lm, tmp_path):
    from transformers import AutoModelForCausalLM

    rows = builtin_instructions()[:4]
    config = preset(
        "tiny-cpu", mode="instruction", max_steps=2, max_length=64, lora=LoraSettings(r=4, alpha=8)
    )
    result = tune(tiny_lm, rows, tmp_path / "lora", config=config, tokenizer=bpe_tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(result.folder)
    assert not any("lora" in name for name in merged.state_dict())
    assert result.steps == 2


@pytest.mark.slow
def test_single_task_tuning_runs_with_warmup(bpe_tokenizer, tiny_lm, tmp_path):
    rows = [
        {"question": f"What is {i} plus {i}?", "answer": f"{2 * i}\n#### {2 * i}"} for i in range(8)
    ]
    config = preset(
        "tiny-cpu",
        mode="single-task",
        task="gsm",
        max_steps=4,
        logging_steps=1,
        warmup_ratio=0.5,
        max_length=64,
    )
    result = tune(tiny_lm, rows, tmp_path / "gsm", config=config, tokenizer=bpe_tokenizer)
    assert result.steps == 4
    rates = [h["learning_rate"] for h in result.history]
    # Half the steps warm up linearly, then the linear schedule decays: the peak is not first.
    assert rates[0] < max(rates) and rates.index(max(rates)) in (1, 2)
    saved = json.loads((tmp_path / "gsm" / "model" / "tuning.json").read_text())
    assert saved["config"]["mode"] == "single-task" and saved["config"]["task"] == "gsm"
