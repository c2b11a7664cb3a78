"""Prefill time and peak memory of full attention, SnapKV, H2O and GemFilter on CPU.

The model is a randomly initialised Llama (cost does not depend on the weights). Each context
length runs in a fresh worker process that times every method side by side, interleaved, for
several repeats and reports medians. Peak memory is the rise of the process's resident set
during one prefill (``VmHWM`` after resetting it through ``/proc/self/clear_refs``, minus
``VmRSS`` before), so it counts activations, caches and scores but not the weights already
loaded.

Usage::

    python benchmarks/longcontext.py                      # 2k..32k, 3 repeats
    python benchmarks/longcontext.py --lengths 2048 4096 --repeats 2 --out /tmp/lc.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# A small Llama: grouped-query attention 2:1, MLP 3.5x hidden as in Llama-3.1-8B, scaled down so
# that a 32k-token full prefill takes seconds on one CPU core.
SHAPE = {
    "vocab_size": 4096,
    "hidden_size": 64,
    "intermediate_size": 224,
    "num_hidden_layers": 5,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 65536,
}
FILTER_LAYER = 1  # (filter_layer + 1) / layers = 0.4: the filter layer sits at 40% of the depth
TOPK = 1024  # GemFilter's kept tokens and SnapKV / H2O's cache budget, as in the paper
WINDOW = 32


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> int:
    """Free what can be freed, reset the high-water mark, and return the current RSS."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _methods() -> dict[str, Any]:
    from eightfold.longcontext import H2O, FullAttention, GemFilter, SnapKV

    return {
        "full": FullAttention(),
        "snapkv": SnapKV(budget=TOPK, window=WINDOW),
        "h2o": H2O(budget=TOPK, window=WINDOW),
        "gemfilter": GemFilter(filter_layer=FILTER_LAYER, topk=TOPK),
    }


def _kv_bytes(cache: Any) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def worker(n: int, repeats: int, methods: list[str]) -> dict[str, Any]:
    """Time every method at context length ``n`` in this process; returns per-run records."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        LlamaConfig(**SHAPE), attn_implementation="sdpa"
    ).eval()
    ids = torch.randint(3, SHAPE["vocab_size"], (1, n), generator=torch.Generator().manual_seed(n))
    available = _methods()
    chosen = {name: available[name] for name in methods}
    for method in chosen.values():  # warm-up: first-call allocations and kernel selection
        method.prefill(model, ids[:, : min(n, 2 * TOPK)])

    runs: list[dict[str, Any]] = []
    names = list(chosen)
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate the order
        for name in order:
            before = _reset_peak()
            wall, cpu = time.perf_counter(), time.process_time()
            out = chosen[name].prefill(model, ids)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            peak = _status("VmHWM") - before
            runs.append({
                "method": name, "n": n, "repeat": rep, "wall_s": wall, "cpu_s": cpu,
                "peak_bytes": peak, "kv_bytes": _kv_bytes(out.cache),
                "kv_length": out.kv_length, "first_token": int(out.logits.argmax()),
            })  # fmt: skip
            del out
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return {"n": n, "runs": runs}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median wall time, CPU time and peak memory per (n, method), with the ratios."""
    cells: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in runs:
        cells.setdefault((run["n"], run["method"]), []).append(run)
    rows = []
    for (n, method), group in sorted(cells.items()):
        rows.append({
            "n": n, "method": method, "repeats": len(group),
            "wall_s": statistics.median(r["wall_s"] for r in group),
            "cpu_s": statistics.median(r["cpu_s"] for r in group),
            "peak_mb": statistics.median(r["peak_bytes"] for r in group) / 2**20,
            "kv_mb": group[0]["kv_bytes"] / 2**20, "kv_length": group[0]["kv_length"],
        })  # fmt: skip
    by = {(r["n"], r["method"]): r for r in rows}
    layers = SHAPE["num_hidden_layers"]
    for row in rows:
        full, snap = by.get((row["n"], "full")), by.get((row["n"], "snapkv"))
        for ref_name, ref in (("full", full), ("snapkv", snap)):
            for key in ("wall_s", "cpu_s", "peak_mb"):
                value = row[key] / ref[key] if ref and ref[key] > 0 else None
                row[f"{key.split('_')[0]}_vs_{ref_name}"] = value
        if row["method"] == "gemfilter":
            row["expected_vs_full"] = (FILTER_LAYER + 1) / layers + min(TOPK, row["n"]) / row["n"]
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eightfold.storage import atomic_write_bytes

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in ("full", "snapkv", "h2o", "gemfilter"):
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue
        ns = [r["n"] for r in sel]
        axes[0].plot(ns, [r["wall_s"] for r in sel], marker="o", label=method)
        axes[1].plot(ns, [r["peak_mb"] for r in sel], marker="o", label=method)
    for ax, label in zip(
        axes, ("prefill wall time (s, median)", "peak RSS rise (MiB, median)"), strict=False
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"Llama {SHAPE['num_hidden_layers']} layers, hidden {SHAPE['hidden_size']}, "
        f"random weights, CPU; GemFilter layer {FILTER_LAYER}, k={TOPK}"
    )
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192, 16384, 32768])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--h2o-max-length", type=int, default=16384,
        help="skip H2O above this length (its scoring is quadratic in time)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "longcontext.json")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--methods", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.repeats, args.methods)))
        return 0

    from eightfold.storage import atomic_write_json

    started = time.time()
    runs: list[dict[str, Any]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for n in args.lengths:
        methods = ["full", "snapkv", "gemfilter"] + (["h2o"] if n <= args.h2o_max_length else [])
        cmd = [sys.executable, __file__, "--worker", str(n), "--repeats", str(args.repeats),
               "--methods", *methods]  # fmt: skip
        print(f"n={n}: {', '.join(methods)} x {args.repeats}", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        runs.extend(json.loads(done.stdout.strip().splitlines()[-1])["runs"])
    rows = summarise(runs)
    import torch
    import transformers

    result = {
        "benchmark": "longcontext prefill",
        "command": "python benchmarks/longcontext.py " + " ".join(argv or sys.argv[1:]),
        "shape": SHAPE, "filter_layer": FILTER_LAYER, "topk": TOPK, "window": WINDOW,
        "dtype": "float32", "attn_implementation": "sdpa", "threads": 1,
        "repeats": args.repeats, "h2o_max_length": args.h2o_max_length,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_at_end": os.getloadavg()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "seconds": time.time() - started, "rows": rows, "runs": runs,
    }  # fmt: skip
    atomic_write_json(args.out, result)
    plot(rows, args.out.with_suffix(".png"))
    for row in rows:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
