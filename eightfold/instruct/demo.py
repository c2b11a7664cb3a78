"""Demo section: the rule-based adapter and a small response-tuning run on the demo model.

The demo model is a small base model trained on Python's documentation, not a chat model, so
the section measures what the adapter and response tuning do to the *shape* of the outputs
(length, how often they end, repetition), not instruction-following quality.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

from eightfold.demo import DemoContext, demo_section
from eightfold.instruct.adapter import AdapterConfig
from eightfold.instruct.data import builtin_instructions
from eightfold.instruct.generation import compare_decoding
from eightfold.instruct.judge import save_outputs
from eightfold.instruct.tuning import preset, tune
from eightfold.report import Section, markdown_table

logger = logging.getLogger(__name__)

TITLE = "Instruct: instruction following without instruction tuning (rule-based adapter)"
HELD_OUT = 8


def _round(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = (
        "variant",
        "mean_tokens",
        "median_tokens",
        "eos_rate",
        "repetition_rate",
        "distinct_tokens",
        "seconds",
    )
    return [{k: row[k] for k in keep} for row in rows]


@demo_section(TITLE, order=60)
def instruct_section(ctx: DemoContext) -> Section:
    from transformers import AutoModelForCausalLM

    lm = ctx.language_model()
    rows = builtin_instructions()
    train, held_out = rows[:-HELD_OUT], rows[-HELD_OUT:]
    instructions = [r["instruction"] for r in (rows[:4] if ctx.quick else rows)]
    max_new = 16 if ctx.quick else 128
    common = {"max_new_tokens": max_new, "batch_size": 8}

    # 1. The adapter on the base model: the paper's rules, the fixed variant, single rules.
    variants: dict[str, bool | AdapterConfig] = {
        "base model": False,
        "rules (paper, faithful)": AdapterConfig(),
        "rules (fixed ramp, response-only diversity)": AdapterConfig(faithful=False),
        "eos only": AdapterConfig(rules="eos"),
        "uniform only": AdapterConfig(rules="uniform"),
        "diversity only": AdapterConfig(rules="diversity"),
    }
    if ctx.quick:  # seconds, not minutes: the paper's rules and the fixed variant only
        variants = dict(list(variants.items())[:3])
    adapter_rows, adapter_outputs = compare_decoding(
        lm.model, lm.tokenizer, instructions, variants, **common
    )

    # 2. Response tuning (instructions blanked) on the project's small instruction set.
    steps = 2 if ctx.quick else 60
    config = preset(
        "tiny-cpu",
        max_steps=steps,
        max_length=160,
        logging_steps=2 if ctx.quick else 5,
        seed=ctx.seed,
        save_steps=max(steps, 1),
    )
    with tempfile.TemporaryDirectory(prefix="eightfold-instruct-") as tmp:
        result = tune(lm.model, train, tmp, config=config, tokenizer=lm.tokenizer)
        tuned = AutoModelForCausalLM.from_pretrained(str(result.folder))
        tuned.eval()
    held = [r["instruction"] for r in (held_out[:4] if ctx.quick else held_out)]
    base_rows, _ = compare_decoding(lm.model, lm.tokenizer, held, {"base model": False}, **common)
    tuned_rows, tuned_outputs = compare_decoding(
        tuned,
        lm.tokenizer,
        held,
        {"response-tuned": False, "response-tuned + rules": AdapterConfig()},
        **common,
    )
    tuning_rows = base_rows + tuned_rows

    examples = []
    for name, records in {**adapter_outputs, **tuned_outputs}.items():
        for record in records[:3]:
            examples.append(
                {k: v for k, v in record.items() if k != "token_ids"} | {"variant": name}
            )
    save_outputs(examples, ctx.out / "instruct_examples.jsonl")

    history = result.history
    lengths = {row["variant"]: row["mean_tokens"] for row in adapter_rows}
    eos = {row["variant"]: row["eos_rate"] for row in adapter_rows}

    def draw_loss(fig: Any) -> None:
        ax = fig.add_subplot(111)
        ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker="o")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("loss on response tokens (nats)")
        ax.set_title("Response tuning of the demo model")

    def draw_adapter(fig: Any) -> None:
        ax = fig.add_subplot(111)
        names = list(lengths)
        ax.barh(names, [lengths[n] for n in names], color="tab:blue")
        for i, n in enumerate(names):
            ax.text(lengths[n], i, f"  EOS {100 * eos[n]:.0f}%", va="center", fontsize=8)
        ax.set_xlabel(f"mean response length (tokens, cap {max_new})")
        ax.invert_yaxis()
        ax.set_title("Rule-based adapter on the demo model")

    body = (
        "The demo model is a small Llama trained on Python's documentation: a base model that "
        "has never seen an instruction. Prompts use the paper's template "
        "(`<|user|>\\n{instruction}\\n<|assistant|>\\n`, eightfold's default for models "
        f"without a chat template), greedy decoding, at most {max_new} new tokens, on "
        f"{len(instructions)} instructions from eightfold's own Python instruction set. "
        "`eos_rate` is the share of responses that end with EOS before the cap; "
        "`repetition_rate` the share of token 3-grams that repeat an earlier one in the same "
        "response; `distinct_tokens` the share of distinct ids in a response.\n\n"
        + markdown_table(_round(adapter_rows))
        + "\n**Response tuning** (instructions replaced by empty strings, loss on responses "
        f"only): {len(train)} examples, {result.steps} steps of the `tiny-cpu` recipe "
        f"(full fine-tuning), loss {result.first_loss:.3f} → {result.last_loss:.3f}. "
        f"Outputs on the {len(held)} held-out instructions:\n\n"
        + markdown_table(_round(tuning_rows))
        + "\nThese numbers describe output length and form only. Whether the outputs follow "
        "the instructions was not judged here: no chat-capable pretrained model or judge "
        "endpoint is available on this machine (see docs/instruct.md). Example outputs: "
        "`instruct_examples.jsonl`.\n"
    )
    return Section(
        title=TITLE,
        body=body,
        figures={"instruct_adapter.png": draw_adapter, "instruct_response_tuning.png": draw_loss},
        data={
            "adapter": adapter_rows,
            "response_tuning": {
                "rows": tuning_rows,
                "history": history,
                "steps": result.steps,
                "examples": result.examples,
                "response_tokens": result.response_tokens,
            },
            "max_new_tokens": max_new,
        },
    )
