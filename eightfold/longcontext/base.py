"""Plumbing shared by the long-context methods: architecture checks, q/k recomputation, inputs.

Every method here needs the post-RoPE queries and keys of some attention layer without running
that layer's attention. They are recomputed from the layer's input ``hidden_states`` and the
``position_embeddings`` the backbone hands to every layer, with the model's own projections and
its own ``apply_rotary_pos_emb``; nothing in transformers is patched.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "attention_modules",
    "avg_pool_scores",
    "cache_kwarg",
    "check_model",
    "checked_input",
    "output_cache",
    "project_keys",
    "project_queries",
    "real_rows",
]

# Decoders whose attention exposes q/k/v projections (separate or fused) and takes RoPE
# ``position_embeddings`` from the backbone; each is covered by the tests.
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "phi3")


def check_model(model: nn.Module, *, method: str) -> PreTrainedModel:
    """Check that ``model`` is a supported Hugging Face causal LM and return it.

    Raises
    ------
    TypeError
        If ``model`` is not a ``PreTrainedModel``.
    NotImplementedError
        If its architecture is not one of :data:`SUPPORTED_MODEL_TYPES`.
    """
    if not isinstance(model, PreTrainedModel):
        raise TypeError(
            f"{method}: model must be a Hugging Face PreTrainedModel (e.g. from "
            f"AutoModelForCausalLM.from_pretrained); got {type(model).__name__}"
        )
    model_type = getattr(model.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise NotImplementedError(
            f"{method} supports decoders with rotary attention of type "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}; got model_type={model_type!r}. "
            "Use one of those architectures."
        )
    return model


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The backbone's list of decoder layers (``model.model.layers`` for the supported types)."""
    layers = getattr(model.base_model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise NotImplementedError(
            f"{type(model).__name__} has no `layers` list on its backbone; expected a "
            "transformers decoder such as LlamaForCausalLM"
        )
    return layers


def attention_modules(model: PreTrainedModel) -> list[nn.Module]:
    """The ``self_attn`` module of every decoder layer, in layer order."""
    return [cast(nn.Module, layer.self_attn) for layer in decoder_layers(model)]


def _rope_function(attn: Any) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    # Each modelling file ships its own apply_rotary_pos_emb (Phi3's handles partial rotary
    # dims), so the one from the attention module's own file is used.
    fn = getattr(sys.modules[type(attn).__module__], "apply_rotary_pos_emb", None)
    if fn is None:
        raise NotImplementedError(
            f"{type(attn).__name__} has no apply_rotary_pos_emb in its module; only rotary "
            f"attention ({', '.join(SUPPORTED_MODEL_TYPES)}) is supported"
        )
    return fn  # type: ignore[no-any-return]


def _head_dim(attn: Any) -> int:
    return int(attn.head_dim)


def _num_heads(attn: Any) -> tuple[int, int]:
    config = attn.config
    return int(config.num_attention_heads), int(config.num_key_value_heads)


def _projection_weights(attn: Any, part: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of the query (``part="q"``) or key (``"k"``) projection."""
    heads, kv_heads = _num_heads(attn)
    d = _head_dim(attn)
    if hasattr(attn, "qkv_proj"):  # Phi3: one fused projection laid out as [q | k | v]
        weight = attn.qkv_proj.weight
        bias = attn.qkv_proj.bias
        start, stop = (0, heads * d) if part == "q" else (heads * d, heads * d + kv_heads * d)
        return weight[start:stop], None if bias is None else bias[start:stop]
    proj = attn.q_proj if part == "q" else attn.k_proj
    return proj.weight, proj.bias


def _project(attn: Any, hidden_states: torch.Tensor, part: str, num_heads: int) -> torch.Tensor:
    weight, bias = _projection_weights(attn, part)
    batch, seq, _ = hidden_states.shape
    out = F.linear(hidden_states, weight, bias).view(batch, seq, num_heads, _head_dim(attn))
    norm = getattr(attn, f"{part}_norm", None)  # Qwen3 normalises q and k per head before RoPE
    if norm is not None:
        out = norm(out)
    return out.transpose(1, 2)


def _rotate(attn: Any, states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    rope = _rope_function(attn)
    # apply_rotary_pos_emb rotates a (q, k) pair; passing the same tensor twice rotates one.
    rotated, _ = rope(states, states, cos, sin)
    return rotated


def project_queries(
    attn: Any,
    hidden_states: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    rows: slice,
) -> torch.Tensor:
    """Post-RoPE queries of ``attn`` for the sequence positions in ``rows``.

    Parameters
    ----------
    attn
        A decoder layer's ``self_attn``.
    hidden_states
        The layer's attention input (after the input norm), ``(batch, seq, hidden)``.
    position_embeddings
        ``(cos, sin)``, each ``(batch, seq, rotary_dim)``, as the backbone passes them.
    rows
        Which positions to project (``slice(-1, None)`` for the last query only).

    Returns
    -------
    torch.Tensor
        ``(batch, num_attention_heads, len(rows), head_dim)``.
    """
    heads, _ = _num_heads(attn)
    cos, sin = position_embeddings
    q = _project(attn, hidden_states[:, rows], "q", heads)
    return _rotate(attn, q, cos[:, rows], sin[:, rows])


def project_keys(
    attn: Any,
    hidden_states: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Post-RoPE keys of ``attn`` for every position, ``(batch, num_key_value_heads, seq, d)``."""
    _, kv_heads = _num_heads(attn)
    cos, sin = position_embeddings
    k = _project(attn, hidden_states, "k", kv_heads)
    return _rotate(attn, k, cos, sin)


def avg_pool_scores(scores: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Average-pool scores along the last axis with stride 1 and zero padding.

    Matches ``F.avg_pool1d(kernel_size, stride=1, padding=kernel_size // 2)`` with PyTorch's
    default ``count_include_pad=True``: edges are padded with zeros and the divisor is always
    ``kernel_size``, so negative raw scores near the ends are pulled up towards zero.

    Parameters
    ----------
    scores
        ``(..., n)``.
    kernel_size
        Odd window width; 1 returns the scores unchanged.
    """
    if kernel_size == 1:
        return scores
    shape = scores.shape
    flat = scores.reshape(-1, 1, shape[-1])
    pooled = F.avg_pool1d(flat, kernel_size=kernel_size, stride=1, padding=kernel_size // 2)
    return pooled.reshape(shape)


def checked_input(
    input_ids: Any, attention_mask: Any = None, *, method: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate ``input_ids`` (and ``attention_mask``) and return them as 2-D tensors."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(
            f"{method}: input_ids must be a torch.LongTensor of shape (batch, seq); got "
            f"{type(input_ids).__name__}. Tokenize with return_tensors='pt'."
        )
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int, torch.int32):
        raise ValueError(
            f"{method}: input_ids must be integer token ids of shape (batch, seq); got shape "
            f"{tuple(input_ids.shape)} and dtype {input_ids.dtype}"
        )
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(
            f"{method}: input_ids is empty (shape {tuple(input_ids.shape)}); pass at least one "
            "token in at least one row"
        )
    input_ids = input_ids.long()
    if attention_mask is None:
        return input_ids, None
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else None
        raise ValueError(
            f"{method}: attention_mask must be a tensor of the same shape as input_ids "
            f"{tuple(input_ids.shape)}; got {shape if shape is not None else type(attention_mask)}"
        )
    mask = attention_mask.to(device=input_ids.device).bool()
    if (mask.sum(dim=1) == 0).any():
        raise ValueError(f"{method}: a row of attention_mask is all zeros; every row needs a token")
    return input_ids, mask


def real_rows(input_ids: torch.Tensor, mask: torch.Tensor | None) -> list[tuple[int, torch.Tensor]]:
    """The real (unpadded) tokens of each row with their offset: ``[(first, (n_i,)) ...]``.

    Padding may be on either side but must be contiguous: a mask with holes inside a row is
    refused because the kept tokens would no longer be a sequence.
    """
    if mask is None:
        return [(0, row) for row in input_ids]
    rows = []
    for i in range(input_ids.shape[0]):
        where = mask[i].nonzero().flatten()
        first, last = int(where[0]), int(where[-1])
        if int(where.numel()) != last - first + 1:
            raise ValueError(
                f"attention_mask row {i} has zeros between its tokens; only left or right padding "
                "is supported. Remove the holes or pass the rows separately."
            )
        rows.append((first, input_ids[i, first : last + 1]))
    return rows


def cache_kwarg(model: nn.Module) -> str:
    """The name under which ``model.forward`` takes a KV cache (``cache`` in transformers 5)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned, whatever the transformers version calls it."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
