"""Chat templates: how instructions and responses are laid out as text.

The rule-based adapter needs to find where the user turn and the assistant turn start, and the
tuning recipes need to know which characters belong to a response. Both read that from a
:class:`ChatTemplate`. The default, :data:`TULU`, is the template of Hewitt et al. (2024,
arXiv 2409.14254) and of AllenAI's open-instruct:

.. code-block:: text

    <|user|>
    {instruction}
    <|assistant|>
    {response}</s>

It is also the template eightfold uses for models that ship no chat template of their own (base
models such as the demo model): its tags are plain text, so any tokenizer can spell them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["CHATML", "TEMPLATES", "TULU", "ChatTemplate", "get_template"]

ROLES = ("user", "assistant")


@dataclass(frozen=True, kw_only=True)
class ChatTemplate:
    """A two-role chat layout made of fixed text around each turn.

    A user turn is ``user_tag + content.strip() + user_end``; an assistant turn is
    ``assistant_tag + content.strip() + eos_token + assistant_end``. The whole conversation is
    stripped of surrounding whitespace, as open-instruct does, and the tokenizer adds its own BOS.

    Parameters
    ----------
    name
        A short name (``"tulu"``).
    user_tag, assistant_tag
        The text that opens a user / assistant turn. The rule-based adapter looks for these.
    user_end, assistant_end
        The text that closes a turn (after the EOS token for the assistant).
    """

    name: str
    user_tag: str
    assistant_tag: str
    user_end: str = "\n"
    assistant_end: str = "\n"

    def __post_init__(self) -> None:
        for field_name in ("user_tag", "assistant_tag"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(
                    f"{field_name}={value!r}; expected a non-empty tag such as '<|user|>\\n'"
                )
        if self.user_tag == self.assistant_tag:
            raise ValueError(
                f"user_tag and assistant_tag are both {self.user_tag!r}; the two turns need "
                "different tags"
            )

    def prompt(self, instruction: str) -> str:
        """The generation prompt for one instruction: the user turn, then the assistant tag.

        The prompt ends right after the assistant tag, so every token the model generates is
        part of the response.
        """
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
        return self.user_tag + instruction.strip() + self.user_end + self.assistant_tag

    def render(self, messages: Sequence[Mapping[str, Any]], eos_token: str) -> str:
        """The training text of a conversation (open-instruct's ``encode_with_messages_format``).

        Parameters
        ----------
        messages
            ``[{"role": "user"|"assistant", "content": str}, ...]``.
        eos_token
            The tokenizer's EOS text, appended to every assistant turn.
        """
        return self.spans(messages, eos_token)[0]

    def spans(
        self, messages: Sequence[Mapping[str, Any]], eos_token: str
    ) -> tuple[str, list[tuple[int, int]]]:
        """The training text of a conversation and the character spans that carry the loss.

        Returns
        -------
        (str, list[tuple[int, int]])
            The text (as :meth:`render` returns it), and for each assistant turn
            the ``[start, end)`` character range of its response, EOS and closing text (clipped
            to the stripped text). Everything else, including the assistant tag, is context.
        """
        pieces: list[str] = []
        response_ranges: list[tuple[int, int]] = []
        for index, message in enumerate(messages):
            role = message.get("role")
            content = message.get("content")
            if role not in ROLES:
                raise ValueError(
                    f"messages[{index}]['role']={role!r}; expected 'user' or 'assistant'"
                )
            if not isinstance(content, str):
                raise TypeError(
                    f"messages[{index}]['content'] must be a str, got {type(content).__name__}"
                )
            if role == "user":
                pieces.append(self.user_tag + content.strip() + self.user_end)
            else:
                pieces.append(self.assistant_tag)
                start = sum(len(p) for p in pieces)
                pieces.append(content.strip() + eos_token + self.assistant_end)
                response_ranges.append((start, start + len(pieces[-1])))

        # open-instruct strips the whole string; shift and clip the spans accordingly.
        text = "".join(pieces)
        lead = len(text) - len(text.lstrip())
        stripped_len = len(text.strip())
        ranges = [
            (max(0, s - lead), min(stripped_len, e - lead))
            for s, e in response_ranges
            if min(stripped_len, e - lead) > max(0, s - lead)
        ]
        return text.strip(), ranges


TULU = ChatTemplate(name="tulu", user_tag="<|user|>\n", assistant_tag="<|assistant|>\n")
"""The Tulu / open-instruct template used by the paper; eightfold's default."""

CHATML = ChatTemplate(
    name="chatml",
    user_tag="<|im_start|>user\n",
    assistant_tag="<|im_start|>assistant\n",
    user_end="<|im_end|>\n",
    assistant_end="\n",
)
"""ChatML-style tags (Qwen and others), for models trained with them."""

TEMPLATES: dict[str, ChatTemplate] = {t.name: t for t in (TULU, CHATML)}


def get_template(template: str | ChatTemplate) -> ChatTemplate:
    """Look up a template by name, or pass a :class:`ChatTemplate` through."""
    if isinstance(template, ChatTemplate):
        return template
    if isinstance(template, str) and template in TEMPLATES:
        return TEMPLATES[template]
    raise ValueError(
        f"template={template!r}; expected one of {sorted(TEMPLATES)} or a ChatTemplate instance"
    )
