from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from eightfold.evaluation.perplexity import perplexity, unigram_perplexity
from eightfold.models import tiny_causal_lm


class ConstantLogits(nn.Module):
    """A model whose logits are all equal: every token has probability 1 / vocab."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(vocab_size=vocab, max_position_embeddings=64)

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        b, s = input_ids.shape
        return SimpleNamespace(logits=torch.zeros(b, s, self.config.vocab_size) + self.dummy)


def test_uniform_model_has_perplexity_equal_to_vocab_size() -> None:
    blocks = torch.randint(0, 37, (5, 16), generator=torch.Generator().manual_seed(0))
    result = perplexity(ConstantLogits(37), blocks, batch_size=2)
    assert result.perplexity == pytest.approx(37.0, rel=1e-6)
    assert result.tokens == 5 * 15


def test_perplexity_is_token_weighted_mean_of_hf_loss() -> None:
    model = tiny_causal_lm("llama", seed=0)
    blocks = torch.randint(0, 256, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss = model(input_ids=blocks, labels=blocks).loss
    assert perplexity(model, blocks, batch_size=2).perplexity == pytest.approx(
        math.exp(float(loss)), rel=1e-5
    )


def test_block_longer_than_context_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than the model's context of 64"):
        perplexity(ConstantLogits(10), torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D tensor"):
        perplexity(ConstantLogits(10), torch.zeros(4, dtype=torch.long))


def test_unigram_known_answer() -> None:
    train = torch.tensor([[0, 0, 0, 1]])
    # add-one counts: token0 = 4, token1 = 2 over vocab 2 -> p(1) = 1/3
    result = unigram_perplexity(train, torch.tensor([[0, 1, 1]]), vocab_size=2)
    assert result.perplexity == pytest.approx(3.0)
