"""Needle in a haystack: can a model (with a long-context method) retrieve one planted fact?

A haystack of real text (any corpus) is cut to a target prompt length; a needle sentence is
inserted at a chosen depth, at a sentence boundary; a question follows. Each (length, depth) cell
is scored by the fraction of the answer's words found in the response, the score the GemFilter
authors plot (arXiv:2409.17422, after Kamradt's needle test). Works with any causal LM with a
tokenizer and any method that has ``generate(model, input_ids, **generate_kwargs)`` (GemFilter,
SnapKV, H2O, FullAttention).

Examples
--------
>>> from eightfold.longcontext import GemFilter  # doctest: +SKIP
>>> result = needle_eval(model, tokenizer, GemFilter(filter_layer=13), haystack_texts,
...                      NeedleConfig(context_lengths=[4096, 8192], depths=[0.0, 0.5, 1.0]))
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from eightfold.progress import progress

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = [
    "NeedleCell",
    "NeedleConfig",
    "NeedleResult",
    "build_needle_prompt",
    "needle_eval",
    "plot_needle_heatmap",
    "score_response",
]

_WORD = re.compile(r"\S+")


def _words(text: str) -> set[str]:
    table = str.maketrans("", "", string.punctuation)
    return {w.translate(table) for w in _WORD.findall(text.lower())} - {""}


def score_response(response: str, answer: str) -> float:
    """Fraction of the answer's words that occur in the response (case and punctuation ignored).

    Parameters
    ----------
    response
        The generated text.
    answer
        The expected answer (e.g. ``"eat a sandwich and sit in Dolores Park"``).

    Returns
    -------
    float
        In ``[0, 1]``; 1 when every answer word appears somewhere in the response.
    """
    expected = _words(answer)
    if not expected:
        raise ValueError(f"answer {answer!r} has no words to look for; pass a non-empty answer")
    return len(expected & _words(response)) / len(expected)


@dataclass(kw_only=True)
class NeedleConfig:
    """What to plant, where, and how long the prompts are.

    Parameters
    ----------
    context_lengths
        Prompt lengths in tokens (haystack + needle + question).
    depths
        Needle depths as fractions of the haystack, 0 (start) to 1 (end).
    needle
        The planted sentence.
    question
        Asked after the haystack.
    answer
        The words a correct response contains.
    template
        Prompt layout with ``{haystack}`` and ``{question}``.
    max_new_tokens
        Tokens generated per cell (greedy).
    """

    context_lengths: Sequence[int] = (512, 1024, 2048)
    depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)
    needle: str = " The secret password of the archive is blue falcon."
    question: str = "What is the secret password of the archive?"
    answer: str = "blue falcon"
    template: str = "{haystack}\n\nQuestion: {question}\nAnswer: The secret password is"
    max_new_tokens: int = 12

    def __post_init__(self) -> None:
        if not self.context_lengths or any(
            not isinstance(n, int) or n < 1 for n in self.context_lengths
        ):
            raise ValueError(
                f"context_lengths must be positive token counts; got {list(self.context_lengths)}"
            )
        if not self.depths or any(not 0.0 <= float(d) <= 1.0 for d in self.depths):
            raise ValueError(f"depths must be fractions in [0, 1]; got {list(self.depths)}")
        if "{haystack}" not in self.template or "{question}" not in self.template:
            raise ValueError(
                f"template must contain {{haystack}} and {{question}}; got {self.template!r}"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1; got {self.max_new_tokens}")
        score_response("", self.answer)  # validates the answer


@dataclass
class NeedleCell:
    """One (length, depth) run."""

    context_length: int
    depth: float
    score: float
    response: str
    needle_start: int
    needle_length: int
    needle_kept: float | None = None


@dataclass
class NeedleResult:
    """All cells of a needle run, with the method's name."""

    method: str
    config: NeedleConfig
    cells: list[NeedleCell]

    @property
    def mean_score(self) -> float:
        return sum(c.score for c in self.cells) / len(self.cells)

    def grid(self) -> list[list[float]]:
        """Scores as ``[depth][length]`` in the config's order."""
        lookup = {(c.context_length, c.depth): c.score for c in self.cells}
        return [
            [lookup[(n, float(d))] for n in self.config.context_lengths] for d in self.config.depths
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "mean_score": self.mean_score,
            "config": asdict(self.config),
            "cells": [asdict(c) for c in self.cells],
        }


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _haystack_tokens(tokenizer: Any, haystack: str | Sequence[str], needed: int) -> list[int]:
    texts = [haystack] if isinstance(haystack, str) else list(haystack)
    tokens: list[int] = []
    for text in texts:
        tokens.extend(_encode(tokenizer, text + "\n"))
        if len(tokens) >= needed:
            break
    if not tokens:
        raise ValueError("the haystack is empty; pass some text (e.g. a corpus's documents)")
    while len(tokens) < needed:  # a short corpus is repeated rather than refused
        tokens.extend(tokens[: needed - len(tokens)])
    return tokens[:needed]


def build_needle_prompt(
    tokenizer: Any, haystack: str | Sequence[str], config: NeedleConfig, length: int, depth: float
) -> tuple[list[int], int, int]:
    """Token ids of one needle prompt.

    The haystack is cut so that the whole prompt has ``length`` tokens; the needle goes in at
    ``depth`` of the haystack, moved back to the nearest sentence end so no sentence is split.

    Returns
    -------
    (list[int], int, int)
        The prompt ids, where the needle starts, and how many tokens it has.
    """
    head, tail = config.template.split("{haystack}", 1)
    prefix = _encode(tokenizer, head) if head else []
    suffix = _encode(tokenizer, tail.format(question=config.question))
    needle = _encode(tokenizer, config.needle)
    room = length - len(prefix) - len(suffix) - len(needle)
    if room < 0:
        raise ValueError(
            f"context length {length} is shorter than the needle, question and template "
            f"({length - room} tokens); use a longer context length"
        )
    hay = _haystack_tokens(tokenizer, haystack, room) if room else []
    insert = round(depth * room)
    while 0 < insert < room and not tokenizer.decode(hay[insert - 1 : insert]).rstrip().endswith(
        (".", "\n", "!", "?")
    ):
        insert -= 1
    ids = prefix + hay[:insert] + needle + hay[insert:] + suffix
    return ids, len(prefix) + insert, len(needle)


@torch.no_grad()
def needle_eval(
    model: Any,
    tokenizer: Any,
    method: Any,
    haystack: str | Sequence[str],
    config: NeedleConfig | None = None,
) -> NeedleResult:
    """Run the needle grid with ``method`` (``None`` means plain ``model.generate``).

    Parameters
    ----------
    model
        A causal LM.
    tokenizer
        Its tokenizer.
    method
        An object with ``generate(model, input_ids, **generate_kwargs)`` returning prompt plus new
        tokens (GemFilter, SnapKV, H2O, FullAttention), or ``None``.
    haystack
        Filler text: one string or a list of documents (used in order, repeated if short).
    config
        Lengths, depths, needle and question.

    Returns
    -------
    NeedleResult
        One cell per (length, depth); for methods with ``select`` (GemFilter) each cell also
        records the fraction of needle tokens that survived the selection.
    """
    config = config or NeedleConfig()
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and max(config.context_lengths) > max_positions:
        logger.warning(
            "context lengths up to %d exceed the model's max_position_embeddings=%d",
            max(config.context_lengths),
            max_positions,
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    name = getattr(method, "name", "full") if method is not None else "full"
    cells = []
    total = len(config.context_lengths) * len(config.depths)
    with progress(f"needle ({name})", total=total) as update:
        for length in config.context_lengths:
            for depth in config.depths:
                ids_list, start, size = build_needle_prompt(
                    tokenizer, haystack, config, length, float(depth)
                )
                ids = torch.tensor([ids_list], device=model.device)
                kwargs = {
                    "max_new_tokens": config.max_new_tokens,
                    "do_sample": False,
                    "pad_token_id": pad,
                }
                if method is None:
                    out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
                else:
                    out = method.generate(model, ids, **kwargs)
                response = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
                kept = None
                if hasattr(method, "select"):
                    chosen = set(method.select(model, ids)[0].tolist())
                    kept = len(chosen & set(range(start, start + size))) / max(1, size)
                cell = NeedleCell(
                    context_length=length,
                    depth=float(depth),
                    score=score_response(response, config.answer),
                    response=response.strip(),
                    needle_start=start,
                    needle_length=size,
                    needle_kept=kept,
                )
                logger.debug("needle n=%d depth=%.2f score=%.2f", length, depth, cell.score)
                cells.append(cell)
                update(1, score=cell.score)
    return NeedleResult(method=name, config=config, cells=cells)


def plot_needle_heatmap(result: NeedleResult, fig: Figure, *, ax: Any = None) -> None:
    """Draw the score grid (depth x length) on ``fig`` (or on ``ax`` if given)."""
    ax = ax if ax is not None else fig.add_subplot(111)
    grid = result.grid()
    image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(result.config.context_lengths)))
    ax.set_xticklabels([str(n) for n in result.config.context_lengths])
    ax.set_yticks(range(len(result.config.depths)))
    ax.set_yticklabels([f"{float(d):.0%}" for d in result.config.depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(f"{result.method}: mean score {result.mean_score:.2f}")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046)
