"""``eightfold generate``, ``eightfold tune`` and ``eightfold judge``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from eightfold.cli.common import console

logger = logging.getLogger(__name__)


def generate_command(
    model: str = typer.Argument(..., help="Model folder or hub id."),
    prompt: list[str] = typer.Option(
        None, "--prompt", "-p", help="An instruction (repeat for several)."
    ),
    prompts_file: Path = typer.Option(
        None, "--prompts-file", help="JSONL with an 'instruction' per line (instead of --prompt)."
    ),
    rules: bool = typer.Option(
        False, "--rules/--no-rules", help="Add the rule-based adapter to the model's logits."
    ),
    rule_set: str = typer.Option(
        "eos-uniform-diversity",
        help="Which rules: a string containing any of eos, uniform, diversity, start.",
    ),
    faithful: bool = typer.Option(
        True, "--faithful/--fixed", help="Official behaviour (ramp resets at 250) or fixed."
    ),
    hard_stop: int = typer.Option(
        None, help="With --fixed: force EOS after this many response tokens."
    ),
    template: str = typer.Option("tulu", help="Chat template: tulu (default) or chatml."),
    max_new_tokens: int = typer.Option(256, help="Cap on response tokens."),
    temperature: float = typer.Option(0.0, help="0 decodes greedily (the paper's setting)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling threshold when sampling."),
    batch_size: int = typer.Option(8, help="Prompts per generate call."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(
        None, "--out", help="Save records (.jsonl, or .json in alpaca_eval format)."
    ),
) -> None:
    """Answer instructions with MODEL, optionally with the rule-based adapter.

    One prompt prints the response; several print one JSON record per line.
    """
    from eightfold.instruct import AdapterConfig, generate_with_rules, save_outputs
    from eightfold.instruct.data import load_jsonl
    from eightfold.models import load_causal_lm

    instructions = list(prompt or [])
    if prompts_file is not None:
        for number, row in load_jsonl(prompts_file):
            if not isinstance(row.get("instruction"), str):
                raise ValueError(f"{prompts_file}:{number}: missing string field 'instruction'")
            instructions.append(row["instruction"])
    if not instructions:
        raise ValueError("no instruction given; pass --prompt TEXT or --prompts-file FILE")
    blank = [i for i, text in enumerate(instructions) if not text.strip()]
    if blank:
        raise ValueError(
            f"instruction {blank[0]} (counting from 0, --prompt values first) is empty; give "
            "every instruction some text"
        )
    config = (
        AdapterConfig(rules=rule_set, faithful=faithful, hard_stop_tokens=hard_stop)
        if rules
        else False
    )
    if not rules and (hard_stop is not None or rule_set != "eos-uniform-diversity"):
        raise ValueError("--rule-set and --hard-stop only apply with --rules; add --rules")
    loaded = load_causal_lm(model, require_tokenizer=True)
    assert loaded.tokenizer is not None  # require_tokenizer=True raises otherwise
    records = generate_with_rules(
        loaded.model,
        loaded.tokenizer,
        instructions,
        rules=config,
        template=template,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        seed=seed,
    )
    if out is not None:
        save_outputs(records, out)
        console.print(f"saved {len(records)} records to [bold]{out}[/bold]")
    if len(records) == 1 and out is None:
        typer.echo(records[0]["output"])
    elif out is None:
        for record in records:
            typer.echo(json.dumps({k: v for k, v in record.items() if k != "token_ids"}))
    ended = sum(r["ended"] for r in records)
    console.print(f"{ended} of {len(records)} responses ended with EOS before the cap")


def tune_command(
    model: str = typer.Argument(..., help="Model folder or hub id."),
    mode: str = typer.Option(..., help="instruction, response or single-task."),
    data: Path = typer.Option(..., "--data", help="Training data (JSONL)."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints/ and model/)."),
    preset_name: str = typer.Option(
        None, "--preset", help="A named recipe, e.g. llama2-7b-response or tiny-cpu."
    ),
    task: str = typer.Option(
        None, help="single-task rows in a dataset's own fields: gsm, mbpp, recipes, chess, poetry."
    ),
    template: str = typer.Option(None, help="Chat template (default tulu)."),
    epochs: float = typer.Option(None, help="Training epochs."),
    max_steps: int = typer.Option(None, help="Stop after this many optimiser steps."),
    learning_rate: float = typer.Option(None, "--lr", help="Peak learning rate."),
    batch_size: int = typer.Option(None, help="Sequences per device per micro-batch."),
    effective_batch_size: int = typer.Option(None, help="Sequences per optimiser step."),
    max_length: int = typer.Option(None, help="Token cap per example."),
    max_examples: int = typer.Option(None, help="Use at most this many examples."),
    lora: bool = typer.Option(False, "--lora/--full", help="LoRA (opt-in) or full fine-tuning."),
    lora_r: int = typer.Option(16, help="LoRA rank."),
    bf16: bool = typer.Option(None, "--bf16/--fp32", help="bfloat16 mixed precision."),
    save_steps: int = typer.Option(None, help="Checkpoint every this many steps."),
    seed: int = typer.Option(None),
) -> None:
    """Fine-tune MODEL: instruction, response or single-task tuning; resumes from OUT."""
    from eightfold.instruct.tuning import LoraSettings, TuningConfig, preset, tune
    from eightfold.storage import check_distinct

    overrides: dict[str, Any] = {
        "mode": mode,
        "task": task,
        "template": template,
        "epochs": epochs,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "per_device_batch_size": batch_size,
        "effective_batch_size": effective_batch_size,
        "max_length": max_length,
        "max_examples": max_examples,
        "bf16": bf16,
        "save_steps": save_steps,
        "seed": seed,
        "lora": LoraSettings(r=lora_r, alpha=2 * lora_r) if lora else None,
    }
    given = {k: v for k, v in overrides.items() if v is not None or k == "lora"}
    config = preset(preset_name, **given) if preset_name else TuningConfig(**given)
    check_distinct(out, model=model, data=data)
    result = tune(model, data, out, config=config)
    console.print(
        f"tuned {result.examples} examples for {result.steps} steps; loss "
        f"{result.first_loss if result.first_loss is not None else float('nan'):.3f} -> "
        f"{result.last_loss if result.last_loss is not None else float('nan'):.3f}"
        + (f" (resumed from {result.resumed_from})" if result.resumed_from else "")
    )
    typer.echo(str(result.folder))


def judge_command(
    model_outputs: Path = typer.Argument(..., help="Outputs to evaluate (JSONL or JSON)."),
    reference_outputs: Path = typer.Argument(..., help="Reference outputs, same instructions."),
    base_url: str = typer.Option(
        None, help="OpenAI-compatible endpoint (default $EIGHTFOLD_LLM_BASE_URL)."
    ),
    judge_model: str = typer.Option(
        None, "--model", help="Judge model name (default $EIGHTFOLD_LLM_MODEL)."
    ),
    both_orders: bool = typer.Option(
        True, "--both-orders/--one-order", help="Ask each pair in both orders (default)."
    ),
    timeout: float = typer.Option(60.0, help="Seconds per judge request."),
    retries: int = typer.Option(2, help="Retries of a failed request."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse earlier judgements."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(None, "--out", help="Write the full report (JSON) here."),
) -> None:
    """Win rate of MODEL_OUTPUTS against REFERENCE_OUTPUTS, decided by an LLM judge."""
    from eightfold.instruct.judge import PairwiseJudge, load_outputs
    from eightfold.llm import LLMConfig, LLMUnavailableError
    from eightfold.storage import atomic_write_json

    a = load_outputs(model_outputs)
    b = load_outputs(reference_outputs)
    config = LLMConfig.from_env(
        base_url=base_url, model=judge_model, timeout=timeout, max_retries=retries
    )
    judge = PairwiseJudge(config, both_orders=both_orders, cache=cache, seed=seed)
    report = judge.compare(a, b)
    if out is not None:
        atomic_write_json(out, report.to_dict())
    if report.n and report.failed == report.n:
        raise LLMUnavailableError(
            f"the judge gave no usable verdict for any of the {report.n} pairs (every request "
            f"failed or was unreadable at {config.base_url!r}), so there is no win rate; check "
            "that the server is up and that --base-url and --model are right"
        )
    console.print(
        f"win rate {100 * report.win_rate:.1f}% "
        f"[{100 * report.ci_low:.1f}, {100 * report.ci_high:.1f}] over {report.n} instructions; "
        f"length-controlled {100 * report.length_controlled_win_rate:.1f}%; "
        f"{report.failed} pair(s) and {report.failed_verdicts} single verdict(s) without a "
        "usable answer (counted as ties)"
    )
    typer.echo(json.dumps(report.summary(), indent=2, sort_keys=True))


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
    app.command("tune")(tune_command)
    app.command("judge")(judge_command)
