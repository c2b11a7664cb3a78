"""GemFilter: select the input tokens at an early layer, then run the model on them alone.

Shi et al., "Discovering the Gems in Early Layers: Accelerating Long-Context LLMs with 1000x Input
Token Reduction", arXiv:2409.17422.

Pass 1 runs layers ``0..filter_layer`` over the whole prompt with no KV cache. At the filter
layer, the last prompt token's post-RoPE query is dotted with every post-RoPE key; the raw logits
(no ``1/sqrt(d)``, no softmax) are summed over query heads, average-pooled, and the ``topk`` best
positions are kept in their original order. Pass 2 runs the whole model from scratch on the kept
tokens with fresh positions ``0..k-1`` and generation continues from that cache. This follows the
authors' code, which differs from the paper's wording ("the last row of the attention matrix").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import PreTrainedModel

from eightfold.longcontext.base import (
    attention_modules,
    avg_pool_scores,
    check_model,
    checked_input,
    output_cache,
    project_keys,
    project_queries,
    real_rows,
)
from eightfold.longcontext.generation import (
    PrefillOutput,
    check_generate_kwargs,
    generate_per_row,
    greedy_decode_official,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_FILTER_LAYERS", "GemFilter", "default_filter_layer", "last_query_scores"]

# 0-based filter layers the authors use, keyed by (model_type, layers, hidden size).
DEFAULT_FILTER_LAYERS: dict[tuple[str, int, int], tuple[str, int]] = {
    ("llama", 32, 4096): ("Llama-3.1-8B-Instruct", 13),
    ("mistral", 40, 5120): ("Mistral-Nemo-12B-Instruct", 19),
    ("phi3", 32, 3072): ("Phi-3.5-mini-instruct", 19),
}

# Attention implementations whose causal prefill never builds an n x n matrix; under "eager"
# the layers before the filter layer would materialise one each.
_LINEAR_MEMORY_ATTENTION = ("sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


class _StopForward(Exception):
    """Raised by the filter-layer hook to end pass 1 before that layer's attention runs."""


def default_filter_layer(model: PreTrainedModel) -> int:
    """The authors' filter layer for the three models they tuned, else a ``ValueError``."""
    config = model.config
    key = (config.model_type, config.num_hidden_layers, config.hidden_size)
    if key not in DEFAULT_FILTER_LAYERS:
        known = ", ".join(f"{name}: {layer}" for name, layer in DEFAULT_FILTER_LAYERS.values())
        raise ValueError(
            f"GemFilter has no default filter_layer for this {config.model_type} model "
            f"({config.num_hidden_layers} layers, hidden {config.hidden_size}); pass "
            f"filter_layer=... (0-based; CLI: --filter-layer). The authors' choices: {known}. "
            "A layer around 40% of the depth is a reasonable start."
        )
    return DEFAULT_FILTER_LAYERS[key][1]


def last_query_scores(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Raw attention logits of the last query against every key, summed over query heads.

    Parameters
    ----------
    query
        Post-RoPE query of the last position, ``(batch, heads, 1, head_dim)``.
    keys
        Post-RoPE keys, ``(batch, kv_heads, n, head_dim)``; query head ``h`` reads KV head
        ``h // (heads // kv_heads)`` (``repeat_kv``'s repeat-interleave, not a tile).

    Returns
    -------
    torch.Tensor
        ``(batch, n)`` in the model dtype: ``sum_h q_h . k_{h // g, j}`` with no scaling.
    """
    batch, heads, _, d = query.shape
    kv_heads = keys.shape[1]
    # Grouping the query heads instead of repeating the keys keeps memory at kv_heads * n * d.
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, d)
    logits = torch.matmul(grouped, keys.transpose(-1, -2))  # (batch, kv_heads, group, n)
    return logits.reshape(batch, heads, -1).sum(dim=1)


@dataclass(kw_only=True)
class GemFilter:
    """Early-layer input-token selection (GemFilter, arXiv:2409.17422).

    Parameters
    ----------
    filter_layer
        0-based layer whose attention scores select the tokens; layers ``0..filter_layer`` run
        in the first pass. ``None`` uses the authors' choice for Llama-3.1-8B (13),
        Mistral-Nemo-12B (19) and Phi-3.5-mini (19) and raises for other models.
    topk
        Tokens to keep (the authors use 1024; 2048 and 4096 also appear in the paper). A prompt
        of at most ``topk`` tokens is kept whole, so generation equals plain generation.
    pool_kernel
        Width of the average pooling over the scores (odd; the authors use 5).
    keep_last
        Always keep the last ``keep_last`` prompt tokens, filling the rest of ``topk`` by score.
        The authors keep nothing by force (0, the default): the question usually survives
        because recent tokens score high, but nothing guarantees it. Set it to the question's
        length when a question must reach the second pass intact, e.g. with small models or a
        short ``topk``.
    name
        Label used in reports.

    Notes
    -----
    Scores are computed in the model dtype, as in the authors' code; near-ties can rank
    differently in float16 than in float32.
    """

    filter_layer: int | None = None
    topk: int = 1024
    pool_kernel: int = 5
    keep_last: int = 0
    name: str = "gemfilter"

    def __post_init__(self) -> None:
        if self.filter_layer is not None and (
            not isinstance(self.filter_layer, int) or self.filter_layer < 0
        ):
            raise ValueError(
                "filter_layer must be a 0-based layer index >= 0 or None; "
                f"got {self.filter_layer!r}"
            )
        if not isinstance(self.topk, int) or self.topk < 1:
            raise ValueError(f"topk must be an integer >= 1; got {self.topk!r}")
        if (
            not isinstance(self.pool_kernel, int)
            or self.pool_kernel < 1
            or self.pool_kernel % 2 == 0
        ):
            raise ValueError(
                f"pool_kernel must be an odd integer >= 1 (1 disables pooling); "
                f"got {self.pool_kernel!r}"
            )
        if not isinstance(self.keep_last, int) or not 0 <= self.keep_last <= self.topk:
            raise ValueError(
                f"keep_last must be an integer between 0 and topk={self.topk}; "
                f"got {self.keep_last!r}"
            )

    def resolve_filter_layer(self, model: PreTrainedModel) -> int:
        """The filter layer for ``model``, checked against its depth."""
        check_model(model, method="GemFilter")
        layer = self.filter_layer if self.filter_layer is not None else default_filter_layer(model)
        layers = model.config.num_hidden_layers
        if layer >= layers:
            raise ValueError(
                f"filter_layer={layer} is outside the model's {layers} layers; pass a 0-based "
                f"index between 0 and {layers - 1}"
            )
        return layer

    def _check_attention(self, model: PreTrainedModel) -> None:
        impl = getattr(model.config, "_attn_implementation", None)
        if impl not in _LINEAR_MEMORY_ATTENTION:
            raise ValueError(
                f"GemFilter needs an attention implementation whose prefill memory is linear in "
                f"the input length ({', '.join(_LINEAR_MEMORY_ATTENTION)}); the model uses "
                f"{impl!r}, which materialises an n x n matrix per layer. Fix: load it with "
                "attn_implementation='sdpa' or call model.set_attn_implementation('sdpa')."
            )

    @torch.no_grad()
    def scores(
        self, model: PreTrainedModel, input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw and pooled selection scores of every prompt position (pass 1 only).

        Parameters
        ----------
        input_ids
            ``(batch, n)`` unpadded token ids (rows are scored one at a time).

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            ``raw`` and ``pooled``, each ``(batch, n)`` in the model dtype.
        """
        ids, _ = checked_input(input_ids, method="GemFilter.scores")
        layer = self.resolve_filter_layer(model)
        self._check_attention(model)
        raws = [self._row_scores(model, row.unsqueeze(0), layer) for row in ids]
        raw = torch.cat(raws, dim=0)
        return raw, avg_pool_scores(raw, self.pool_kernel)

    def _row_scores(self, model: PreTrainedModel, ids: torch.Tensor, layer: int) -> torch.Tensor:
        attn = attention_modules(model)[layer]
        found: dict[str, torch.Tensor] = {}

        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            rope = kwargs.get("position_embeddings")
            if rope is None:
                rope = args[1]
            query = project_queries(module, hidden, rope, slice(-1, None))
            keys = project_keys(module, hidden, rope)
            found["scores"] = last_query_scores(query, keys)
            raise _StopForward

        handle = attn.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            # The backbone alone: no lm_head, no cache; positions default to 0..n-1.
            model.base_model(input_ids=ids, use_cache=False)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "scores" not in found:
            raise RuntimeError(f"the filter-layer hook on layer {layer} never ran")
        return found["scores"]

    def _choose(self, pooled: torch.Tensor) -> torch.Tensor:
        """Ascending indices of the kept positions for one row of pooled scores ``(n,)``."""
        n = pooled.shape[0]
        k = min(self.topk, n)
        if k == n:
            return torch.arange(n, device=pooled.device)
        if self.keep_last == 0:
            chosen = torch.topk(pooled, k).indices
        else:
            protected = torch.arange(n - self.keep_last, n, device=pooled.device)
            rest = torch.topk(pooled[: n - self.keep_last], k - self.keep_last).indices
            chosen = torch.cat([rest, protected])
        return torch.sort(chosen).values

    @torch.no_grad()
    def select(
        self,
        model: PreTrainedModel,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Positions of the prompt tokens GemFilter keeps.

        Parameters
        ----------
        model
            A Llama, Mistral, Qwen2, Qwen3 or Phi3 causal LM with ``sdpa`` (or flash) attention.
        input_ids
            ``(batch, n)`` or ``(n,)`` token ids.
        attention_mask
            Optional ``(batch, n)``; padding (left or right) is stripped and each row is scored
            on its own tokens. With padding, every row must keep the same number of tokens
            (``topk`` at most the shortest row's length); otherwise call once per row.

        Returns
        -------
        torch.LongTensor
            ``(batch, min(topk, n))`` ascending positions into ``input_ids``;
            ``input_ids.gather(1, indices)`` is the second-pass prompt.
        """
        ids, mask = checked_input(input_ids, attention_mask, method="GemFilter.select")
        layer = self.resolve_filter_layer(model)
        self._check_attention(model)
        rows = []
        for offset, tokens in real_rows(ids, mask):
            raw = self._row_scores(model, tokens.unsqueeze(0), layer)
            rows.append(self._choose(avg_pool_scores(raw, self.pool_kernel)[0]) + offset)
        sizes = {r.numel() for r in rows}
        if len(sizes) > 1:
            raise ValueError(
                f"rows keep different numbers of tokens {sorted(sizes)} because some padded rows "
                f"are shorter than topk={self.topk}; call select once per row, or use generate, "
                "which handles such batches row by row"
            )
        logger.debug("GemFilter kept %d of %d positions per row", rows[0].numel(), ids.shape[1])
        return torch.stack(rows)

    def _selected_prompt(self, model: PreTrainedModel, tokens: torch.Tensor) -> torch.Tensor:
        """The second-pass prompt ``(1, k)`` for one row of real tokens ``(n,)``."""
        indices = self.select(model, tokens.unsqueeze(0))
        return tokens.unsqueeze(0).gather(1, indices)

    @torch.no_grad()
    def prefill(self, model: PreTrainedModel, input_ids: torch.Tensor) -> PrefillOutput:
        """Both passes for one unpadded prompt ``(1, n)``: selection, then the cache of the kept
        tokens at positions ``0..k-1``."""
        ids, _ = checked_input(input_ids, method="GemFilter.prefill")
        if ids.shape[0] != 1:
            raise ValueError(f"GemFilter.prefill takes one prompt; got batch {ids.shape[0]}")
        prompt = self._selected_prompt(model, ids[0])
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        k = prompt.shape[1]
        return PrefillOutput(
            logits=out.logits[:, -1], cache=output_cache(out), kv_length=k, next_position=k
        )

    @torch.no_grad()
    def generate(
        self,
        model: PreTrainedModel,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Select, then ``model.generate`` on the kept tokens with fresh positions.

        Parameters
        ----------
        input_ids
            ``(batch, n)`` or ``(n,)`` token ids; each row is filtered on its own.
        attention_mask
            Optional ``(batch, n)`` with left or right padding.
        **generate_kwargs
            Passed to ``model.generate`` (``max_new_tokens``, ``do_sample``, ``temperature``,
            ``top_p``, ``eos_token_id``, logits processors, ...). ``max_length`` is refused: the
            prompt changes length, so use ``max_new_tokens``.

        Returns
        -------
        torch.LongTensor
            ``(batch * num_return_sequences, n + new)``: the original prompt followed by the new
            tokens, as ``model.generate`` returns it. For a prompt of at most ``topk`` tokens
            this equals ``cast(Any, model).generate(input_ids, **generate_kwargs)``.
        """
        check_model(model, method="GemFilter")
        check_generate_kwargs(generate_kwargs, method="GemFilter")

        def one(tokens: torch.Tensor) -> torch.Tensor:
            prompt = self._selected_prompt(model, tokens)
            out = cast(Any, model).generate(
                prompt, attention_mask=torch.ones_like(prompt), **generate_kwargs
            )
            return out[:, prompt.shape[1] :]

        return generate_per_row(
            model, input_ids, attention_mask, one, generate_kwargs, method="GemFilter"
        )

    @torch.no_grad()
    def generate_official(
        self,
        model: PreTrainedModel,
        input_ids: torch.Tensor,
        *,
        max_gen_len: int,
        eos_token_id: int | None = None,
    ) -> list[int]:
        """Selection followed by the authors' greedy loop (see :func:`greedy_decode_official`):
        up to ``max_gen_len + 1`` ids, the first never checked against EOS. For reproducing
        published outputs; :meth:`generate` has the usual semantics."""
        ids, _ = checked_input(input_ids, method="GemFilter.generate_official")
        if ids.shape[0] != 1:
            raise ValueError(
                f"generate_official decodes one prompt; got batch {ids.shape[0]}. "
                "Call it once per row."
            )
        prompt = self._selected_prompt(model, ids[0])
        return greedy_decode_official(
            model, prompt, max_gen_len=max_gen_len, eos_token_id=eos_token_id
        )
