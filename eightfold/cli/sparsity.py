"""``eightfold sparsify``: N:M sparsity with MaskLLM, SparseGPT, Wanda or magnitude pruning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from eightfold.cli.common import console

logger = logging.getLogger(__name__)

METHOD_NAMES = ("maskllm", "sparsegpt", "wanda", "magnitude")


def sparsify_command(
    model: str = typer.Argument(..., help="Model folder or hub id."),
    out: Path = typer.Option(..., "--out", help="Output folder (replaced)."),
    method: str = typer.Option("maskllm", help="maskllm, sparsegpt, wanda or magnitude."),
    pattern: str = typer.Option("2:4", help="N:M pattern, e.g. 2:4, 1:4, 4:8."),
    corpus: str = typer.Option("python-docs", help="Corpus name or path (calibration/training)."),
    targets: list[str] = typer.Option(
        None,
        "--target",
        help="Regex of module names to sparsify (repeatable); default: every "
        "linear in the decoder layers.",
    ),
    samples: int = typer.Option(128, help="Calibration blocks (for MaskLLM: for the prior)."),
    block_size: int = typer.Option(256, help="Tokens per block."),
    batch_size: int = typer.Option(8, help="Blocks per forward pass / per MaskLLM step."),
    steps: int = typer.Option(2000, help="MaskLLM training steps."),
    train_blocks: int = typer.Option(4096, help="MaskLLM: at most this many training blocks."),
    learning_rate: float = typer.Option(5e-4, "--lr", help="MaskLLM peak learning rate."),
    min_learning_rate: float = typer.Option(5e-5, "--min-lr", help="MaskLLM final rate."),
    prior: str = typer.Option(
        "sparsegpt",
        help="MaskLLM prior: sparsegpt, magnitude, wanda, none, or a saved mask "
        "folder / checkpoint to continue from.",
    ),
    prior_strength: float = typer.Option(3.0, help="MaskLLM prior strength."),
    weight_reg: float = typer.Option(1e-5, help="MaskLLM sparse-weight regulariser weight."),
    scale_range: tuple[float, float] = typer.Option((100.0, 500.0), help="MaskLLM kappa."),
    temperature_range: tuple[float, float] = typer.Option((4.0, 0.05), help="MaskLLM tau."),
    hard: bool = typer.Option(False, help="MaskLLM: straight-through hard sampling."),
    checkpoint_dir: Path = typer.Option(
        None, help="MaskLLM checkpoints (default: OUT with suffix .checkpoint)."
    ),
    checkpoint_every: int = typer.Option(100, help="MaskLLM: steps between checkpoints."),
    fresh: bool = typer.Option(False, help="MaskLLM: ignore an existing checkpoint."),
    blocksize: int = typer.Option(128, help="SparseGPT lazy-update block size."),
    damp: float = typer.Option(0.01, help="SparseGPT damping (fraction of mean diag H)."),
    update_weights: bool = typer.Option(True, help="SparseGPT weight update (off: mask only)."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Test perplexity before/after."),
    eval_blocks: int = typer.Option(32, help="Held-out blocks for --eval."),
    seed: int = typer.Option(0),
) -> None:
    """Sparsify MODEL to an N:M pattern and save it with exact zeros and its masks."""
    import shutil

    import torch

    from eightfold.corpora import load_corpus, pack_blocks
    from eightfold.evaluation.perplexity import perplexity
    from eightfold.models import load_causal_lm
    from eightfold.report import markdown_table
    from eightfold.sparsity import METHODS, MaskLLM, SparseGPT, Sparsifier, check_nm, save_sparse
    from eightfold.storage import check_distinct, check_output_dir

    if method not in METHODS:
        raise ValueError(f"--method {method!r}; expected one of {', '.join(METHOD_NAMES)}")
    target_list = list(targets) if targets else None
    common: dict[str, Any] = {
        "pattern": pattern,
        "targets": target_list,
        "num_samples": samples,
        "batch_size": batch_size,
    }
    default_checkpoints = out.with_name(out.name + ".checkpoint")
    accelerator = None
    sparsifier: Sparsifier
    if method == "maskllm":
        from eightfold.sparsity.maskllm import default_accelerator

        accelerator = default_accelerator()
        sparsifier = MaskLLM(
            **common,
            steps=steps,
            learning_rate=learning_rate,
            min_learning_rate=min_learning_rate,
            prior=prior,
            prior_strength=prior_strength,
            weight_reg=weight_reg,
            scale_range=scale_range,
            temperature_range=temperature_range,
            hard=hard,
            seed=seed,
            checkpoint_every=checkpoint_every,
            resume=not fresh,
            checkpoint_dir=checkpoint_dir or default_checkpoints,
            accelerator=accelerator,
        )
    elif method == "sparsegpt":
        sparsifier = SparseGPT(
            **common, blocksize=blocksize, damp=damp, update_weights=update_weights
        )
    else:
        sparsifier = METHODS[method](**common)
    is_main = accelerator is None or accelerator.is_main_process
    check_distinct(out, model=model, corpus=corpus)
    check_output_dir(out, kind="model")

    loaded = load_causal_lm(model, require_tokenizer=True)
    lm, tok = loaded.model, loaded.tokenizer
    assert tok is not None
    max_ctx = getattr(lm.config, "max_position_embeddings", None)
    if max_ctx is not None and block_size > max_ctx:
        raise ValueError(
            f"--block-size {block_size} is larger than the model's context of {max_ctx} tokens; "
            f"pass --block-size {max_ctx} or less"
        )

    def blocks(split: str, limit: int) -> torch.Tensor:
        texts = load_corpus(corpus, split).texts  # type: ignore[arg-type]
        ids = tok(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return pack_blocks(ids, block_size, separator_id=tok.eos_token_id, max_blocks=limit)

    limit = max(samples, train_blocks) if method == "maskllm" else samples
    data = blocks("train", limit)
    if method == "maskllm":
        # A fixed random order, so the prior's first blocks are not one document.
        perm = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))
        data = data[perm]
    console.print(
        f"{method} {pattern}: {data.shape[0]} blocks of {block_size} tokens from {corpus}:train"
    )
    test = None
    if evaluate:
        try:
            test = blocks("test", eval_blocks)
        except ValueError as exc:
            logger.warning("no perplexity evaluation: %s", exc)
    dense_ppl = perplexity(lm, test).perplexity if test is not None else None

    result = sparsifier.apply_(lm, data)

    report = check_nm(lm, pattern, modules=list(result.masks))
    sparse_ppl = perplexity(lm, test).perplexity if test is not None else None
    if is_main:
        save_sparse(lm, out, masks=result.masks, pattern=pattern, tokenizer=tok, method=method)
        if (
            isinstance(sparsifier, MaskLLM)
            and checkpoint_dir is None
            and default_checkpoints.is_dir()
        ):
            # The result is saved; the training checkpoints are only needed to resume.
            shutil.rmtree(default_checkpoints, ignore_errors=True)
        from rich.table import Table

        table = Table(title=f"{pattern} check")
        rows = report.rows()
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        console.print(table)
        console.print(report.summary())
        if test is not None and dense_ppl is not None and sparse_ppl is not None:
            console.print(
                markdown_table(
                    [
                        {"model": "dense", "test perplexity": dense_ppl, "blocks": len(test)},
                        {
                            "model": f"{method} {pattern}",
                            "test perplexity": sparse_ppl,
                            "blocks": len(test),
                        },
                    ]
                )
            )
        console.print(f"saved to [bold]{out}[/bold] in {result.seconds:.1f} s")
        typer.echo(str(out))
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("sparsify")(sparsify_command)
