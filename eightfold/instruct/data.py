"""Training data for the tuning recipes: JSONL loading, the paper's data transforms, and
tokenisation with the loss on responses only.

Accepted JSONL rows (one JSON object per line):

- ``{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}``
- ``{"instruction": ..., "response": ...}`` (``output`` is accepted for ``response``; an
  alpaca-style ``input`` is appended to the instruction after a blank line)
- single-task rows in a task's own fields, turned into messages by :data:`SINGLE_TASKS`.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from eightfold.instruct.template import TULU, ChatTemplate, get_template
from eightfold.storage import read_jsonl

logger = logging.getLogger(__name__)

__all__ = [
    "SINGLE_TASKS",
    "EncodedExample",
    "SupervisedCollator",
    "builtin_instructions",
    "encode_conversation",
    "load_conversations",
    "load_jsonl",
    "row_to_messages",
    "single_task_messages",
    "strip_instructions",
]

Messages = list[dict[str, str]]
IGNORE_INDEX = -100


def load_jsonl(path: str | os.PathLike[str]) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a JSONL file with their 1-based line numbers; blank lines are skipped.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a line is not a JSON object (the message gives the line number), or the file has no
        rows.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"data file {str(file)!r} does not exist; pass a JSONL file")
    rows = read_jsonl(file, "data file")
    if not rows:
        raise ValueError(f"data file {str(file)!r} has no rows; expected one JSON object per line")
    return rows


def _text(row: Mapping[str, Any], key: str, where: str) -> str:
    if key not in row:
        raise ValueError(f"{where}: missing field {key!r} (fields present: {sorted(row)})")
    value = row[key]
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def row_to_messages(row: Mapping[str, Any], where: str = "row") -> Messages:
    """Messages of one row in the ``messages`` or ``instruction``/``response`` layout."""
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{where}: field 'messages' must be a non-empty list of messages")
        out: Messages = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise ValueError(f"{where}: messages[{i}] must be an object with role and content")
            role = _text(message, "role", f"{where}: messages[{i}]")
            if role not in ("user", "assistant"):
                raise ValueError(
                    f"{where}: messages[{i}] has role {role!r}; expected 'user' or 'assistant'"
                )
            out.append(
                {"role": role, "content": _text(message, "content", f"{where}: messages[{i}]")}
            )
        if not any(m["role"] == "assistant" for m in out):
            raise ValueError(f"{where}: no assistant message, so there is nothing to learn")
        return out
    if "instruction" not in row:
        raise ValueError(
            f"{where}: missing field 'instruction' (or 'messages'); fields present: {sorted(row)}"
        )
    instruction = _text(row, "instruction", where)
    extra = row.get("input")
    if isinstance(extra, str) and extra.strip():
        instruction = instruction.rstrip() + "\n\n" + extra.strip()
    key = "response" if "response" in row else "output" if "output" in row else "response"
    return [
        {"role": "user", "content": instruction},
        {"role": "assistant", "content": _text(row, key, where)},
    ]


def strip_instructions(messages: Sequence[Mapping[str, str]]) -> Messages:
    """Response tuning's data transform: every user turn becomes empty, responses stay.

    The model is then trained on ``"<|user|>\\n\\n<|assistant|>\\n{response}</s>"``, as in
    Hewitt et al. (2024). Returns new messages; the input is not modified.
    """
    return [
        {"role": m["role"], "content": "" if m["role"] == "user" else m["content"]}
        for m in messages
    ]


def _as_list(value: Any, where: str, key: str) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            # Recipe datasets store lists as Python literals; literal_eval evaluates no code.
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = None
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
        return [line for line in text.splitlines() if line.strip()]
    raise ValueError(f"{where}: field {key!r} must be a list or a string")


def _gsm(row: Mapping[str, Any], where: str) -> Messages | None:
    return [
        {"role": "user", "content": _text(row, "question", where)},
        {"role": "assistant", "content": _text(row, "answer", where)},
    ]


def _mbpp(row: Mapping[str, Any], where: str) -> Messages | None:
    return [
        {"role": "user", "content": _text(row, "text", where)},
        {"role": "assistant", "content": _text(row, "code", where)},
    ]


def _recipes(row: Mapping[str, Any], where: str) -> Messages | None:
    title = _text(row, "Title", where)
    if "Ingredients" not in row:
        raise ValueError(f"{where}: missing field 'Ingredients' (fields present: {sorted(row)})")
    ingredients = _as_list(row["Ingredients"], where, "Ingredients")
    steps = _text(row, "Instructions", where)
    body = "\n".join(f" - {item.strip()}" for item in ingredients) + "\n\n" + steps.strip()
    return [
        {"role": "user", "content": f"Recipe for {title.strip()}"},
        {"role": "assistant", "content": body},
    ]


def _chess(row: Mapping[str, Any], where: str) -> Messages | None:
    if "pgn" in row:
        lines = _text(row, "pgn", where).splitlines()
        headers = [ln for ln in lines if ln.startswith(("[WhiteElo", "[BlackElo"))]
        moves = " ".join(ln.strip() for ln in lines if ln.strip() and not ln.startswith("["))
    else:
        headers = [
            f'[WhiteElo "{_text(row, "WhiteElo", where)}"]',
            f'[BlackElo "{_text(row, "BlackElo", where)}"]',
        ]
        moves = _text(row, "moves", where)
    if len(headers) != 2 or not moves.startswith("1."):
        raise ValueError(
            f"{where}: expected WhiteElo and BlackElo headers and move text starting with '1.'"
        )
    return [
        {"role": "user", "content": "\n".join(headers)},
        {"role": "assistant", "content": moves},
    ]


def _poetry(row: Mapping[str, Any], where: str) -> Messages | None:
    name = row.get("poem name")
    if not isinstance(name, str) or not name.strip():
        return None  # the paper skips poems without a name
    return [
        {"role": "user", "content": f"Write a poem called {name.strip()}"},
        {"role": "assistant", "content": _text(row, "content", where)},
    ]


SINGLE_TASKS: dict[str, Callable[[Mapping[str, Any], str], Messages | None]] = {
    "gsm": _gsm,
    "mbpp": _mbpp,
    "recipes": _recipes,
    "chess": _chess,
    "poetry": _poetry,
}
"""The paper's single-task formatters, keyed by task, over each source dataset's own fields:
gsm (``question``, ``answer``), mbpp (``text``, ``code``), recipes (``Title``, ``Ingredients``,
``Instructions``), chess (``pgn``, or ``WhiteElo``, ``BlackElo``, ``moves``), poetry
(``poem name``, ``content``; rows without a name are skipped)."""


def single_task_messages(row: Mapping[str, Any], task: str, where: str = "row") -> Messages | None:
    """Messages of one single-task row (``None`` if the paper's recipe skips the row)."""
    if task not in SINGLE_TASKS:
        raise ValueError(f"task={task!r}; expected one of {sorted(SINGLE_TASKS)}")
    return SINGLE_TASKS[task](row, where)


def load_conversations(
    path: str | os.PathLike[str],
    *,
    task: str | None = None,
    max_examples: int | None = None,
) -> list[Messages]:
    """Conversations from a JSONL file.

    Parameters
    ----------
    path
        The JSONL file.
    task
        A :data:`SINGLE_TASKS` name to read rows in that dataset's fields; ``None`` reads the
        ``messages`` or ``instruction``/``response`` layouts.
    max_examples
        Keep at most this many (the paper's single-task sets use the first 1,000 rows).
    """
    conversations: list[Messages] = []
    for number, row in load_jsonl(path):
        where = f"{path}:{number}"
        messages = (
            row_to_messages(row, where) if task is None else single_task_messages(row, task, where)
        )
        if messages is not None:
            conversations.append(messages)
        if max_examples is not None and len(conversations) >= max_examples:
            break
    if not conversations:
        raise ValueError(f"data file {str(path)!r} gave no usable examples")
    return conversations


def builtin_instructions() -> list[dict[str, str]]:
    """eightfold's small instruction set about Python (``instruction``, ``response``).

    Written for this package so that tuning and the adapter can be tried offline with the demo
    model, which was trained on Python's documentation.
    """
    text = resources.files("eightfold.instruct").joinpath("resources/python_instructions.json")
    rows = json.loads(text.read_text(encoding="utf-8"))
    return [{"instruction": r["instruction"], "response": r["response"]} for r in rows]


@dataclass(frozen=True)
class EncodedExample:
    """One tokenised conversation: ``input_ids`` and ``labels`` of shape ``(seq,)``; labels are
    -100 wherever no loss is taken."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, str]],
    *,
    template: str | ChatTemplate = TULU,
    max_length: int = 2048,
) -> EncodedExample:
    """Tokenise a conversation with the loss on assistant responses (and their EOS) only.

    User turns and the assistant tag that follows them are context (label -100), as in
    open-instruct. Sequences longer than ``max_length`` are cut at the end.
    """
    chat = get_template(template)
    eos = tokenizer.eos_token
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token before tuning")
    text, spans = chat.spans(messages, eos)
    if not spans:
        raise ValueError("the conversation has no assistant response, so there is nothing to learn")
    if not getattr(tokenizer, "is_fast", False):
        raise NotImplementedError(
            "encoding needs a fast tokenizer (offsets are used to find the responses); load it "
            "with AutoTokenizer.from_pretrained(..., use_fast=True)"
        )
    enc = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_length)
    input_ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for index, (start, end) in enumerate(enc["offset_mapping"]):
        if end <= start:
            continue  # special tokens the tokenizer adds (BOS) have an empty span
        if any(lo <= start < hi for lo, hi in spans):
            labels[index] = input_ids[index]
    if bool((labels == IGNORE_INDEX).all()):
        raise ValueError(
            f"no response token is left within max_length={max_length}; raise max_length"
        )
    return EncodedExample(input_ids=input_ids, labels=labels)


class SupervisedCollator:
    """Right-pads a batch of encoded examples; padding gets label -100 and attention 0."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = int(pad_token_id)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        batch = len(features)
        input_ids = torch.full((batch, longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((batch, longest), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.as_tensor(feature["input_ids"])
            labels[row, :n] = torch.as_tensor(feature["labels"])
            attention[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
