"""Token-weighted perplexity over fixed blocks, and a unigram baseline on the same tokens."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from eightfold.progress import progress

logger = logging.getLogger(__name__)

__all__ = ["PerplexityResult", "perplexity", "unigram_perplexity"]


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity with the numbers it came from.

    ``nll`` is the mean negative log-likelihood in nats over ``tokens`` predicted tokens; every
    block of length L contributes L - 1 predictions (the first token has no context).
    """

    perplexity: float
    nll: float
    tokens: int

    def as_dict(self) -> dict[str, float | int]:
        return {"perplexity": self.perplexity, "nll": self.nll, "tokens": self.tokens}


def _check_blocks(blocks: torch.Tensor) -> None:
    if not isinstance(blocks, torch.Tensor) or blocks.dim() != 2:
        raise ValueError(
            f"blocks must be a 2-D tensor (num_blocks, block_size); got "
            f"{type(blocks).__name__} with shape {tuple(getattr(blocks, 'shape', ()))}"
        )
    if blocks.shape[0] == 0 or blocks.shape[1] < 2:
        raise ValueError(
            f"blocks has shape {tuple(blocks.shape)}; expected at least one block of 2+ tokens"
        )


@torch.no_grad()
def perplexity(model: nn.Module, blocks: torch.Tensor, *, batch_size: int = 8) -> PerplexityResult:
    """Perplexity of a causal LM on token blocks.

    Parameters
    ----------
    model
        A Hugging Face causal LM (anything returning ``.logits`` of shape
        ``(batch, seq, vocab)``).
    blocks
        ``(num_blocks, block_size)`` token ids; each block is scored independently.
    batch_size
        Blocks per forward pass.

    Raises
    ------
    ValueError
        If a block is longer than the model's context (``max_position_embeddings``).
    """
    _check_blocks(blocks)
    config = getattr(model, "config", None)
    max_len = getattr(config, "max_position_embeddings", None)
    if max_len is not None and blocks.shape[1] > max_len:
        raise ValueError(
            f"block size {blocks.shape[1]} is larger than the model's context of {max_len} "
            f"tokens (max_position_embeddings); pass a block size of at most {max_len}"
        )
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and int(blocks.max()) >= vocab:
        raise ValueError(
            f"token id {int(blocks.max())} is outside the model's vocabulary of {vocab}; "
            "tokenise the text with this model's tokenizer"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nll = 0.0
    total_tokens = 0
    try:
        with progress("perplexity", total=blocks.shape[0]) as update:
            for start in range(0, blocks.shape[0], batch_size):
                batch = blocks[start : start + batch_size].to(device)
                logits = model(input_ids=batch).logits.float()
                # Shift so that position t predicts token t + 1.
                loss = nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]),
                    batch[:, 1:].reshape(-1),
                    reduction="sum",
                )
                total_nll += float(loss)
                total_tokens += batch[:, 1:].numel()
                update(batch.shape[0], ppl=math.exp(total_nll / total_tokens))
    finally:
        model.train(was_training)
    nll = total_nll / total_tokens
    return PerplexityResult(perplexity=math.exp(nll), nll=nll, tokens=total_tokens)


def unigram_perplexity(
    train_blocks: torch.Tensor, eval_blocks: torch.Tensor, vocab_size: int
) -> PerplexityResult:
    """Perplexity of an add-one smoothed unigram model fitted on ``train_blocks``.

    It is scored on exactly the tokens :func:`perplexity` scores (every token but the first of
    each block), so the two numbers compare directly.
    """
    _check_blocks(eval_blocks)
    counts = torch.bincount(train_blocks.reshape(-1), minlength=vocab_size).double() + 1.0
    log_probs = counts.log() - counts.sum().log()
    targets = eval_blocks[:, 1:].reshape(-1)
    nll = float(-log_probs[targets].mean())
    return PerplexityResult(perplexity=math.exp(nll), nll=nll, tokens=targets.numel())
