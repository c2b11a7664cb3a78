"""Prefill-time KV-cache compression: the shared machinery of SnapKV and H2O.

A compressor is a small dataclass whose :meth:`KVCacheCompressor.prefix_scores` rates every cached
position except the last ``window`` ones. While :meth:`KVCacheCompressor.compressing` is active,
a forward hook on each layer's ``self_attn`` waits for that layer's prefill to fill the cache,
keeps the ``budget - window`` best-rated positions per KV head (in their original order) plus
the last ``window`` positions, and writes the shorter cache back. Prefill attention itself runs
over the whole prompt; kept keys keep their original RoPE positions and decoding continues at
position ``n``, as in both authors' implementations. The cache grows by one entry per generated
token afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from transformers import PreTrainedModel

from eightfold.longcontext.base import attention_modules, check_model, checked_input, output_cache
from eightfold.longcontext.generation import (
    PrefillOutput,
    check_generate_kwargs,
    generate_per_row,
)

logger = logging.getLogger(__name__)

__all__ = ["KVCacheCompressor", "grouped_logits"]


def grouped_logits(queries: torch.Tensor, keys: torch.Tensor, scaling: float) -> torch.Tensor:
    """Scaled attention logits with grouped-query heads, without repeating the keys.

    Parameters
    ----------
    queries
        ``(batch, heads, q, d)`` post-RoPE queries.
    keys
        ``(batch, kv_heads, n, d)`` post-RoPE keys; query head ``h`` reads KV head
        ``h // (heads // kv_heads)``.

    Returns
    -------
    torch.Tensor
        ``(batch, kv_heads, group, q, n)``.
    """
    batch, heads, q, d = queries.shape
    kv_heads = keys.shape[1]
    # Scaling the few queries rather than the q x n logits saves a pass over the big tensor.
    grouped = queries.reshape(batch, kv_heads, heads // kv_heads, q, d) * scaling
    return torch.matmul(grouped, keys.unsqueeze(2).transpose(-1, -2))


def causal_softmax(logits: torch.Tensor, first_query_position: int) -> torch.Tensor:
    """Softmax over keys (last axis) in float32, with query ``i`` at position
    ``first_query_position + i`` seeing keys ``0..first_query_position + i``."""
    q, n = logits.shape[-2], logits.shape[-1]
    rows = torch.arange(q, device=logits.device).unsqueeze(1) + first_query_position
    future = torch.arange(n, device=logits.device).unsqueeze(0) > rows
    masked = logits.float().masked_fill(future, float("-inf"))
    return torch.softmax(masked, dim=-1)


@dataclass(kw_only=True)
class KVCacheCompressor:
    """Base of the prefill-time KV-cache compressors.

    Parameters
    ----------
    budget
        Cache entries kept per layer and KV head after the prefill, the window included. A
        prompt of at most ``budget`` tokens is not compressed.
    window
        The last ``window`` prompt positions are always kept (SnapKV's observation window,
        H2O's recent tokens).
    name
        Label used in reports.
    """

    budget: int = 1024
    window: int = 32
    name: str = "kv-compressor"

    def __post_init__(self) -> None:
        if not isinstance(self.budget, int) or self.budget < 1:
            raise ValueError(f"budget must be an integer >= 1; got {self.budget!r}")
        if not isinstance(self.window, int) or not 0 <= self.window <= self.budget:
            raise ValueError(
                f"window must be an integer between 0 and budget={self.budget}; got "
                f"{self.window!r}. Lower the window or raise the budget."
            )

    def prefix_scores(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        keys: torch.Tensor,
    ) -> torch.Tensor:
        """Rate the cached positions ``0..n-window-1``; higher is kept.

        Parameters
        ----------
        attn
            The layer's ``self_attn``.
        hidden_states
            Its input, ``(batch, n, hidden)``.
        position_embeddings
            ``(cos, sin)``, each ``(batch, n, rotary_dim)``.
        keys
            The layer's post-RoPE cached keys, ``(batch, kv_heads, n, d)``.

        Returns
        -------
        torch.Tensor
            ``(batch, kv_heads, n - window)``.
        """
        raise NotImplementedError

    def keep_indices(self, scores: torch.Tensor, n: int) -> torch.Tensor:
        """Ascending kept positions per KV head, ``(batch, kv_heads, budget)``."""
        top = torch.topk(scores, self.budget - self.window, dim=-1).indices
        recent = torch.arange(n - self.window, n, device=scores.device)
        recent = recent.expand(*scores.shape[:2], self.window)
        return torch.sort(torch.cat([top, recent], dim=-1), dim=-1).values

    def _compress_layer(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        if cache is None or hidden.shape[1] <= 1:
            return
        layer = cache.layers[cast(int, module.layer_idx)]
        keys, values = layer.keys, layer.values
        n = keys.shape[-2]
        if n != hidden.shape[1]:
            # Only a prefill into an empty cache is compressed; a continued prompt, or a prompt
            # longer than a sliding-window layer holds, is left alone.
            logger.debug("layer %s: cache already held tokens; not compressing", module.layer_idx)
            return
        if n <= self.budget:
            return
        rope = kwargs.get("position_embeddings")
        if rope is None:
            rope = args[1]
        scores = self.prefix_scores(module, hidden, rope, keys)
        index = self.keep_indices(scores, n).unsqueeze(-1).expand(-1, -1, -1, keys.shape[-1])
        layer.keys = keys.gather(2, index).contiguous()
        layer.values = values.gather(2, index).contiguous()
        if hasattr(layer, "cumulative_length"):
            # Sliding-window layers size their masks by this count; it must follow the cache.
            layer.cumulative_length = self.budget

    @contextlib.contextmanager
    def compressing(self, model: PreTrainedModel) -> Iterator[None]:
        """Compress the cache of every prefill run inside this block (hooks removed on exit)."""
        check_model(model, method=type(self).__name__)

        def hook(module: nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
            self._compress_layer(module, args, kwargs)

        handles = [
            attn.register_forward_hook(hook, with_kwargs=True) for attn in attention_modules(model)
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @torch.no_grad()
    def prefill(self, model: PreTrainedModel, input_ids: torch.Tensor) -> PrefillOutput:
        """Full prefill of one unpadded prompt ``(1, n)`` with the cache compressed per layer."""
        ids, _ = checked_input(input_ids, method=f"{type(self).__name__}.prefill")
        if ids.shape[0] != 1:
            raise ValueError(f"{type(self).__name__}.prefill takes one prompt; got {ids.shape[0]}")
        with self.compressing(model):
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = output_cache(out)
        return PrefillOutput(
            logits=out.logits[:, -1],
            cache=cache,
            kv_length=int(cache.layers[0].keys.shape[-2]),
            next_position=ids.shape[1],
        )

    @torch.no_grad()
    def generate(
        self,
        model: PreTrainedModel,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """``model.generate`` with the prompt's cache compressed at prefill.

        Parameters
        ----------
        input_ids
            ``(batch, n)`` or ``(n,)``; rows are run one at a time (padding stripped).
        **generate_kwargs
            Passed to ``model.generate`` (``max_new_tokens``, sampling options, ...).

        Returns
        -------
        torch.LongTensor
            ``(batch * num_return_sequences, n + new)``, prompt followed by the new tokens. For
            a prompt of at most ``budget`` tokens this equals plain ``model.generate``.
        """
        name = type(self).__name__
        check_model(model, method=name)
        check_generate_kwargs(generate_kwargs, method=name)

        def one(tokens: torch.Tensor) -> torch.Tensor:
            ids = tokens.unsqueeze(0)
            with self.compressing(model):
                out = cast(Any, model).generate(
                    ids, attention_mask=torch.ones_like(ids), **generate_kwargs
                )
            return out[:, ids.shape[1] :]

        return generate_per_row(model, input_ids, attention_mask, one, generate_kwargs, method=name)
