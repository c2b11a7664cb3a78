"""2:4 sparsity on the demo language model: dense, magnitude, Wanda, SparseGPT and MaskLLM.

Reproduces in miniature the comparison of MaskLLM (arXiv 2409.17481, Table 1: LLaMA-2 7B on
Wikitext, dense 5.12, SparseGPT 10.42, MaskLLM 6.72, i.e. MaskLLM leaves 30 % of the
dense-to-SparseGPT gap) and measures:

* held-out perplexity of every method, and of MaskLLM's argmax mask as training goes;
* the share of the dense-to-SparseGPT gap that MaskLLM leaves (target: at most 35 %);
* the cost of one MaskLLM step against a dense forward-backward on the same batch shape, both
  timed in this run (median of several repeats; target: at most 2x);
* peak memory (resident set growth) of MaskLLM training beside dense training, each measured in
  a fresh process.

Usage::

    python benchmarks/sparsity.py                 # the full demo LM (about 15 minutes on 2 cores)
    python benchmarks/sparsity.py --quick         # the tiny demo LM, seconds

Results go to ``benchmarks/results/sparsity.json`` and ``sparsity.png`` (``--quick``:
``sparsity-quick.*``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import math
import multiprocessing
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from eightfold.corpora import load_corpus, pack_blocks
from eightfold.demo import load_demo_lm
from eightfold.evaluation.perplexity import perplexity
from eightfold.pretrain import encode_corpus
from eightfold.sparsity import Magnitude, MaskLLM, SparseGPT, Wanda, check_nm
from eightfold.storage import atomic_write_bytes, atomic_write_json

logger = logging.getLogger("benchmarks.sparsity")

RESULTS = Path(__file__).resolve().parent / "results"


def _memory_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


def _peak_memory_worker(
    kind: str, folder: str, batch: torch.Tensor, steps: int, queue: Any
) -> None:
    """Train a few steps in a fresh process; report resident memory growth over the baseline."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(folder)
    data = batch.repeat(4, 1)
    # Reset the high-water mark after loading so only training counts.
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    base = _memory_kib()["VmRSS"]
    if kind == "dense":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for _ in range(steps):
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    else:
        MaskLLM(steps=steps, batch_size=batch.shape[0], prior="magnitude").compute_masks(
            model, data
        )
    queue.put(
        {
            "baseline_mib": base / 1024,
            "peak_mib": _memory_kib()["VmHWM"] / 1024,
            "growth_mib": (_memory_kib()["VmHWM"] - base) / 1024,
        }
    )


def peak_memory(kind: str, folder: Path, batch: torch.Tensor, steps: int = 3) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory_worker, args=(kind, str(folder), batch, steps, queue))
    proc.start()
    result = queue.get(timeout=900)
    proc.join()
    return result


def step_cost(
    model: torch.nn.Module, data: torch.Tensor, batch_size: int, repeats: int
) -> dict[str, Any]:
    """Median seconds of a dense forward-backward and of a MaskLLM step, same batch shape."""
    batch = data[:batch_size]
    dense_model = copy.deepcopy(model)
    dense_model.train()
    for param in dense_model.parameters():
        param.requires_grad_(True)

    def dense_times(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            loss = dense_model(input_ids=batch, labels=batch).loss
            loss.backward()
            out.append(time.perf_counter() - t0)
            dense_model.zero_grad(set_to_none=True)
        return out

    dense_times(1)  # warm-up
    dense = dense_times(repeats)
    stamps: list[float] = []
    MaskLLM(
        steps=repeats + 1,
        batch_size=batch_size,
        prior="magnitude",
        callback=lambda e: stamps.append(e["seconds"]),
    ).compute_masks(copy.deepcopy(model), data)
    mask_steps = [b - a for a, b in itertools.pairwise(stamps)]  # first = warm-up
    dense += dense_times(repeats)
    ratio = statistics.median(mask_steps) / statistics.median(dense)
    return {
        "dense_forward_backward_s": dense,
        "maskllm_step_s": mask_steps,
        "dense_median_s": statistics.median(dense),
        "maskllm_median_s": statistics.median(mask_steps),
        "ratio": ratio,
        "batch": list(batch.shape),
    }


def evaluate(model: torch.nn.Module, test: torch.Tensor) -> float:
    return perplexity(model, test).perplexity


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny demo LM, a few steps")
    parser.add_argument("--steps", type=int, default=None, help="MaskLLM training steps")
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4, help="MaskLLM sequences per step")
    parser.add_argument("--train-blocks", type=int, default=2048)
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    steps = args.steps or (12 if args.quick else 200)
    eval_every = args.eval_every or max(1, steps // 8)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t_start = time.perf_counter()

    lm = load_demo_lm(quick=args.quick)
    tok, cfg = lm.tokenizer, lm.config
    texts = load_corpus(cfg.corpus, "train").texts
    data = pack_blocks(
        encode_corpus(tok, texts),
        cfg.block_size,
        separator_id=tok.eos_token_id,
        max_blocks=args.train_blocks,
    )
    data = data[torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(0))]
    calibration = data[: args.calibration]
    test = lm.test_blocks
    logger.info(
        "model %.2fM parameters; %d training blocks of %d tokens; %d test blocks",
        lm.training["parameters"] / 1e6,
        data.shape[0],
        cfg.block_size,
        test.shape[0],
    )

    rows: list[dict[str, Any]] = []
    dense_ppl = evaluate(lm.model, test)
    rows.append({"method": "dense", "perplexity": dense_ppl, "seconds": 0.0, "nm_check": None})
    baselines = {
        "magnitude": Magnitude(),
        "Wanda": Wanda(num_samples=args.calibration),
        "SparseGPT (mask only, MaskLLM's prior)": SparseGPT(
            num_samples=args.calibration, update_weights=False, sequential=False
        ),
        "SparseGPT": SparseGPT(num_samples=args.calibration),
    }
    for name, method in baselines.items():
        model = copy.deepcopy(lm.model)
        result = method.apply_(model, calibration)
        ppl = evaluate(model, test)
        rows.append(
            {
                "method": name,
                "perplexity": ppl,
                "seconds": result.seconds,
                "nm_check": check_nm(model).ok,
            }
        )
        logger.info("%s: perplexity %.3f (%.1f s)", name, ppl, result.seconds)
    sparsegpt_ppl = rows[-1]["perplexity"]

    model = copy.deepcopy(lm.model)
    maskllm = MaskLLM(
        steps=steps,
        batch_size=args.batch_size,
        num_samples=args.calibration,
        eval_blocks=test,
        eval_every=eval_every,
    )
    result = maskllm.apply_(model, data)
    curve = [
        {"step": h["step"], "perplexity": h["eval_perplexity"]}
        for h in result.history
        if "eval_perplexity" in h
    ]
    maskllm_ppl = evaluate(model, test)
    rows.append(
        {
            "method": f"MaskLLM ({steps} steps)",
            "perplexity": maskllm_ppl,
            "seconds": result.seconds,
            "nm_check": check_nm(model).ok,
        }
    )
    gap_share = (maskllm_ppl - dense_ppl) / (sparsegpt_ppl - dense_ppl)
    logger.info("MaskLLM: perplexity %.3f, gap share %.2f", maskllm_ppl, gap_share)

    cost = step_cost(lm.model, data, args.batch_size, args.repeats)
    logger.info("step cost ratio %.2f", cost["ratio"])
    memory = None
    if not args.no_memory:
        batch = data[: args.batch_size]
        memory = {kind: peak_memory(kind, lm.folder, batch) for kind in ("dense", "maskllm")}

    tokens_per_step = args.batch_size * cfg.block_size
    results = {
        "command": shlex.join(["python", "benchmarks/sparsity.py", *(argv or sys.argv[1:])]),
        "model": {
            "parameters": lm.training["parameters"],
            "layers": cfg.num_hidden_layers,
            "hidden": cfg.hidden_size,
            "vocab": cfg.vocab_size,
            "corpus": cfg.corpus,
            "block_size": cfg.block_size,
        },
        "settings": {
            "quick": args.quick,
            "steps": steps,
            "batch_size": args.batch_size,
            "tokens_per_step": tokens_per_step,
            "train_blocks": int(data.shape[0]),
            "calibration_blocks": int(calibration.shape[0]),
            "test_blocks": int(test.shape[0]),
            "eval_every": eval_every,
            "threads": torch.get_num_threads(),
        },
        "perplexity": rows,
        "maskllm_curve": curve,
        "maskllm_history": [{k: v for k, v in h.items()} for h in result.history],
        "targets": {
            "gap_share": gap_share,
            "gap_share_target": 0.35,
            "gap_share_met": gap_share <= 0.35,
            "paper_gap_share": (6.72 - 5.12) / (10.42 - 5.12),
            "step_cost_ratio": cost["ratio"],
            "step_cost_target": 2.0,
            "step_cost_met": cost["ratio"] <= 2.0,
        },
        "step_cost": cost,
        "peak_memory": memory,
        "seconds": time.perf_counter() - t_start,
    }
    stem = "sparsity-quick" if args.quick else "sparsity"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"{stem}.json", results)
    atomic_write_bytes(args.out / f"{stem}.png", plot(rows, curve, steps))
    logger.info("wrote %s (%.0f s)", args.out / f"{stem}.json", results["seconds"])
    print(json.dumps(results["targets"], indent=2))
    return results


def plot(rows: list[dict[str, Any]], curve: list[dict[str, Any]], steps: int) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.add_subplot(111)
    ax.plot(
        [c["step"] for c in curve],
        [c["perplexity"] for c in curve],
        "o-",
        label="MaskLLM (argmax mask)",
        color="C3",
    )
    styles = {
        "dense": "k",
        "magnitude": "C0",
        "Wanda": "C1",
        "SparseGPT": "C2",
        "SparseGPT (mask only, MaskLLM's prior)": "C4",
    }
    for row in rows:
        if row["method"] in styles and math.isfinite(row["perplexity"]):
            ax.axhline(
                row["perplexity"],
                color=styles[row["method"]],
                ls="--",
                lw=1,
                label=f"{row['method']} {row['perplexity']:.2f}",
            )
    ax.set_xlabel(f"MaskLLM training step (of {steps})")
    ax.set_ylabel("test perplexity")
    ax.set_yscale("log")
    ax.set_title("2:4 sparsity on the demo LM")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


if __name__ == "__main__":
    main()
