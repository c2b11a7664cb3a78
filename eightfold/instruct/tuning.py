"""Instruction, response and single-task tuning on Hugging Face ``Trainer``.

Hewitt et al. (2024, arXiv 2409.14254) compare three ways to fine-tune a base model:

``instruction``
    ordinary instruction tuning: the instruction is visible, the loss is on the response only;
``response``
    response tuning: every instruction is replaced by the empty string, so the model only learns
    what responses look like; at test time it still sees the real instruction;
``single-task``
    instruction tuning on one narrow dataset (math word problems, Python functions, recipes,
    chess games or poems).

The paper fine-tunes all weights; :class:`LoraSettings` adds peft LoRA as an opt-in deviation
(results may differ from the paper's). Training runs in one process, or in many with
``accelerate launch`` (``Trainer`` picks up the distributed setup). Checkpoints are written
under ``OUT/checkpoints`` and a rerun with the same ``OUT`` resumes from the latest one; the
finished model is written atomically to ``OUT/model``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from eightfold.instruct.data import (
    SINGLE_TASKS,
    Messages,
    SupervisedCollator,
    encode_conversation,
    load_conversations,
    row_to_messages,
    strip_instructions,
)
from eightfold.instruct.template import get_template
from eightfold.progress import progress
from eightfold.storage import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "PRESETS",
    "LoraSettings",
    "TuningConfig",
    "TuningResult",
    "prepare_conversations",
    "preset",
    "tune",
]

MODES = ("instruction", "response", "single-task")


@dataclass(kw_only=True)
class LoraSettings:
    """peft LoRA settings (an opt-in; the paper fine-tunes all weights).

    ``target_modules=None`` adapts every linear layer except the output head.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None
    merge: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"lora r={self.r!r}; expected a positive integer such as 16")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora dropout={self.dropout!r}; expected a value in [0, 1)")


@dataclass(kw_only=True)
class TuningConfig:
    """Settings of one tuning run. Defaults follow the paper's Llama-2-7B recipe (§2.3).

    Parameters
    ----------
    mode
        ``"instruction"``, ``"response"`` or ``"single-task"``.
    task
        For ``single-task`` data in a source dataset's own fields: one of
        :data:`~eightfold.instruct.data.SINGLE_TASKS`. ``None`` reads the
        ``messages``/``instruction`` layouts.
    template
        Chat template name (default ``"tulu"``, the paper's; also used for models without one).
    learning_rate, epochs, warmup_ratio, weight_decay, lr_scheduler
        Optimiser schedule (paper: 1e-5 for Llama-2-7B, 3e-6 for OLMo-7B; linear; 3 % warmup;
        no weight decay).
    max_steps
        Stop after this many optimiser steps (``None``: run ``epochs``).
    per_device_batch_size, effective_batch_size
        Sequences per device per micro-batch, and per optimiser step across all processes and
        accumulation (paper: 1 and 64). Gradient accumulation is derived from them.
    max_length
        Token cap per example (paper: 2048).
    max_examples
        Keep at most this many examples (paper: the first 1,000 rows of a single-task set).
    bf16
        Train in bfloat16 mixed precision (paper: yes; needs hardware support).
    lora
        peft LoRA settings, or ``None`` for full fine-tuning (the paper's).
    save_steps, save_total_limit
        Checkpoint frequency and how many checkpoints to keep.
    """

    mode: str = "response"
    task: str | None = None
    template: str = "tulu"
    learning_rate: float = 1e-5
    epochs: float = 5.0
    max_steps: int | None = None
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    per_device_batch_size: int = 1
    effective_batch_size: int = 64
    max_length: int = 2048
    max_examples: int | None = None
    bf16: bool = False
    seed: int = 0
    lora: LoraSettings | None = None
    save_steps: int = 200
    save_total_limit: int = 2
    logging_steps: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; expected one of {', '.join(MODES)}")
        if self.task is not None and self.task not in SINGLE_TASKS:
            raise ValueError(f"task={self.task!r}; expected one of {sorted(SINGLE_TASKS)} or None")
        if self.task is not None and self.mode != "single-task":
            raise ValueError(f"task={self.task!r} needs mode='single-task', got {self.mode!r}")
        get_template(self.template)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r}; expected a positive number")
        if not self.epochs > 0:
            raise ValueError(f"epochs={self.epochs!r}; expected a positive number")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps!r}; expected a positive integer or None")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio={self.warmup_ratio!r}; expected a value in [0, 1)")
        for name in (
            "per_device_batch_size",
            "effective_batch_size",
            "max_length",
            "save_steps",
            "save_total_limit",
            "logging_steps",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")
        if self.effective_batch_size % self.per_device_batch_size:
            raise ValueError(
                f"effective_batch_size={self.effective_batch_size} is not a multiple of "
                f"per_device_batch_size={self.per_device_batch_size}; choose sizes that divide"
            )
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples={self.max_examples!r}; expected a positive integer")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paper_presets() -> dict[str, TuningConfig]:
    # Epochs chosen in the paper's test scripts (§2.3): Llama-2-7B lr 1e-5, OLMo-7B lr 3e-6;
    # both: full fine-tuning, effective batch 64, linear schedule, 3 % warmup, 2048 tokens, bf16.
    epochs = {
        "llama2-7b": {
            "instruction": 15,
            "response": 5,
            "gsm": 7,
            "mbpp": 15,
            "chess": 15,
            "poetry": 15,
            "recipes": 20,
        },
        "olmo-7b": {
            "instruction": 15,
            "response": 7,
            "gsm": 7,
            "mbpp": 7,
            "chess": 20,
            "poetry": 5,
            "recipes": 20,
        },
    }
    rates = {"llama2-7b": 1e-5, "olmo-7b": 3e-6}
    out: dict[str, TuningConfig] = {}
    for model, table in epochs.items():
        for name, n in table.items():
            mode = name if name in ("instruction", "response") else "single-task"
            out[f"{model}-{name}"] = TuningConfig(
                mode=mode,
                task=None if mode != "single-task" else name,
                learning_rate=rates[model],
                epochs=float(n),
                bf16=True,
                max_examples=1000 if mode == "single-task" else None,
            )
    # Small models on a CPU: a higher rate and a smaller batch, same schedule otherwise.
    out["tiny-cpu"] = TuningConfig(
        mode="response",
        learning_rate=1e-3,
        epochs=20.0,
        per_device_batch_size=8,
        effective_batch_size=8,
        max_length=256,
        warmup_ratio=0.03,
        save_steps=50,
    )
    return out


PRESETS: dict[str, TuningConfig] = _paper_presets()
"""Named recipes: ``llama2-7b-{instruction,response,gsm,mbpp,chess,poetry,recipes}``,
the same for ``olmo-7b-``, and ``tiny-cpu`` for small models on a CPU."""


def preset(name: str, **overrides: Any) -> TuningConfig:
    """A copy of a named preset with some fields changed."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r}; expected one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def prepare_conversations(conversations: Sequence[Messages], mode: str) -> list[Messages]:
    """Apply the mode's data transform (``response`` blanks the instructions)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; expected one of {', '.join(MODES)}")
    if mode == "response":
        return [strip_instructions(c) for c in conversations]
    return [list(c) for c in conversations]


@dataclass
class TuningResult:
    """What a tuning run produced.

    ``history`` holds the logged training losses ``{"step", "loss", "learning_rate"}``.
    """

    folder: Path
    config: TuningConfig
    examples: int
    response_tokens: int
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: str | None = None

    @property
    def first_loss(self) -> float | None:
        return self.history[0]["loss"] if self.history else None

    @property
    def last_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


class _ProgressCallback(TrainerCallback):
    def __init__(self) -> None:
        self._update: Any = None
        self._ctx: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._ctx = progress("tuning", total=state.max_steps)
            self._update = self._ctx.__enter__()
            if state.global_step:
                self._update(state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if self._update is not None and logs and "loss" in logs:
            self._update(0, loss=float(logs["loss"]))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._update is not None:
            self._update(1)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = self._update = None


def _conversations_from(
    data: str | os.PathLike[str] | Sequence[Mapping[str, Any]], config: TuningConfig
) -> list[Messages]:
    if isinstance(data, str | os.PathLike):
        return load_conversations(data, task=config.task, max_examples=config.max_examples)
    if isinstance(data, Mapping) or not isinstance(data, Sequence):
        raise TypeError(
            "data must be a JSONL path or a list of rows ({'messages': ...} or "
            f"{{'instruction': ..., 'response': ...}}), got {type(data).__name__}"
        )
    conversations: list[Messages] = []
    for index, row in enumerate(data):
        if isinstance(row, list):
            conversations.append(row_to_messages({"messages": row}, f"data[{index}]"))
        elif isinstance(row, Mapping):
            if config.task is not None:
                from eightfold.instruct.data import single_task_messages

                messages = single_task_messages(row, config.task, f"data[{index}]")
                if messages is None:
                    continue
                conversations.append(messages)
            else:
                conversations.append(row_to_messages(row, f"data[{index}]"))
        else:
            raise TypeError(f"data[{index}] must be a dict or a list of messages")
        if config.max_examples is not None and len(conversations) >= config.max_examples:
            break
    if not conversations:
        raise ValueError("data is empty; pass at least one example with a response")
    return conversations


def _apply_lora(model: PreTrainedModel, settings: LoraSettings) -> PreTrainedModel:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - peft is in the instruct extra
        raise ImportError("LoRA needs peft: pip install 'eightfold[instruct]'") from exc
    targets: Any = list(settings.target_modules) if settings.target_modules else "all-linear"
    lora = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)  # type: ignore[return-value]


def tune(
    model: str | os.PathLike[str] | PreTrainedModel,
    data: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    out: str | os.PathLike[str],
    *,
    config: TuningConfig | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> TuningResult:
    """Fine-tune ``model`` on ``data`` with the recipe in ``config`` and save it to ``out/model``.

    Parameters
    ----------
    model
        A model folder, hub id or loaded causal LM. A loaded model is copied first and left
        unchanged (pass a folder to avoid holding two copies of a large model).
    data
        A JSONL file (see :mod:`eightfold.instruct.data`) or a list of rows.
    out
        Run folder: ``checkpoints/`` (resumable) and, at the end, ``model/`` (the tuned model and
        tokenizer, plus ``tuning.json``).
    config
        The recipe (default :class:`TuningConfig`, the paper's Llama-2-7B response tuning).
    tokenizer
        Needed when ``model`` is a loaded model.

    Returns
    -------
    TuningResult

    Raises
    ------
    ValueError
        Empty data, a row missing a field (with its line number), bad settings.
    """
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    config = config if config is not None else TuningConfig()
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise NotADirectoryError(f"out={str(out_path)!r} is a file; expected a folder")

    # Data first: bad input should fail before a model is loaded.
    conversations = prepare_conversations(_conversations_from(data, config), config.mode)

    if isinstance(model, PreTrainedModel):
        if tokenizer is None:
            raise ValueError("tokenizer is required when model is a loaded model; pass tokenizer=")
        # Train a copy: the caller's model stays as it was.
        base = copy.deepcopy(model)
    else:
        from eightfold.models import load_causal_lm

        loaded = load_causal_lm(model, require_tokenizer=tokenizer is None)
        base = loaded.model
        tokenizer = tokenizer if tokenizer is not None else loaded.tokenizer
    assert tokenizer is not None  # checked above: given, or required from the folder
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token before tuning")
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )

    rows = []
    response_tokens = 0
    for conversation in conversations:
        example = encode_conversation(
            tokenizer, conversation, template=config.template, max_length=config.max_length
        )
        response_tokens += int((example.labels != -100).sum())
        rows.append({"input_ids": example.input_ids.tolist(), "labels": example.labels.tolist()})
    logger.info(
        "tuning (%s) on %d examples, %d response tokens", config.mode, len(rows), response_tokens
    )

    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = config.per_device_batch_size * world
    if config.effective_batch_size % per_step:
        raise ValueError(
            f"effective_batch_size={config.effective_batch_size} is not divisible by "
            f"per_device_batch_size x processes = {per_step}; change one of them"
        )
    accumulation = config.effective_batch_size // per_step

    trainable = base
    if config.lora is not None:
        trainable = _apply_lora(base, config.lora)
    trainable.train()

    checkpoints = out_path / "checkpoints"
    # transformers 5 reads a float warmup_steps as a ratio and has no warmup_ratio; 4.x has
    # warmup_ratio and would truncate a float warmup_steps to 0 steps.
    if "warmup_ratio" in inspect.signature(TrainingArguments).parameters:
        warmup: dict[str, Any] = {"warmup_ratio": config.warmup_ratio}
    else:
        warmup = {"warmup_steps": config.warmup_ratio}
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        lr_scheduler_type=config.lr_scheduler,
        **warmup,
        weight_decay=config.weight_decay,
        bf16=config.bf16,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=trainable,
        args=args,
        train_dataset=_ListDataset(rows),
        data_collator=SupervisedCollator(pad_id),
        callbacks=[_ProgressCallback()],
    )
    # Trainer prints its logs to stdout when tqdm is off; eightfold logs and shows progress itself.
    trainer.remove_callback(PrinterCallback)
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        logger.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)

    history = [
        {
            "step": float(h["step"]),
            "loss": float(h["loss"]),
            "learning_rate": float(h.get("learning_rate", math.nan)),
        }
        for h in trainer.state.log_history
        if "loss" in h
    ]
    final = trainable
    if config.lora is not None and config.lora.merge:
        final = trainable.merge_and_unload()  # type: ignore[operator]
    final.eval()
    result = TuningResult(
        folder=out_path / "model",
        config=config,
        examples=len(rows),
        response_tokens=response_tokens,
        steps=int(trainer.state.global_step),
        history=history,
        resumed_from=resume,
    )
    if trainer.is_world_process_zero():
        with atomic_dir(out_path / "model", kind="model") as tmp:
            final.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
            atomic_write_json(
                tmp / "tuning.json",
                {
                    "config": config.to_dict(),
                    "examples": len(rows),
                    "response_tokens": response_tokens,
                    "steps": result.steps,
                    "history": history,
                    "resumed_from": resume,
                },
            )
    return result
