"""Train the small demo language model from scratch: a byte-level BPE tokenizer and a
Llama-architecture model, with checkpoints that resume.

The result is a plain Hugging Face folder (``config.json``, ``model.safetensors`` and tokenizer
files) that ``AutoModelForCausalLM.from_pretrained`` loads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from eightfold.corpora import load_corpus, pack_blocks
from eightfold.evaluation.perplexity import perplexity, unigram_perplexity
from eightfold.progress import progress
from eightfold.storage import atomic_dir, atomic_write_json, check_output_dir

logger = logging.getLogger(__name__)

__all__ = ["LMTrainingConfig", "TrainedLM", "encode_corpus", "train_lm", "train_tokenizer"]

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


@dataclass(kw_only=True)
class LMTrainingConfig:
    """Settings of the demo language model and its training run.

    The defaults give a ~5M-parameter Llama that trains in about ten minutes on 2 CPU cores.
    """

    corpus: str = "python-docs"
    vocab_size: int = 4096
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    intermediate_size: int = 768
    block_size: int = 256
    batch_size: int = 16
    steps: int = 360
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50
    eval_blocks: int = 64

    def __post_init__(self) -> None:
        positive = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "intermediate_size",
            "block_size",
            "batch_size",
            "steps",
            "checkpoint_every",
            "eval_blocks",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")
        if self.vocab_size < len(SPECIAL_TOKENS) + 256:
            raise ValueError(
                f"vocab_size={self.vocab_size}; a byte-level BPE needs at least "
                f"{len(SPECIAL_TOKENS) + 256} entries (256 bytes + special tokens)"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; choose sizes that divide"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate}; expected > 0")

    def model_config(self) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            max_position_embeddings=max(self.block_size, 2048),
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )


@dataclass
class TrainedLM:
    """What :func:`train_lm` produced."""

    folder: Path
    parameters: int
    steps: int
    train_seconds: float
    train_tokens: int
    validation_perplexity: float
    test_perplexity: float
    unigram_test_perplexity: float
    resumed_from_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["folder"] = str(self.folder)
        return data


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with ``tokenizers`` on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=2048,
    )


def encode_corpus(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens."""
    # verbose=False: documents longer than the model context are expected here (they are packed).
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [list(ids) for ids in encoded]


def _lr_at(step: int, config: LMTrainingConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress_frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_frac)))


def _save_checkpoint(
    work: Path,
    model: LlamaForCausalLM,
    optimizer: torch.optim.Optimizer,
    step: int,
    history: list[dict[str, float]],
    elapsed: float,
) -> None:
    with atomic_dir(work / "checkpoint", kind="checkpoint") as tmp:
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(tmp / "model.safetensors"),
        )
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(
            json.dumps({"step": step, "history": history, "elapsed": elapsed}), encoding="utf-8"
        )


def train_lm(
    config: LMTrainingConfig, out: str | os.PathLike[str], *, resume: bool = True
) -> TrainedLM:
    """Train the tokenizer and model on ``config.corpus`` and save them to ``out``.

    Work in progress lives in ``<out>.partial/`` (tokenizer and the last checkpoint); an
    interrupted run started again with the same settings resumes from that checkpoint. The final
    folder appears at ``out`` only when training and evaluation are complete.

    Raises
    ------
    ValueError
        If a checkpoint exists for different settings (delete ``<out>.partial`` or pass
        ``resume=False``), or the corpus is too small for one batch.
    """
    out_path = Path(out)
    check_output_dir(out_path, kind="model")  # before training, not after
    work = out_path.with_name(out_path.name + ".partial")
    settings = asdict(config)
    if work.exists() and not resume:
        shutil.rmtree(work)
    if work.exists():
        saved = (
            json.loads((work / "settings.json").read_text())
            if (work / "settings.json").is_file()
            else None
        )
        if saved != settings:
            raise ValueError(
                f"{work} holds a checkpoint trained with other settings; delete that folder or "
                "pass resume=False (CLI: --fresh) to start over"
            )
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / "settings.json", settings)

    # Data and tokenizer.
    train_docs = load_corpus(config.corpus, "train").texts
    valid_docs = load_corpus(config.corpus, "validation").texts
    test_docs = load_corpus(config.corpus, "test").texts
    tok_dir = work / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    else:
        logger.info(
            "training a %d-entry byte-level BPE on %d documents", config.vocab_size, len(train_docs)
        )
        tokenizer = train_tokenizer(train_docs, config.vocab_size)
        with atomic_dir(tok_dir, kind="tokenizer") as tmp:
            tokenizer.save_pretrained(str(tmp))
    eos = tokenizer.eos_token_id
    train_blocks = pack_blocks(
        encode_corpus(tokenizer, train_docs), config.block_size, separator_id=eos
    )
    valid_blocks = pack_blocks(
        encode_corpus(tokenizer, valid_docs),
        config.block_size,
        separator_id=eos,
        max_blocks=config.eval_blocks,
    )
    test_blocks = pack_blocks(
        encode_corpus(tokenizer, test_docs),
        config.block_size,
        separator_id=eos,
        max_blocks=config.eval_blocks,
    )
    if train_blocks.shape[0] < config.batch_size:
        raise ValueError(
            f"the training split has {train_blocks.shape[0]} blocks of {config.block_size} tokens, "
            f"fewer than one batch of {config.batch_size}; use a larger corpus or a smaller "
            "--batch-size / --block-size"
        )
    logger.info(
        "data: %d train blocks (%d tokens), %d validation, %d test",
        train_blocks.shape[0],
        train_blocks.numel(),
        valid_blocks.shape[0],
        test_blocks.shape[0],
    )

    # Model and optimiser, restored from the checkpoint when there is one.
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(config.model_config())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    start_step, history, elapsed = 0, [], 0.0
    ckpt = work / "checkpoint"
    if (ckpt / "state.json").is_file():
        model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        state = json.loads((ckpt / "state.json").read_text())
        start_step, history, elapsed = state["step"], state["history"], state["elapsed"]
        logger.info("resuming from the checkpoint at step %d", start_step)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model: %.2fM parameters", n_params / 1e6)

    # Training loop; batch order depends only on (seed, step), so a resumed run sees the same data.
    model.train()
    tokens_per_step = config.batch_size * config.block_size
    t0 = time.perf_counter()
    with progress("train-lm", total=config.steps) as update:
        update(start_step)
        for step in range(start_step, config.steps):
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            idx = torch.randint(0, train_blocks.shape[0], (config.batch_size,), generator=gen)
            batch = train_blocks[idx]
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, config)
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            spent = elapsed + time.perf_counter() - t0
            done = step + 1 - start_step
            tok_s = done * tokens_per_step / max(time.perf_counter() - t0, 1e-9)
            update(1, loss=loss.item(), tok_s=round(tok_s))
            if (step + 1) % 10 == 0 or step + 1 == config.steps:
                history.append({"step": step + 1, "loss": loss.item(), "seconds": spent})
                logger.debug("step %d loss %.4f", step + 1, loss.item())
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                _save_checkpoint(work, model, optimizer, step + 1, history, spent)
    train_seconds = elapsed + time.perf_counter() - t0
    model.eval()

    # Held-out evaluation beside a unigram model of the same tokenizer.
    valid = perplexity(model, valid_blocks)
    test = perplexity(model, test_blocks)
    unigram = unigram_perplexity(train_blocks, test_blocks, config.vocab_size)
    result = TrainedLM(
        folder=out_path,
        parameters=n_params,
        steps=config.steps,
        train_seconds=train_seconds,
        train_tokens=config.steps * tokens_per_step,
        validation_perplexity=valid.perplexity,
        test_perplexity=test.perplexity,
        unigram_test_perplexity=unigram.perplexity,
        resumed_from_step=start_step,
        history=history,
    )
    with atomic_dir(out_path, kind="model") as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / "training.json", {"settings": settings, **result.as_dict()})
    shutil.rmtree(work, ignore_errors=True)
    logger.info("test perplexity %.2f (unigram %.2f)", test.perplexity, unigram.perplexity)
    return result
