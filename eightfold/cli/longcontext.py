"""``eightfold gemfilter`` (answer a question about a long file) and ``eightfold needle``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import typer

from eightfold.cli.common import console
from eightfold.storage import read_user_text

logger = logging.getLogger(__name__)


def _load(model: str) -> Any:
    from eightfold.models import load_causal_lm

    # sdpa keeps GemFilter's first pass linear in memory (eager would build n x n masks).
    return load_causal_lm(model, require_tokenizer=True, attn_implementation="sdpa")


def _prompt_ids(tokenizer: Any, context: str, question: str, chat_template: bool | None) -> Any:
    """Context then question; through the tokenizer's chat template when it has one (or asked)."""
    import torch

    text = f"{context.rstrip()}\n\nQuestion: {question}\nAnswer:"
    has_template = getattr(tokenizer, "chat_template", None) is not None
    use_template = has_template if chat_template is None else chat_template
    if use_template and not has_template:
        raise ValueError("--chat-template was given but the tokenizer has no chat template")
    if use_template:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt"
        )
        return ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    return tokenizer(text, return_tensors="pt")["input_ids"]


def _selected_text(tokenizer: Any, ids: Any, indices: list[int]) -> str:
    """The kept tokens as text, with `[...]` where tokens were dropped."""
    parts: list[str] = []
    run: list[int] = []
    previous = -1
    for index in indices:
        if previous >= 0 and index != previous + 1:
            parts.append(tokenizer.decode(run))
            parts.append(" [...] ")
            run = []
        run.append(int(ids[0, index]))
        previous = index
    parts.append(tokenizer.decode(run))
    if indices and indices[0] > 0:
        parts.insert(0, "[...] ")
    return "".join(parts)


def gemfilter_command(
    model: str = typer.Argument(
        ..., help="Model folder or hub id (Llama, Mistral, Qwen2/3, Phi3)."
    ),
    context: Path = typer.Option(..., "--context", help="Text file with the long context."),
    question: str = typer.Option(..., "--question", help="The question asked after the context."),
    topk: int = typer.Option(1024, help="Tokens GemFilter keeps."),
    filter_layer: int | None = typer.Option(
        None, help="0-based layer that selects; default: the authors' choice for known models."
    ),
    keep_last: int = typer.Option(0, help="Always keep this many final prompt tokens."),
    max_new_tokens: int = typer.Option(64, help="Tokens to generate."),
    chat_template: bool | None = typer.Option(
        None,
        "--chat-template/--no-chat-template",
        help="Default: use it when the tokenizer has one.",
    ),
    show_selected: bool = typer.Option(False, help="Also print the text GemFilter kept."),
) -> None:
    """Answer QUESTION about a long CONTEXT file with GemFilter (arXiv:2409.17422)."""
    import torch

    from eightfold.longcontext import GemFilter

    method = GemFilter(filter_layer=filter_layer, topk=topk, keep_last=keep_last)
    if max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1; got {max_new_tokens}")
    if not context.is_file():
        raise FileNotFoundError(f"--context {str(context)!r} is not a file; pass a text file")
    text = read_user_text(context, "--context")
    if not text.strip():
        raise ValueError(f"--context {str(context)!r} is empty; pass a file with text")
    loaded = _load(model)
    lm, tokenizer = loaded.model, loaded.tokenizer
    layer = method.resolve_filter_layer(lm)
    ids = _prompt_ids(tokenizer, text, question, chat_template)
    n = ids.shape[1]
    question_tokens = len(tokenizer(question, add_special_tokens=False)["input_ids"])

    start = time.perf_counter()
    selected = method.select(lm, ids)[0].tolist()
    select_seconds = time.perf_counter() - start
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    start = time.perf_counter()
    with torch.no_grad():
        out = method.generate(
            lm, ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad
        )
    generate_seconds = time.perf_counter() - start
    answer = tokenizer.decode(out[0, n:], skip_special_tokens=True).strip()

    # The prompt's tail: as many tokens as the question has, plus three for the "Answer:" cue.
    tail = set(range(max(0, n - question_tokens - 3), n))
    stats = {
        "input_tokens": n,
        "kept_tokens": len(selected),
        "kept_fraction": len(selected) / n,
        "filter_layer": layer,
        "layers": lm.config.num_hidden_layers,
        "last_token_kept": (n - 1) in selected,
        "prompt_tail_kept": len(tail & set(selected)) / max(1, len(tail)),
        "select_seconds": round(select_seconds, 3),
        "generate_seconds": round(generate_seconds, 3),
    }
    typer.echo(answer)
    typer.echo("")
    for key, value in stats.items():
        typer.echo(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    if show_selected:
        typer.echo("")
        typer.echo("selected text:")
        typer.echo(_selected_text(tokenizer, ids, selected))


def needle_command(
    model: str = typer.Argument(..., help="Model folder or hub id with a tokenizer."),
    method: str = typer.Option("gemfilter", help="gemfilter, snapkv, h2o or full."),
    lengths: str = typer.Option("512,1024,2000", help="Comma-separated prompt lengths in tokens."),
    depths: int = typer.Option(5, help="Number of needle depths from 0% to 100%."),
    topk: int = typer.Option(1024, help="GemFilter's kept tokens / SnapKV and H2O's budget."),
    filter_layer: int | None = typer.Option(None, help="GemFilter's 0-based filter layer."),
    window: int = typer.Option(32, help="SnapKV observation window / H2O recent tokens."),
    corpus: str = typer.Option("python-docs", help="Haystack corpus name or path."),
    split: str = typer.Option("test", help="Corpus split for the haystack."),
    max_new_tokens: int = typer.Option(12, help="Tokens generated per cell."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for needle.json and needle.png (replaced)."
    ),
) -> None:
    """Needle-in-a-haystack grid for MODEL with one long-context method."""
    from eightfold.corpora import load_corpus
    from eightfold.evaluation.needle import NeedleConfig, needle_eval, plot_needle_heatmap
    from eightfold.longcontext import make_method
    from eightfold.report import markdown_table
    from eightfold.storage import check_output_dir

    if out is not None:
        check_output_dir(out, kind="needle grid")
    try:
        context_lengths = [int(x) for x in lengths.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"--lengths must be comma-separated integers; got {lengths!r}") from exc
    if depths < 1:
        raise ValueError(f"--depths must be >= 1; got {depths}")
    depth_list = [i / (depths - 1) for i in range(depths)] if depths > 1 else [0.5]
    chosen = make_method(method, topk=topk, filter_layer=filter_layer, window=window)
    config = NeedleConfig(
        context_lengths=context_lengths, depths=depth_list, max_new_tokens=max_new_tokens
    )
    if split not in ("train", "validation", "test", "all"):
        raise ValueError(f"--split {split!r}; expected train, validation, test or all")
    haystack = load_corpus(corpus, split).texts  # type: ignore[arg-type]
    loaded = _load(model)
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    if positions is not None and max(context_lengths, default=0) + max_new_tokens > positions:
        raise ValueError(
            f"--lengths up to {max(context_lengths)} plus --max-new-tokens {max_new_tokens} "
            f"exceed the model's {positions} positions; use lengths of at most "
            f"{positions - max_new_tokens}"
        )
    result = needle_eval(loaded.model, loaded.tokenizer, chosen, haystack, config)

    rows = [
        {"length": c.context_length, "depth": f"{c.depth:.0%}", "score": c.score,
         "needle kept": c.needle_kept, "response": c.response[:60]}
        for c in result.cells
    ]  # fmt: skip
    typer.echo(markdown_table(rows))
    typer.echo(f"mean score ({result.method}): {result.mean_score:.3f}")
    if out is not None:
        from matplotlib.figure import Figure

        from eightfold.storage import atomic_dir, atomic_write_json

        with atomic_dir(out, kind="needle grid") as tmp:
            atomic_write_json(tmp / "needle.json", result.to_dict())
            fig = Figure(figsize=(1.2 * len(context_lengths) + 3, 0.5 * len(depth_list) + 2))
            plot_needle_heatmap(result, fig)
            fig.savefig(tmp / "needle.png", format="png", dpi=110, bbox_inches="tight")
        console.print(f"wrote {out / 'needle.json'} and {out / 'needle.png'}")
        logger.debug("needle result: %s", json.dumps(result.to_dict())[:200])


def register(app: typer.Typer) -> None:
    app.command("gemfilter")(gemfilter_command)
    app.command("needle")(needle_command)
