"""``eightfold train-lm`` and ``eightfold perplexity``."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from eightfold.cli.common import console

logger = logging.getLogger(__name__)


def train_lm_command(
    out: Path = typer.Option(..., "--out", help="Folder for the trained model."),
    corpus: str = typer.Option("python-docs", help="Corpus name or path."),
    steps: int = typer.Option(360, help="Training steps."),
    vocab_size: int = typer.Option(4096, help="BPE vocabulary size."),
    hidden_size: int = typer.Option(256),
    layers: int = typer.Option(4, help="Number of transformer layers."),
    heads: int = typer.Option(8, help="Attention heads."),
    kv_heads: int = typer.Option(4, help="Key/value heads (grouped-query attention)."),
    intermediate_size: int = typer.Option(768),
    block_size: int = typer.Option(256, help="Tokens per training block."),
    batch_size: int = typer.Option(16),
    learning_rate: float = typer.Option(2e-3),
    seed: int = typer.Option(0),
    fresh: bool = typer.Option(False, help="Ignore an existing checkpoint and start over."),
) -> None:
    """Train the small Llama demo model (and its tokenizer) from scratch; resumes if interrupted."""
    from eightfold.pretrain import LMTrainingConfig, train_lm

    config = LMTrainingConfig(
        corpus=corpus,
        steps=steps,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate_size,
        block_size=block_size,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        warmup_steps=min(30, max(1, steps // 10)),
    )
    result = train_lm(config, out, resume=not fresh)
    console.print(
        f"saved to [bold]{result.folder}[/bold]: {result.parameters / 1e6:.2f}M parameters, "
        f"{result.train_seconds:.0f} s, test perplexity {result.test_perplexity:.2f} "
        f"(unigram {result.unigram_test_perplexity:.2f})"
    )


def perplexity_command(
    model: str = typer.Argument(..., help="Model folder or hub id."),
    corpus: str = typer.Option("python-docs", help="Corpus name or path."),
    split: str = typer.Option("test", help="train, validation, test or all."),
    block_size: int = typer.Option(256, help="Tokens per block."),
    max_blocks: int = typer.Option(64, help="At most this many blocks."),
    batch_size: int = typer.Option(8),
    skip_bad_files: bool = typer.Option(True, help="Skip non-UTF-8 files (else fail)."),
) -> None:
    """Token-weighted perplexity of MODEL on a corpus split."""
    from eightfold.corpora import load_corpus, pack_blocks
    from eightfold.evaluation.perplexity import perplexity
    from eightfold.models import load_causal_lm

    if split not in ("train", "validation", "test", "all"):
        raise ValueError(f"--split {split!r}; expected train, validation, test or all")
    loaded = load_causal_lm(model, require_tokenizer=True)
    max_ctx = getattr(loaded.model.config, "max_position_embeddings", None)
    if max_ctx is not None and block_size > max_ctx:
        raise ValueError(
            f"--block-size {block_size} is larger than the model's context of {max_ctx} tokens; "
            f"pass --block-size {max_ctx} or less"
        )
    docs = load_corpus(corpus, split, on_decode_error="skip" if skip_bad_files else "error")  # type: ignore[arg-type]
    tok = loaded.tokenizer
    assert tok is not None
    ids = tok(docs.texts, add_special_tokens=False, verbose=False)["input_ids"]
    blocks = pack_blocks(ids, block_size, separator_id=tok.eos_token_id, max_blocks=max_blocks)
    result = perplexity(loaded.model, blocks, batch_size=batch_size)
    console.print(
        f"perplexity {result.perplexity:.3f} over {result.tokens} tokens "
        f"({blocks.shape[0]} blocks of {block_size}, {corpus}:{split})"
    )
    typer.echo(f"{result.perplexity:.6f}")


def register(app: typer.Typer) -> None:
    app.command("train-lm")(train_lm_command)
    app.command("perplexity")(perplexity_command)
