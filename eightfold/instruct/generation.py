"""Generating responses to instructions, with or without the rule-based adapter, and simple
measurements of the outputs (length, how often they end, how much they repeat)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from eightfold.instruct.adapter import AdapterConfig, RuleBasedAdapter
from eightfold.instruct.template import TULU, ChatTemplate, get_template
from eightfold.progress import progress

logger = logging.getLogger(__name__)

__all__ = [
    "OutputStats",
    "compare_decoding",
    "generate_with_rules",
    "output_stats",
    "repetition_rate",
]


def generate_with_rules(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    *,
    rules: bool | AdapterConfig | RuleBasedAdapter = True,
    template: str | ChatTemplate = TULU,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    generator_name: str | None = None,
) -> list[dict[str, Any]]:
    """Answer each instruction; return alpaca_eval-style records.

    Parameters
    ----------
    model, tokenizer
        Any causal LM and its tokenizer.
    instructions
        The instructions, formatted with ``template`` before generation.
    rules
        ``True`` for the paper's adapter, ``False`` for the base model alone, or an
        :class:`AdapterConfig` / ready :class:`RuleBasedAdapter`.
    max_new_tokens
        Cap on response tokens (a response that reaches it has ``ended=False``).
    temperature, top_p
        ``temperature=0`` (default, as the paper) decodes greedily. When sampling, the adapter is
        applied before temperature and top-p.
    batch_size
        Prompts per ``generate`` call (left-padded); every row gets its own rule scores.
    generator_name
        The ``generator`` field of the records (default: model name plus ``+rules``).

    Returns
    -------
    list[dict]
        ``{"instruction", "output", "generator", "n_tokens", "ended"}`` per instruction, where
        ``ended`` says the model produced EOS before the cap.
    """
    if isinstance(instructions, str) or not all(isinstance(x, str) for x in instructions):
        raise TypeError("instructions must be a sequence of str (a list of instructions)")
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} and batch_size={batch_size}; both must be >= 1"
        )
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"temperature={temperature} must be >= 0 and top_p={top_p} in (0, 1]")
    chat = get_template(template)
    adapter: RuleBasedAdapter | None
    if isinstance(rules, RuleBasedAdapter):
        adapter = rules
    elif isinstance(rules, AdapterConfig):
        adapter = RuleBasedAdapter(tokenizer, config=rules, template=chat)
    elif rules is True:
        adapter = RuleBasedAdapter(tokenizer, template=chat)
    elif rules is False:
        adapter = None
    else:
        raise TypeError(
            f"rules must be a bool, AdapterConfig or RuleBasedAdapter, got {type(rules).__name__}"
        )
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no EOS token (eos_token_id is None); set one first")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    name = generator_name or (
        str(getattr(model.config, "_name_or_path", "") or model.config.model_type)
        + ("+rules" if adapter is not None else "")
    )

    # The adapter goes first so that the product of experts is formed before any warping.
    processors = LogitsProcessorList([adapter] if adapter is not None else [])
    sampling = temperature > 0
    if sampling:
        processors.append(TemperatureLogitsWarper(temperature))
        if top_p < 1:
            processors.append(TopPLogitsWarper(top_p))
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=1.0,
        top_p=1.0,
        top_k=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )

    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    records: list[dict[str, Any]] = []
    torch.manual_seed(seed)
    try:
        with progress("generating", total=len(instructions)) as update:
            for start in range(0, len(instructions), batch_size):
                chunk = list(instructions[start : start + batch_size])
                prompts = [chat.prompt(text) for text in chunk]
                batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
                if adapter is not None:
                    adapter.check_prompt(batch["input_ids"])
                with torch.no_grad():
                    out = model.generate(  # type: ignore[operator]
                        **batch, generation_config=config, logits_processor=processors
                    )
                new = out[:, batch["input_ids"].shape[1] :]
                for text, row in zip(chunk, new, strict=True):
                    ids = row.tolist()
                    ended = eos_id in ids
                    ids = ids[: ids.index(eos_id)] if ended else ids
                    records.append(
                        {
                            "instruction": text,
                            "output": str(tokenizer.decode(ids, skip_special_tokens=True)).strip(),
                            "generator": name,
                            "n_tokens": len(ids),
                            "ended": ended,
                            "token_ids": ids,
                        }
                    )
                update(len(chunk))
    finally:
        tokenizer.padding_side = old_side
    return records


def repetition_rate(token_ids: Sequence[int], n: int = 3) -> float:
    """Share of a sequence's token n-grams that already occurred earlier in it (0 = none).

    Returns 0.0 for sequences shorter than ``n + 1`` tokens.
    """
    grams = [tuple(token_ids[i : i + n]) for i in range(len(token_ids) - n + 1)]
    if len(grams) < 2:
        return 0.0
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


@dataclass(frozen=True, kw_only=True)
class OutputStats:
    """Summary of a set of generated responses."""

    n: int
    mean_tokens: float
    median_tokens: float
    eos_rate: float
    repetition_rate: float
    distinct_tokens: float

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def output_stats(records: Sequence[dict[str, Any]], n: int = 3) -> OutputStats:
    """Length, EOS rate and repetition of records from :func:`generate_with_rules`.

    ``repetition_rate`` is the mean over responses of :func:`repetition_rate` with ``n``;
    ``distinct_tokens`` the mean share of distinct token ids in a response.
    """
    if not records:
        raise ValueError("records is empty; generate at least one response first")
    lengths = sorted(int(r["n_tokens"]) for r in records)
    ids = [list(r.get("token_ids", [])) for r in records]
    middle = len(lengths) // 2
    median = (
        float(lengths[middle])
        if len(lengths) % 2
        else (lengths[middle - 1] + lengths[middle]) / 2.0
    )
    return OutputStats(
        n=len(records),
        mean_tokens=sum(lengths) / len(lengths),
        median_tokens=median,
        eos_rate=sum(bool(r["ended"]) for r in records) / len(records),
        repetition_rate=sum(repetition_rate(x, n) for x in ids) / len(ids),
        distinct_tokens=sum(len(set(x)) / len(x) if x else 0.0 for x in ids) / len(ids),
    )


def compare_decoding(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    variants: Mapping[str, bool | AdapterConfig],
    **generate_kwargs: Any,
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Generate with each decoding variant and summarise the outputs side by side.

    Parameters
    ----------
    variants
        ``{name: rules}`` where ``rules`` is as in :func:`generate_with_rules` (``False`` for the
        base model).
    **generate_kwargs
        Passed to :func:`generate_with_rules` (``max_new_tokens``, ``batch_size``...).

    Returns
    -------
    (list[dict], dict[str, list[dict]])
        One row of :class:`OutputStats` (plus ``variant`` and ``seconds``) per variant, and the
        records of each variant.
    """
    rows: list[dict[str, Any]] = []
    outputs: dict[str, list[dict[str, Any]]] = {}
    for name, rules in variants.items():
        start = time.perf_counter()
        records = generate_with_rules(
            model, tokenizer, instructions, rules=rules, generator_name=name, **generate_kwargs
        )
        seconds = time.perf_counter() - start
        outputs[name] = records
        rows.append({"variant": name, **output_stats(records).as_dict(), "seconds": seconds})
    return rows, outputs
