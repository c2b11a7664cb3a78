"""What the rule-based adapter and response tuning do to a base model's outputs, the adapter's
decoding overhead, and the judge harness under failures.

Four parts, all on this machine's CPU:

1. **Adapter effect.** The demo model (a small Llama trained on Python's documentation, a base
   model) answers eightfold's 48 Python instructions greedily with the paper's template, with
   and without the adapter, and with each rule alone: mean length, EOS rate, repetition.
2. **Adapter overhead.** Seconds per generated token with and without the adapter, median of
   several interleaved repeats, on a fixed-length generation (EOS does not stop it).
3. **Tuning.** Response tuning and instruction tuning of the demo model on 40 of the
   instructions (the ``tiny-cpu`` recipe); loss curves, then length / EOS rate on the 8
   held-out instructions, also with the adapter on the response-tuned model.
4. **Judge harness.** A local fake OpenAI-compatible judge with a known preference answers 10 %
   of requests with nonsense and lets 5 % time out; the harness must finish, count those pairs
   as ties, and recover the known win rate within its interval.

Usage::

    python benchmarks/instruct.py                # about 10 minutes on 2 shared, busy cores
    python benchmarks/instruct.py --quick --out /tmp/instruct.json
"""

from __future__ import annotations

import argparse
import logging
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

from eightfold.instruct import (  # noqa: E402
    AdapterConfig,
    PairwiseJudge,
    RuleBasedAdapter,
    builtin_instructions,
    preset,
    tune,
)
from eightfold.instruct.generation import compare_decoding  # noqa: E402
from eightfold.llm import LLMConfig  # noqa: E402

logger = logging.getLogger("benchmarks.instruct")
HELD_OUT = 8


def adapter_effect(lm: Any, instructions: list[str], max_new: int) -> list[dict[str, Any]]:
    variants: dict[str, bool | AdapterConfig] = {
        "base model": False,
        "rules: eos-uniform-diversity (paper, faithful)": AdapterConfig(),
        "rules: eos-uniform-diversity (fixed)": AdapterConfig(faithful=False),
        "rules: eos-uniform": AdapterConfig(rules="eos-uniform"),
        "rules: eos": AdapterConfig(rules="eos"),
        "rules: uniform": AdapterConfig(rules="uniform"),
        "rules: diversity": AdapterConfig(rules="diversity"),
    }
    rows, _ = compare_decoding(
        lm.model, lm.tokenizer, instructions, variants, max_new_tokens=max_new, batch_size=8
    )
    return rows


def adapter_overhead(lm: Any, instructions: list[str], tokens: int, repeats: int) -> dict[str, Any]:
    from transformers import GenerationConfig

    tokenizer = lm.tokenizer
    tokenizer.padding_side = "left"
    adapter = RuleBasedAdapter(tokenizer)
    prompts = [adapter.template.prompt(x) for x in instructions[:8]]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    # No EOS stop: every run generates exactly `tokens` tokens per row.
    config = GenerationConfig(
        max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    times: dict[str, list[float]] = {"base": [], "adapter": []}
    saved_eos = lm.model.generation_config.eos_token_id
    lm.model.generation_config.eos_token_id = None
    with torch.no_grad():
        for _ in range(repeats):
            for name in ("base", "adapter"):  # interleaved, so load changes hit both alike
                start = time.perf_counter()
                out = lm.model.generate(
                    **batch,
                    generation_config=config,
                    logits_processor=[adapter] if name == "adapter" else [],
                )
                times[name].append(time.perf_counter() - start)
                if out.shape[1] != batch["input_ids"].shape[1] + tokens:
                    raise RuntimeError("generation stopped early; the timing would be unfair")
    lm.model.generation_config.eos_token_id = saved_eos
    rows = batch["input_ids"].shape[0]
    base = statistics.median(times["base"])
    with_rules = statistics.median(times["adapter"])
    return {
        "batch": rows,
        "new_tokens": tokens,
        "repeats": repeats,
        "base_ms_per_token": 1000 * base / tokens,
        "adapter_ms_per_token": 1000 * with_rules / tokens,
        "ratio": with_rules / base,
        "raw_seconds": times,
    }


def tuning(lm: Any, steps: int, max_new: int) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    rows = builtin_instructions()
    train, held = rows[:-HELD_OUT], [r["instruction"] for r in rows[-HELD_OUT:]]
    out: dict[str, Any] = {"train_examples": len(train), "held_out": len(held), "runs": {}}
    table: list[dict[str, Any]] = []
    base_rows, _ = compare_decoding(
        lm.model, lm.tokenizer, held, {"base model": False}, max_new_tokens=max_new
    )
    table += base_rows
    for mode in ("response", "instruction"):
        config = preset(
            "tiny-cpu",
            mode=mode,
            max_steps=steps,
            max_length=160,
            logging_steps=5,
            save_steps=steps,
        )
        with tempfile.TemporaryDirectory(prefix="eightfold-bench-") as tmp:
            start = time.perf_counter()
            result = tune(lm.model, train, tmp, config=config, tokenizer=lm.tokenizer)
            seconds = time.perf_counter() - start
            tuned = AutoModelForCausalLM.from_pretrained(str(result.folder))
        tuned.eval()
        out["runs"][mode] = {
            "steps": result.steps,
            "seconds": seconds,
            "history": result.history,
            "first_loss": result.first_loss,
            "last_loss": result.last_loss,
            "response_tokens": result.response_tokens,
        }
        variants: dict[str, bool | AdapterConfig] = {f"{mode}-tuned": False}
        if mode == "response":
            variants[f"{mode}-tuned + rules"] = AdapterConfig()
        rows_, outputs = compare_decoding(
            tuned, lm.tokenizer, held, variants, max_new_tokens=max_new
        )
        table += rows_
        out["runs"][mode]["examples"] = [
            {"instruction": r["instruction"], "output": r["output"]}
            for r in outputs[f"{mode}-tuned"][:4]
        ]
    out["table"] = table
    return out


def judge_harness(pairs: int, seed: int) -> dict[str, Any]:
    from tests.fake_openai import FakeReply, fake_openai

    rng = random.Random(seed)
    truth = {f"Instruction {i}": rng.random() < 0.7 for i in range(pairs)}  # model better?
    model = [{"instruction": q, "output": f"model answer {i}"} for i, q in enumerate(truth)]
    reference = [{"instruction": q, "output": f"reference {i}"} for i, q in enumerate(truth)]
    chaos = random.Random(seed + 1)
    counts = {"nonsense": 0, "timeouts": 0}

    def judge(request: dict[str, Any]) -> str | FakeReply:
        roll = chaos.random()
        if roll < 0.10:
            counts["nonsense"] += 1
            return "Both are lovely."
        if roll < 0.15:
            counts["timeouts"] += 1
            return FakeReply(content="A", delay=0.4)
        text = request["messages"][-1]["content"]
        instruction = text.split("# Instruction\n", 1)[1].split("\n\n# Response A", 1)[0]
        model_first = text.index("model answer") < text.index("reference")
        model_better = truth[instruction]
        return "A" if model_better == model_first else "B"

    results: dict[str, Any] = {"pairs": pairs, "true_win_rate": sum(truth.values()) / pairs}
    for both in (True, False):
        with fake_openai(judge) as server:
            config = LLMConfig(
                base_url=server.url, model="fake-judge", timeout=0.2, max_retries=1, backoff=0
            )
            start = time.perf_counter()
            report = PairwiseJudge(config, both_orders=both, cache=None, seed=seed).compare(
                model, reference
            )
            seconds = time.perf_counter() - start
            requests = len(server.requests)
        results["both_orders" if both else "one_order"] = {
            **report.summary(),
            "requests": requests,
            "seconds": seconds,
        }
    results["injected"] = counts
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny settings (seconds).")
    parser.add_argument("--out", type=Path, default=RESULTS / "instruct.json")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument(
        "--steps",
        type=int,
        default=100,
        help="Tuning steps per recipe (100 = the tiny-cpu preset's 20 epochs of 40 examples).",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "httpx2"):  # the HTTP client logs every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from eightfold.demo import load_demo_lm

    lm = load_demo_lm(quick=args.quick)
    instructions = [r["instruction"] for r in builtin_instructions()]
    if args.quick:
        instructions = instructions[:8]
        args.max_new_tokens, args.steps, args.repeats, args.pairs = 24, 4, 2, 20

    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor(),
            "note": "2 CPU cores shared with other jobs: timings are contended; the overhead "
            "ratio compares interleaved runs of the same process",
        },
        "model": {
            "folder": str(lm.folder),
            "parameters": lm.training.get("parameters"),
            "quick": args.quick,
        },
        "settings": {
            "max_new_tokens": args.max_new_tokens,
            "instructions": len(instructions),
            "tuning_steps": args.steps,
            "repeats": args.repeats,
        },
    }
    logger.info("adapter effect")
    results["adapter_effect"] = adapter_effect(lm, instructions, args.max_new_tokens)
    logger.info("adapter overhead")
    results["adapter_overhead"] = adapter_overhead(
        lm, instructions, 64 if not args.quick else 8, args.repeats
    )
    logger.info("tuning")
    results["tuning"] = tuning(lm, args.steps, min(args.max_new_tokens, 128))
    logger.info("judge harness")
    results["judge_harness"] = judge_harness(args.pairs, seed=0)
    results["seconds"] = time.perf_counter() - t0
    results["command"] = shlex.join(["python", "benchmarks/instruct.py", *(argv or sys.argv[1:])])

    from eightfold.storage import atomic_write_json

    atomic_write_json(args.out, results)
    _plot(results, args.out.with_suffix(".png"))
    logger.info("wrote %s", args.out)
    return 0


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    rows = results["adapter_effect"]
    names = [r["variant"].replace("rules: ", "") for r in rows]
    ax1.barh(names, [r["mean_tokens"] for r in rows])
    for i, r in enumerate(rows):
        ax1.text(
            r["mean_tokens"],
            i,
            f"  EOS {100 * r['eos_rate']:.0f}%  rep {100 * r['repetition_rate']:.0f}%",
            va="center",
            fontsize=7,
        )
    ax1.invert_yaxis()
    ax1.set_xlabel(f"mean response tokens (cap {results['settings']['max_new_tokens']})")
    ax1.set_title("Adapter on the demo base model")
    for mode, run in results["tuning"]["runs"].items():
        ax2.plot(
            [h["step"] for h in run["history"]],
            [h["loss"] for h in run["history"]],
            label=f"{mode} tuning",
        )
    ax2.set_xlabel("optimiser step")
    ax2.set_ylabel("loss on response tokens (nats)")
    ax2.set_title("Tuning the demo model on 40 instructions")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png", delete=False) as handle:
        fig.savefig(handle.name)
    Path(handle.name).replace(path)


if __name__ == "__main__":
    sys.exit(main())
