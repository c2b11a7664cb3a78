"""Coordinate prompts of LLaVA-3D: ``[x, y, z]`` clicks, ``<boxes>`` placeholders, box text.

The released model reads a 3D click from the text of a prompt: the bracket group is replaced by
the placeholder ``<boxes>`` (token id -300) and its first three numbers, rounded to 3 decimals,
become one click that :class:`~eightfold.vision3d.position.PromptEncoder` turns into one
language-model token (Zhu et al., arXiv 2409.18125). Boxes in answers are plain text,
``[x,y,z,w,l,h]`` with 3 decimals.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "BOXES_TOKEN",
    "IMAGE_TOKEN",
    "IMAGE_TOKEN_INDEX",
    "LOC_TOKEN_INDEX",
    "VIDEO_TOKEN",
    "ClickPrompt",
    "expand_box_prompt",
    "extract_boxes",
    "fill_boxes",
    "format_boxes",
    "parse_click_prompt",
    "training_clicks",
]

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"  # rewritten to <image> by the released pipeline; both mean "scene here"
BOXES_TOKEN = "<boxes>"
IMAGE_TOKEN_INDEX = -200  # placeholder id of the scene (or image) tokens in input_ids
LOC_TOKEN_INDEX = -300  # placeholder id of one click token in input_ids

_BRACKET = re.compile(r"\[([^\]]+)\]")
_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# The released box extractor only recognises 2D boxes: four non-negative numbers with a single
# integer digit each, no spaces, boxes joined by ';'.
_SMALL = r"\d(?:\.\d+)?"
_RELEASED_BOXES = re.compile(rf"\[({_SMALL}(?:,{_SMALL}){{3}}(?:;{_SMALL}(?:,{_SMALL}){{3}})*)\]")
_ANY_BOXES = re.compile(rf"\[\s*({_NUMBER}(?:\s*[,;]\s*{_NUMBER})*)\s*\]")


@dataclass
class ClickPrompt:
    """A prompt with its coordinate groups replaced by ``<boxes>``.

    Attributes
    ----------
    prompt
        The text with each bracket group replaced by :data:`BOXES_TOKEN`.
    clicks
        ``(N, 3)`` float32 clicks, one per ``<boxes>`` (``(0, 3)`` when there is none). In
        ``mode="released"`` a two-number group gives ``(1, 2)``, as the released parser does.
    """

    prompt: str
    clicks: torch.Tensor

    @property
    def num_placeholders(self) -> int:
        return self.prompt.count(BOXES_TOKEN)


def _numbers(group: str, text: str) -> list[float]:
    values = []
    for part in group.split(","):
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(
                f"coordinate group [{group}] in prompt {text!r} holds {part.strip()!r}, which is "
                "not a number; write clicks as [x, y, z] in metres (e.g. [1.2, -0.5, 0.8])"
            ) from None
    return values


def parse_click_prompt(text: str, *, mode: Literal["strict", "released"] = "strict") -> ClickPrompt:
    """Find ``[x, y, z]`` clicks in a prompt and replace them by ``<boxes>``.

    Numbers are rounded with Python's ``round(x, 3)`` and then stored as float32; a box group
    (6 or 9 numbers: centre, size, angles) gives its centre.

    Parameters
    ----------
    text
        The user prompt, e.g. ``"The related object is located at [1.2, -0.5, 0.8]. Describe
        it."``.
    mode
        ``"strict"`` (default): every bracket group is one click and must hold 3, 6 or 9
        numbers, so placeholders and clicks always match. ``"released"``: the released parser,
        quirks included: only the first bracket group gives a click but every group becomes
        ``<boxes>``, and any count of numbers is accepted (two numbers give a ``(1, 2)`` click
        that the click encoder later rejects). Both agree on every prompt with one well-formed
        group.

    Raises
    ------
    ValueError
        A group holds something other than comma-separated numbers (both modes; nested brackets
        and trailing commas included), or, in strict mode, a count other than 3, 6 or 9.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    if mode not in ("strict", "released"):
        raise ValueError(f"mode must be 'strict' or 'released'; got {mode!r}")
    groups = _BRACKET.findall(text)
    prompt = _BRACKET.sub(BOXES_TOKEN, text)
    unclosed = prompt.rfind("[")
    if mode == "strict" and unclosed != -1 and re.match(rf"\[\s*{_NUMBER}", prompt[unclosed:]):
        raise ValueError(
            f"prompt {text!r} has a coordinate group without its closing ']'; write clicks as "
            "[x, y, z]"
        )
    if not groups:
        return ClickPrompt(prompt=text, clicks=torch.zeros(0, 3))
    if mode == "released":
        coords = [round(v, 3) for v in _numbers(groups[0], text)][:3]
        return ClickPrompt(prompt=prompt, clicks=torch.tensor([coords], dtype=torch.float32))
    clicks = []
    for group in groups:
        values = _numbers(group, text)
        if len(values) not in (3, 6, 9):
            raise ValueError(
                f"coordinate group [{group}] in prompt {text!r} has {len(values)} numbers; "
                "expected 3 (a point x, y, z), 6 (a box: centre and size) or 9 (centre, size and "
                "three angles)"
            )
        if not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"coordinate group [{group}] in prompt {text!r} holds a number that is not "
                "finite (inf or nan); give coordinates in metres"
            )
        clicks.append([round(v, 3) for v in values[:3]])
    return ClickPrompt(prompt=prompt, clicks=torch.tensor(clicks, dtype=torch.float32))


def _check_boxes(boxes: Sequence[Sequence[float]], name: str = "boxes") -> list[list[float]]:
    out = []
    for i, box in enumerate(boxes):
        values = [float(v) for v in box]
        if len(values) < 3:
            raise ValueError(
                f"{name}[{i}] has {len(values)} numbers; a box starts with its centre x, y, z"
            )
        out.append(values)
    return out


def expand_box_prompt(
    question: str, boxes: Sequence[Sequence[float]] | None
) -> tuple[str, torch.Tensor]:
    """Multi-object prompt of the released evaluation scripts.

    The ``<boxes>`` of ``question`` becomes one placeholder per box, joined by ``", "``, and each
    box gives one click: its first three numbers rounded to 3 decimals.

    Returns
    -------
    (str, torch.Tensor)
        The expanded question and ``(len(boxes), 3)`` float32 clicks (``(0, 3)`` for ``None``).
    """
    if boxes is None:
        return question, torch.zeros(0, 3)
    checked = _check_boxes(boxes)
    if BOXES_TOKEN not in question:
        raise ValueError(
            f"question has no {BOXES_TOKEN} placeholder for its {len(checked)} box(es); add one "
            "where the objects should be referred to"
        )
    expanded = question.replace(BOXES_TOKEN, ", ".join([BOXES_TOKEN] * len(checked)))
    clicks = torch.tensor([[round(v, 3) for v in b[:3]] for b in checked], dtype=torch.float32)
    return expanded, clicks.reshape(-1, 3)


def training_clicks(
    boxes: Sequence[Sequence[float]],
    *,
    rng: np.random.Generator | np.random.RandomState | None = None,
) -> torch.Tensor:
    """Clicks of the released training pipeline for target boxes.

    A 9-number box (centre, size, three angles) gives its centre; a 6-number box (centre, size)
    gives a point drawn uniformly inside it (an augmentation), one draw per axis in x, y, z order.
    Values are rounded to 3 decimals.

    Parameters
    ----------
    boxes
        Target boxes, 6 or 9 numbers each.
    rng
        Random source for 6-number boxes. The released code uses NumPy's global RNG; pass
        ``np.random.RandomState(seed)`` to replay a run seeded with ``np.random.seed(seed)``.
        Default: a fresh ``np.random.default_rng(0)`` (repeatable).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    clicks = []
    for i, box in enumerate(_check_boxes(boxes)):
        if len(box) == 9:
            point = box[:3]
        elif len(box) == 6:
            point = [box[a] + float(rng.uniform(-box[a + 3] / 2, box[a + 3] / 2)) for a in range(3)]
        else:
            raise ValueError(
                f"boxes[{i}] has {len(box)} numbers; expected 6 (centre, size) or 9 (centre, "
                "size, three angles)"
            )
        clicks.append([round(v, 3) for v in point])
    return torch.tensor(clicks, dtype=torch.float32).reshape(-1, 3)


def expand_turn_placeholders(text: str, boxes_seq: Sequence[Sequence[int]]) -> str:
    """Replace the i-th ``<boxes>`` of a conversation turn by one placeholder per box of
    ``boxes_seq[i]`` (joined by ``", "``), as the released training data pipeline does."""
    parts = text.split(BOXES_TOKEN)
    if len(parts) - 1 != len(boxes_seq):
        raise ValueError(
            f"turn {text!r} has {len(parts) - 1} {BOXES_TOKEN} placeholder(s) but boxes_seq has "
            f"{len(boxes_seq)} entries; give one list of box indices per placeholder"
        )
    out = parts[0]
    for seq, rest in zip(boxes_seq, parts[1:], strict=True):
        out += ", ".join([BOXES_TOKEN] * len(seq)) + rest
    return out


def format_boxes(boxes: Sequence[Sequence[float]], precision: int = 3) -> str:
    """Box text as the released model writes it: ``[x,y,z,w,l,h;...]`` with 3 decimals."""
    checked = _check_boxes(boxes)
    return "[" + ";".join(",".join(f"{v:.{precision}f}" for v in b) for b in checked) + "]"


def fill_boxes(
    sentence: str, boxes_seq: Sequence[Sequence[Sequence[float]]], precision: int = 3
) -> str:
    """Replace the i-th ``<boxes>`` of ``sentence`` by :func:`format_boxes` of ``boxes_seq[i]``."""
    parts = sentence.split(BOXES_TOKEN)
    if len(parts) - 1 != len(boxes_seq):
        raise ValueError(
            f"sentence has {len(parts) - 1} {BOXES_TOKEN} placeholder(s) but {len(boxes_seq)} box "
            "groups were given; pass one group (a list of boxes) per placeholder"
        )
    out = parts[0]
    for boxes, rest in zip(boxes_seq, parts[1:], strict=True):
        out += format_boxes(boxes, precision) + rest
    return out


def extract_boxes(
    text: str, *, pattern: Literal["released", "3d"] = "released"
) -> list[list[list[float]]]:
    """Box groups written in text, one list of boxes per bracket group.

    Parameters
    ----------
    pattern
        ``"released"`` (default): the released extractor, which only recognises 2D boxes (four
        non-negative single-integer-digit numbers, no spaces), so it returns ``[]`` for the 3D
        boxes the model writes. ``"3d"``: 3D boxes of 6 or 9 numbers each (any sign and size,
        spaces allowed); groups whose boxes have other counts are skipped.
    """
    if pattern == "released":
        return [
            [[float(v) for v in box.split(",")] for box in group.split(";")]
            for group in _RELEASED_BOXES.findall(text)
        ]
    if pattern != "3d":
        raise ValueError(f"pattern must be 'released' or '3d'; got {pattern!r}")
    found: list[list[list[float]]] = []
    for group in _ANY_BOXES.findall(text):
        boxes = [[float(v) for v in box.split(",")] for box in re.sub(r"\s+", "", group).split(";")]
        if all(len(b) in (6, 9) for b in boxes):
            found.append(boxes)
    return found


def conversation_clicks(
    sources: list[dict[str, Any]],
    boxes: Sequence[Sequence[float]],
    *,
    rng: np.random.Generator | np.random.RandomState | None = None,
) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """Training-time click prompts of one conversation (released ``preprocess_target_prompts``).

    Human turns with a ``boxes_seq`` get their placeholders expanded
    (:func:`expand_turn_placeholders`), and the target ``boxes`` become clicks
    (:func:`training_clicks`). The input turns are not modified.

    Returns
    -------
    (list[dict], torch.Tensor)
        The new turns and ``(len(boxes), 3)`` clicks.
    """
    turns = []
    for turn in sources:
        new = dict(turn)
        if "boxes_seq" in turn and turn.get("from") == "human":
            new["value"] = expand_turn_placeholders(turn["value"], turn["boxes_seq"])
        turns.append(new)
    return turns, training_clicks(boxes, rng=rng)
