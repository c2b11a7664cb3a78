"""Generation glue shared by the long-context methods.

* :class:`PrefillOutput`: what a method's prompt phase leaves behind (last logits, KV cache).
* :class:`FullAttention`: the no-compression reference with the same interface as the methods.
* :func:`greedy_decode_official`: the greedy loop of the GemFilter authors' code, kept for
  reproducing their outputs token for token (it emits ``max_gen_len + 1`` tokens and never checks
  the first one against EOS).
* :func:`generate_per_row`: runs a single-row generator on each row of a (padded) batch and
  assembles the output like ``model.generate`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from transformers import PreTrainedModel

from eightfold.longcontext.base import (
    cache_kwarg,
    check_model,
    checked_input,
    output_cache,
    real_rows,
)

logger = logging.getLogger(__name__)

__all__ = [
    "FullAttention",
    "LongContextMethod",
    "PrefillOutput",
    "generate_per_row",
    "greedy_decode_official",
]

# generate() arguments that cannot mean anything once the prompt is rewritten or the cache is
# compressed; the message says what to use instead.
_REFUSED_GENERATE_KWARGS = {
    "max_length": "pass max_new_tokens instead (the prompt length changes under selection)",
    "min_length": "pass min_new_tokens instead (the prompt length changes under selection)",
    "return_dict_in_generate": "only token ids are returned",
    "past_key_values": "the method builds its own cache",
    "cache": "the method builds its own cache",
    "position_ids": "positions are set by the method",
    "inputs_embeds": "pass input_ids",
}


@dataclass
class PrefillOutput:
    """The state after a method's prompt phase.

    Attributes
    ----------
    logits
        Next-token logits at the last prompt position, ``(batch, vocab)``.
    cache
        The KV cache decoding continues from.
    kv_length
        Entries per layer in ``cache`` after the prompt phase.
    next_position
        RoPE position of the first generated token (``kv_length`` when positions were re-indexed,
        the original prompt length when they were kept).
    """

    logits: torch.Tensor
    cache: Any
    kv_length: int
    next_position: int


class LongContextMethod(Protocol):
    """What the needle harness, CLI and benchmark need from a method."""

    name: str

    def prefill(self, model: PreTrainedModel, input_ids: torch.Tensor) -> PrefillOutput: ...

    def generate(
        self,
        model: PreTrainedModel,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor: ...


def check_generate_kwargs(kwargs: dict[str, Any], *, method: str) -> None:
    """Refuse ``generate`` arguments that a prompt-rewriting method cannot honour."""
    for key, why in _REFUSED_GENERATE_KWARGS.items():
        if key in kwargs:
            raise ValueError(f"{method}.generate does not accept {key}=...: {why}")


def _pad_id(model: PreTrainedModel, kwargs: dict[str, Any]) -> int:
    for candidate in (
        kwargs.get("pad_token_id"),
        getattr(model.generation_config, "pad_token_id", None),
        getattr(model.generation_config, "eos_token_id", None),
    ):
        if isinstance(candidate, list) and candidate:
            candidate = candidate[0]
        if isinstance(candidate, int):
            return candidate
    return 0


def generate_per_row(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    row_generate: Callable[[torch.Tensor], torch.Tensor],
    generate_kwargs: dict[str, Any],
    *,
    method: str,
) -> torch.Tensor:
    """Run ``row_generate`` on each row's real tokens and assemble a ``generate``-like output.

    Parameters
    ----------
    row_generate
        Maps one row's real tokens ``(n_i,)`` to its new tokens ``(num_return_sequences, t_i)``.

    Returns
    -------
    torch.Tensor
        ``(batch * num_return_sequences, seq + max_i t_i)``: each input row as given (padding
        included) followed by its new tokens, right-padded with the pad id as ``generate`` pads
        finished sequences. Every row equals the same call made on that row alone.
    """
    input_ids, mask = checked_input(input_ids, attention_mask, method=method)
    pad = _pad_id(model, generate_kwargs)
    news = [row_generate(tokens) for _, tokens in real_rows(input_ids, mask)]
    width = max(n.shape[1] for n in news)
    out = []
    for row, new in zip(input_ids, news, strict=True):
        padded = torch.full((new.shape[0], width), pad, dtype=torch.long, device=row.device)
        padded[:, : new.shape[1]] = new
        out.append(torch.cat([row.unsqueeze(0).expand(new.shape[0], -1), padded], dim=1))
    return torch.cat(out, dim=0)


@torch.no_grad()
def greedy_decode_official(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    *,
    max_gen_len: int,
    eos_token_id: int | None = None,
) -> list[int]:
    """Greedy decoding exactly as the GemFilter authors' loop does it.

    The first token is the argmax after the prompt and is always emitted, even if it is EOS;
    then up to ``max_gen_len`` more steps follow, and a step that produces ``eos_token_id`` stops
    without emitting it. So up to ``max_gen_len + 1`` ids come back. Use ``model.generate`` (or a
    method's ``generate``) for the usual semantics; this exists to reproduce published outputs.

    Parameters
    ----------
    prompt_ids
        ``(1, n)`` or ``(n,)`` token ids; positions run ``0..n-1`` and decoding continues at ``n``.
    """
    check_model(model, method="greedy_decode_official")
    prompt, _ = checked_input(prompt_ids, method="greedy_decode_official")
    if prompt.shape[0] != 1:
        raise ValueError(
            f"greedy_decode_official decodes one sequence; got batch {prompt.shape[0]}. "
            "Call it once per row."
        )
    if max_gen_len < 0:
        raise ValueError(f"max_gen_len must be >= 0; got {max_gen_len}")
    out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    token = out.logits[:, -1].argmax(dim=-1, keepdim=True)
    emitted = [int(token)]
    cache = output_cache(out)
    key = cache_kwarg(model)
    for _ in range(max_gen_len):
        out = model(input_ids=token, use_cache=True, **{key: cache})
        cache = output_cache(out)
        token = out.logits[:, -1].argmax(dim=-1, keepdim=True)
        if eos_token_id is not None and int(token) == eos_token_id:
            break
        emitted.append(int(token))
    return emitted


@dataclass(kw_only=True)
class FullAttention:
    """The uncompressed reference: plain prefill over the whole prompt and ``model.generate``."""

    name: str = "full"

    @torch.no_grad()
    def prefill(self, model: PreTrainedModel, input_ids: torch.Tensor) -> PrefillOutput:
        """Full-attention prefill of one unpadded prompt ``(1, n)``."""
        check_model(model, method="FullAttention")
        ids, _ = checked_input(input_ids, method="FullAttention.prefill")
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        n = ids.shape[1]
        return PrefillOutput(
            logits=out.logits[:, -1], cache=output_cache(out), kv_length=n, next_position=n
        )

    @torch.no_grad()
    def generate(
        self,
        model: PreTrainedModel,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """``model.generate`` on the whole prompt, row by row like the other methods."""
        check_model(model, method="FullAttention")
        check_generate_kwargs(generate_kwargs, method="FullAttention")

        def one(tokens: torch.Tensor) -> torch.Tensor:
            ids = tokens.unsqueeze(0)
            out = cast(Any, model).generate(
                ids, attention_mask=torch.ones_like(ids), **generate_kwargs
            )
            return out[:, ids.shape[1] :]

        return generate_per_row(
            model, input_ids, attention_mask, one, generate_kwargs, method="FullAttention"
        )
