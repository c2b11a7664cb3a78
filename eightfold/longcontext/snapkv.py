"""SnapKV: compress each layer's prompt KV cache by the votes of an observation window.

Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", arXiv:2404.14469;
settings as in the GemFilter authors' comparison (arXiv:2409.17422): window 32, average pooling
of width 5, a budget that includes the window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from eightfold.longcontext.base import avg_pool_scores, project_queries
from eightfold.longcontext.kvcache import KVCacheCompressor, causal_softmax, grouped_logits

logger = logging.getLogger(__name__)

__all__ = ["SnapKV", "snapkv_votes"]


def snapkv_votes(
    queries: torch.Tensor, keys: torch.Tensor, scaling: float, pool_kernel: int
) -> torch.Tensor:
    """Pooled attention mass the window queries give each earlier position, per KV head.

    Parameters
    ----------
    queries
        Post-RoPE queries of the last ``window`` positions, ``(batch, heads, window, d)``.
    keys
        Post-RoPE keys of all ``n`` positions, ``(batch, kv_heads, n, d)``.
    scaling
        The attention's logit scale (``head_dim ** -0.5``).
    pool_kernel
        Odd average-pooling width (zero padding, divisor always ``pool_kernel``).

    Returns
    -------
    torch.Tensor
        ``(batch, kv_heads, n - window)`` in the keys' dtype: softmax probabilities (float32,
        causal inside the window) summed over the window queries, pooled, then averaged over the
        query heads that share a KV head.
    """
    window, n = queries.shape[2], keys.shape[2]
    probs = causal_softmax(grouped_logits(queries, keys, scaling), n - window)
    votes = probs.to(keys.dtype)[..., : n - window].sum(dim=-2)  # (batch, kv_heads, group, n-w)
    return avg_pool_scores(votes, pool_kernel).mean(dim=2)


@dataclass(kw_only=True)
class SnapKV(KVCacheCompressor):
    """SnapKV prefill-time KV-cache compression (arXiv:2404.14469).

    Parameters
    ----------
    budget
        Cache entries kept per layer and KV head, the observation window included.
    window
        Observation window: the last ``window`` prompt queries vote, and their own entries are
        always kept.
    pool_kernel
        Odd width of the average pooling over the votes (5 in the GemFilter comparison).

    Notes
    -----
    With grouped-query attention the votes of the query heads sharing a KV head are averaged
    and the cache keeps ``num_key_value_heads`` heads. The authors' code instead repeats the KV
    heads before caching and selects per query head, which gives up grouped-query attention's
    memory saving; on multi-head models the two agree. The prefill itself is full attention, so
    SnapKV saves decoding memory and time, not prefill time.
    """

    pool_kernel: int = 5
    name: str = "snapkv"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 1:
            raise ValueError(f"SnapKV needs an observation window >= 1; got window={self.window}")
        if (
            not isinstance(self.pool_kernel, int)
            or self.pool_kernel < 1
            or self.pool_kernel % 2 == 0
        ):
            raise ValueError(f"pool_kernel must be an odd integer >= 1; got {self.pool_kernel!r}")

    def prefix_scores(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        keys: torch.Tensor,
    ) -> torch.Tensor:
        queries = project_queries(
            attn, hidden_states, position_embeddings, slice(-self.window, None)
        )
        return snapkv_votes(queries, keys, float(cast(Any, attn).scaling), self.pool_kernel)
