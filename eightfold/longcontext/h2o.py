"""H2O (prefill-only): keep the heavy hitters of the prompt's attention plus the recent tokens.

Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language
Models", arXiv:2306.14048, in the variant the GemFilter authors compare against
(arXiv:2409.17422): scores are accumulated once over the prompt and nothing is evicted while
decoding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from eightfold.longcontext.base import project_queries
from eightfold.longcontext.kvcache import KVCacheCompressor, grouped_logits

logger = logging.getLogger(__name__)

__all__ = ["H2O", "accumulated_attention"]


def accumulated_attention(
    attn: Any,
    hidden_states: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    keys: torch.Tensor,
    *,
    chunk_elements: int = 1 << 24,
) -> torch.Tensor:
    """Causal attention probabilities summed over every query row (column sums), per head.

    The ``n x n`` matrix is never held: query rows are processed in chunks of at most
    ``chunk_elements`` probabilities, so memory is linear in ``n`` (the work stays quadratic).

    Parameters
    ----------
    attn
        The layer's ``self_attn`` (its projections and scale are used).
    hidden_states
        The layer's attention input, ``(batch, n, hidden)``.
    position_embeddings
        ``(cos, sin)``, each ``(batch, n, rotary_dim)``.
    keys
        Post-RoPE keys, ``(batch, kv_heads, n, d)``.

    Returns
    -------
    torch.Tensor
        ``(batch, kv_heads, group, n)`` float32 column sums.
    """
    batch, kv_heads, n, _ = keys.shape
    heads = int(attn.config.num_attention_heads)
    group = heads // kv_heads
    rows = max(1, min(n, chunk_elements // max(1, batch * heads * n)))
    total = torch.zeros(batch, kv_heads, group, 1, n, device=keys.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        queries = project_queries(attn, hidden_states, position_embeddings, slice(start, stop))
        logits = grouped_logits(queries, keys[:, :, :stop], float(attn.scaling)).float()
        # Keys before `start` are visible to every row of the chunk; only the diagonal block
        # needs the causal mask.
        future = torch.ones(stop - start, stop - start, dtype=torch.bool, device=keys.device)
        logits[..., start:stop].masked_fill_(future.triu(1), float("-inf"))
        # Column sums of the row-wise softmax, in place: exp(l - max) scaled by 1 / row sum.
        logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
        inverse = logits.sum(dim=-1).reciprocal().unsqueeze(-2)  # (batch, kv, group, 1, rows)
        total[..., :stop] += torch.matmul(inverse, logits)
    return total.squeeze(-2)


@dataclass(kw_only=True)
class H2O(KVCacheCompressor):
    """Prefill-only H2O KV-cache compression (arXiv:2306.14048).

    Parameters
    ----------
    budget
        Cache entries kept per layer and KV head: ``budget - window`` heavy hitters plus the
        ``window`` most recent prompt tokens.
    window
        Recent prompt tokens always kept (32 in the GemFilter comparison).

    Notes
    -----
    A position's score is the attention probability it receives, summed over all prompt queries;
    with grouped-query attention the query heads sharing a KV head are averaged. The authors'
    H2O reads these from eager attention, which materialises the ``n x n`` matrix (LongBench
    truncates H2O's inputs to 8k tokens for that reason); here they are recomputed in row chunks
    with linear memory, at the cost of computing the attention logits a second time. Eviction
    during decoding (the original per-step H2O) is not done: the cache grows by one per token.
    """

    name: str = "h2o"

    def prefix_scores(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        keys: torch.Tensor,
    ) -> torch.Tensor:
        total = accumulated_attention(attn, hidden_states, position_embeddings, keys)
        n = keys.shape[2]
        return total[..., : n - self.window].mean(dim=2)
