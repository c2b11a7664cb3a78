"""The rule-based adapter of Hewitt et al. (2024): instruction following from three hand-written
rules added to a base model's logits.

Hewitt, Liu, Liang, Manning, "Instruction Following without Instruction Tuning", arXiv 2409.14254.
The authors combine a pretrained model with a "rule LM" as a 1:1 product of experts in
log-probability space. Softmax ignores a constant shift per row, so that product is exactly the
base logits plus the rule scores; :class:`RuleBasedAdapter` adds them as a transformers
``LogitsProcessor``, which keeps the KV cache and allocates no second model.

The three rules of the paper (``rules=("eos", "uniform", "diversity")``):

``eos``
    The end-of-sequence score grows with the response length *n* (tokens after the last assistant
    tag): ``15 * n / 250``, i.e. 0.06 per token.
``uniform``
    Fixed scores for 15 tokens at every step: angle brackets and pipes (-4), "I" (-5), "We" (-3),
    "What" (-5), "should" (-6); list and heading markers, newline and "!" (+1).
``diversity``
    Every distinct token already in the span gets -1.5 once (not per occurrence).

An optional fourth rule, ``start``, pushes the reply to open with "Okay!"; it was tried by the
authors during development and is not part of the paper's configuration.

Official behaviour kept with ``faithful=True`` (the default, because the published 24.4 % win
rate was produced with it): the EOS ramp drops back to 0 at *n* = 250 instead of saturating, the
diversity span starts right after the last *user* tag (so the instruction and the assistant tag
count as "already said"), and there is no hard stop (the official one is dead code).
``faithful=False`` saturates the ramp, limits the diversity span to the response, and allows
``hard_stop_tokens``. Two official bugs are fixed in both modes: every batch row gets its own
scores (the official code copies row 0's to all rows), and the token table is resolved through
the tokenizer (the official ids only fit Llama-2).
"""

from __future__ import annotations

import logging
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from eightfold.instruct.template import TULU, ChatTemplate, get_template

logger = logging.getLogger(__name__)

__all__ = [
    "ALL_RULES",
    "LLAMA2",
    "PAPER_RULES",
    "PAPER_UNIFORM_TABLE",
    "AdapterConfig",
    "ResolvedRules",
    "RuleBasedAdapter",
    "UniformEntry",
    "parse_rules",
    "product_of_experts_logits",
    "resolve_piece",
    "start_piece_score",
]

ALL_RULES = ("eos", "uniform", "diversity", "start")
PAPER_RULES = ("eos", "uniform", "diversity")

SPIECE_MARKER = "\u2581"  # SentencePiece word-start marker "▁"
BYTE_LEVEL_SPACE = "\u0120"  # byte-level BPE's rendering of a space byte "Ġ"


@dataclass(frozen=True)
class UniformEntry:
    """One token of the ``uniform`` rule.

    ``text`` is what the token spells (``" I"`` is "I" at a word start); ``llama2_id`` and
    ``llama2_piece`` are the official Llama-2 id and SentencePiece piece, kept to check a
    resolution against the paper's table.
    """

    text: str
    bias: float
    llama2_id: int
    llama2_piece: str


# The official table, keyed by what each token spells. Several official code comments name the
# wrong piece (334 is "▁*" not "-", 448 is "▁-" not "*", 1678 is three markers, 5618 has no
# leading marker); the ids are what the official code used, and the texts here match the ids.
PAPER_UNIFORM_TABLE: tuple[UniformEntry, ...] = (
    UniformEntry("<", -4.0, 29966, "<"),
    UniformEntry(" <", -4.0, 529, "▁<"),
    UniformEntry("|", -4.0, 29989, "|"),
    UniformEntry(" I", -5.0, 306, "▁I"),
    UniformEntry("I", -5.0, 29902, "I"),
    UniformEntry(" We", -3.0, 1334, "▁We"),
    UniformEntry("What", -5.0, 5618, "What"),
    UniformEntry(" should", -6.0, 881, "▁should"),
    UniformEntry(" *", 1.0, 334, "▁*"),
    UniformEntry(" -", 1.0, 448, "▁-"),
    UniformEntry("   ", 1.0, 1678, "▁▁▁"),
    UniformEntry(" #", 1.0, 396, "▁#"),
    UniformEntry(" ##", 1.0, 444, "▁##"),
    UniformEntry("\n", 1.0, 13, "<0x0A>"),
    UniformEntry("!", 1.0, 29991, "!"),
)


@dataclass(frozen=True)
class _Llama2Ids:
    """Literal Llama-2 ids of the official code (32,000-piece SentencePiece vocabulary)."""

    vocab_size: int = 32000
    eos_id: int = 2
    # Last 5 ids of the tokenised "\n<|user|>\n" and "\n<|assistant|>\n": skipping the "<" that
    # tokenises differently at a string start ("▁<") and after a newline ("<").
    user_signature: tuple[int, ...] = (29989, 1792, 29989, 29958, 13)
    assistant_signature: tuple[int, ...] = (465, 22137, 29989, 29958, 13)
    exclaim_id: int = 29991
    newline_id: int = 13


LLAMA2 = _Llama2Ids()


def parse_rules(spec: str | bool | Iterable[str]) -> tuple[str, ...]:
    """Turn a rule selection into a tuple of rule names.

    Accepts the official "magic string" (a rule is on when its name is a substring, so
    ``"eos-uniform-diversity"`` gives the paper's three rules), ``True`` (all four rules, as the
    official code does for a non-string), or an iterable of names.
    """
    if isinstance(spec, bool):
        if not spec:
            raise ValueError("rules=False selects no rule; pass rule names or leave the default")
        return ALL_RULES
    if isinstance(spec, str):
        chosen = tuple(rule for rule in ALL_RULES if rule in spec)
        if not chosen:
            raise ValueError(
                f"rules={spec!r} names no rule; expected a string containing any of "
                f"{', '.join(ALL_RULES)} (the paper uses 'eos-uniform-diversity')"
            )
        return chosen
    names = tuple(spec)
    unknown = [name for name in names if name not in ALL_RULES]
    if unknown or not names:
        raise ValueError(
            f"rules={names!r}; expected a non-empty selection of {', '.join(ALL_RULES)}"
        )
    return tuple(rule for rule in ALL_RULES if rule in names)


@dataclass(kw_only=True)
class AdapterConfig:
    """Settings of the rule-based adapter; the defaults are the paper's.

    Parameters
    ----------
    rules
        Rule names, an official magic string such as ``"eos-uniform"``, or ``True`` for all four.
    faithful
        Reproduce the official code's behaviour (see the module docstring). ``False`` saturates
        the EOS ramp, limits the diversity span to the response and allows a hard stop.
    eos_weight
        EOS score reached at the end of the ramp (official ``3 * 5``).
    eos_ramp_tokens
        Length of the ramp in response tokens (official 250).
    hard_stop_tokens
        With ``faithful=False``: force EOS once the response has this many tokens. ``None`` (the
        default) never forces it. The official code meant to do this at 1024 but never applied it.
    diversity_penalty
        Score subtracted once from every distinct token in the span (official 1.5).
    uniform_table
        The ``uniform`` rule's tokens and scores.
    start_weight, start_second_bias, start_third_bias, agreements
        The optional ``start`` rule: at the first response position every token gets
        ``start_weight * start_piece_score(piece)``; then "!" gets ``start_second_bias`` and
        newline ``start_third_bias``.
    """

    rules: tuple[str, ...] | str | bool = PAPER_RULES
    faithful: bool = True
    eos_weight: float = 15.0
    eos_ramp_tokens: int = 250
    hard_stop_tokens: int | None = None
    diversity_penalty: float = 1.5
    uniform_table: tuple[UniformEntry, ...] = PAPER_UNIFORM_TABLE
    start_weight: float = 5.0
    start_second_bias: float = 15.0
    start_third_bias: float = -10.0
    agreements: tuple[str, ...] = ("Okay",)

    def __post_init__(self) -> None:
        self.rules = parse_rules(self.rules)
        if not isinstance(self.eos_ramp_tokens, int) or self.eos_ramp_tokens < 1:
            raise ValueError(
                f"eos_ramp_tokens={self.eos_ramp_tokens!r}; expected a positive integer (the "
                "paper uses 250)"
            )
        if self.hard_stop_tokens is not None:
            if not isinstance(self.hard_stop_tokens, int) or self.hard_stop_tokens < 1:
                raise ValueError(
                    f"hard_stop_tokens={self.hard_stop_tokens!r}; expected a positive integer "
                    "or None"
                )
            if self.faithful:
                raise ValueError(
                    f"hard_stop_tokens={self.hard_stop_tokens} needs faithful=False: the official "
                    "code has no working hard stop, so faithful mode cannot use one"
                )
        for name in ("eos_weight", "diversity_penalty", "start_weight"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value != value:
                raise ValueError(f"{name}={value!r}; expected a finite number")
        for entry in self.uniform_table:
            if not isinstance(entry, UniformEntry):
                raise TypeError(
                    f"uniform_table entries must be UniformEntry, got {type(entry).__name__}; "
                    "build them as UniformEntry(text, bias, llama2_id, llama2_piece)"
                )

    @property
    def enabled(self) -> tuple[str, ...]:
        """The selected rule names, in the order eos, uniform, diversity, start."""
        return parse_rules(self.rules)


def start_piece_score(piece: str, agreements: Sequence[str] = ("Okay",)) -> int:
    """The official ``start`` rule's score of one vocabulary piece.

    One leading word-start marker (``▁`` or byte-level ``Ġ``) is removed first. Then: empty -> 0,
    ``"I"`` -> -3, an agreement word -> 10, a first character that is a cased letter, CJK,
    kana or Hangul -> 1, ASCII punctuation -> -1, anything else -> 0.
    """
    if piece.startswith((SPIECE_MARKER, BYTE_LEVEL_SPACE)):
        piece = piece[1:]
    if not piece:
        return 0
    if piece == "I":
        return -3
    if piece in agreements:
        return 10
    first = piece[0]
    code = ord(first)
    if (
        first.isupper()
        or first.islower()
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x0400 <= code <= 0x04FF  # Cyrillic
        or 0x3040 <= code <= 0x30FF  # hiragana and katakana
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
    ):
        return 1
    if first in string.punctuation:
        return -1
    return 0


def _byte_level_alphabet() -> dict[int, str]:
    # GPT-2's reversible byte -> printable character map: printable Latin-1 bytes stand for
    # themselves, the rest are shifted above 255 in order.
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    mapping = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


_BYTE_LEVEL = _byte_level_alphabet()


def _candidate_pieces(text: str) -> list[str]:
    """How ``text`` may be spelt as one vocabulary entry, in the order tried."""
    spiece = text.replace(" ", SPIECE_MARKER)
    candidates = [text, spiece]
    if text == "\n":
        candidates.append("<0x0A>")  # SentencePiece byte fallback
    candidates.append("".join(_BYTE_LEVEL[b] for b in text.encode("utf-8")))
    return list(dict.fromkeys(candidates))


def resolve_piece(tokenizer: PreTrainedTokenizerBase, text: str) -> int | None:
    """The id of the single token that spells ``text``, or ``None`` if the vocabulary has none.

    Tries the text itself, its SentencePiece spelling (spaces as ``▁``, newline as ``<0x0A>``) and
    its byte-level BPE spelling (spaces as ``Ġ``) in the vocabulary, then encoding the text and
    accepting a single resulting id.
    """
    vocab = tokenizer.get_vocab()  # not ``.vocab``: slow tokenizers lack that attribute
    for piece in _candidate_pieces(text):
        if piece in vocab:
            return int(vocab[piece])
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) == 1 and tokenizer.decode(ids) == text:
        return int(ids[0])
    return None


def _tag_signature(
    tokenizer: PreTrainedTokenizerBase, tag: str, template: ChatTemplate
) -> list[int]:
    """Token ids that the tag always ends with, wherever it appears.

    The first characters of a tag can merge with what precedes it (Llama-2 spells "<" as "▁<" at
    a string start and as "<" after a newline), so the signature is the longest common suffix of
    the tag's tokenisation after several contexts.
    """
    contexts = ["", "\n", "a\n", "a.\n", "a" + template.user_end, "a" + template.assistant_end]
    runs = [tokenizer.encode(context + tag, add_special_tokens=False) for context in set(contexts)]
    suffix: list[int] = []
    for position in range(1, min(len(run) for run in runs) + 1):
        ids = {run[-position] for run in runs}
        if len(ids) != 1:
            break
        suffix.insert(0, ids.pop())
    if not suffix:
        raise ValueError(
            f"the tag {tag!r} tokenises differently in every context, so the adapter cannot find "
            "it in a prompt; use a template whose tags end in stable tokens (e.g. template='tulu')"
        )
    return suffix


@dataclass(frozen=True, kw_only=True)
class ResolvedRules:
    """Token ids the rules act on, for one vocabulary.

    Parameters
    ----------
    vocab_size
        Width of the score vectors.
    eos_id
        The EOS id (gets the ramp).
    user_signature, assistant_signature
        Token ids that end the user / assistant tag.
    uniform
        ``{token id: score}`` of the ``uniform`` rule.
    exclaim_id, newline_id
        Ids of "!" and newline for the ``start`` rule (``None``: skipped).
    start_scores
        ``(vocab_size,)`` piece scores of the ``start`` rule, or ``None``.
    """

    vocab_size: int
    eos_id: int
    user_signature: tuple[int, ...]
    assistant_signature: tuple[int, ...]
    uniform: Mapping[int, float] = field(default_factory=dict)
    exclaim_id: int | None = None
    newline_id: int | None = None
    start_scores: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size={self.vocab_size}; expected a positive integer")
        if not 0 <= self.eos_id < self.vocab_size:
            raise ValueError(
                f"eos_id={self.eos_id} is outside the vocabulary [0, {self.vocab_size})"
            )
        for name in ("user_signature", "assistant_signature"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty; expected the token ids that end the tag")
        bad = [i for i in self.uniform if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"uniform ids {bad} are outside the vocabulary [0, {self.vocab_size})")
        if self.start_scores is not None and tuple(self.start_scores.shape) != (self.vocab_size,):
            raise ValueError(
                f"start_scores has shape {tuple(self.start_scores.shape)}; expected "
                f"({self.vocab_size},)"
            )


def _last_match_end(input_ids: torch.Tensor, signature: torch.Tensor) -> torch.Tensor:
    """Per row, the position just after the last occurrence of ``signature``, or -1.

    ``input_ids`` is ``(batch, seq)``; returns ``(batch,)``.
    """
    batch, length = input_ids.shape
    k = signature.numel()
    if length < k:
        return torch.full((batch,), -1, dtype=torch.long, device=input_ids.device)
    windows = input_ids.unfold(1, k, 1)  # (batch, seq - k + 1, k)
    hit = (windows == signature.to(input_ids.device)).all(dim=-1)
    ends = torch.arange(k, length + 1, device=input_ids.device)
    return torch.where(hit, ends, torch.full_like(ends, -1)).amax(dim=1)


class RuleBasedAdapter(LogitsProcessor):
    """Adds the rule-based adapter's scores to a model's next-token logits.

    Pass it to ``model.generate(..., logits_processor=[adapter])``. When sampling, put it before
    temperature and top-p (as :func:`eightfold.instruct.generate_with_rules` does): the paper's
    product of experts is formed before any warping.

    Parameters
    ----------
    tokenizer
        The model's tokenizer. The rule tokens and the tags are resolved through it; tokens it
        lacks are skipped and reported once in a warning.
    config
        Rule settings; default: the paper's three rules, faithful to the official code.
    template
        The chat template (name or :class:`ChatTemplate`) whose tags mark the user and assistant
        turns; default ``"tulu"``, the paper's.
    faithful_llama2_ids
        Use the official literal Llama-2 ids (and check the tokenizer agrees with them), for an
        exact replication with Llama-2's tokenizer.

    Raises
    ------
    ValueError
        If the tokenizer has no EOS token, or the template's tags cannot be found in a prompt
        tokenised by it.

    Examples
    --------
    >>> adapter = RuleBasedAdapter(tokenizer)  # doctest: +SKIP
    >>> prompt = adapter.template.prompt("Write a haiku about the sea.")  # doctest: +SKIP
    >>> ids = tokenizer(prompt, return_tensors="pt").input_ids  # doctest: +SKIP
    >>> model.generate(ids, logits_processor=[adapter], do_sample=False)  # doctest: +SKIP
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        config: AdapterConfig | None = None,
        template: str | ChatTemplate = TULU,
        faithful_llama2_ids: bool = False,
    ) -> None:
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise TypeError(
                f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}; "
                "for a tokenizer-free adapter use RuleBasedAdapter.from_token_ids(...)"
            )
        self.config = config if config is not None else AdapterConfig()
        self.template = get_template(template)
        if tokenizer.eos_token_id is None:
            raise ValueError(
                "the tokenizer has no EOS token (eos_token_id is None), but the EOS rule needs "
                "one; set it first, e.g. tokenizer.eos_token = '</s>' for a token in its vocabulary"
            )
        self.rules = (
            self._llama2_from_tokenizer(tokenizer)
            if faithful_llama2_ids
            else self._resolve(tokenizer)
        )
        self._check_template(tokenizer)

    # Construction -----------------------------------------------------------------------------

    @classmethod
    def from_token_ids(
        cls,
        rules: ResolvedRules,
        *,
        config: AdapterConfig | None = None,
        template: str | ChatTemplate = TULU,
    ) -> RuleBasedAdapter:
        """An adapter from already resolved token ids (no tokenizer needed)."""
        adapter = cls.__new__(cls)
        adapter.config = config if config is not None else AdapterConfig()
        adapter.template = get_template(template)
        adapter.rules = rules
        if "start" in adapter.config.enabled and rules.start_scores is None:
            raise ValueError(
                "the 'start' rule needs start_scores (one score per vocabulary piece); pass "
                "ResolvedRules(start_scores=...) or drop 'start' from the rules"
            )
        return adapter

    @classmethod
    def llama2(
        cls, *, config: AdapterConfig | None = None, pieces: Sequence[str] | None = None
    ) -> RuleBasedAdapter:
        """The official adapter on Llama-2's literal ids (the paper's exact setting).

        ``pieces`` (the 32,000 SentencePiece pieces in id order) is needed only for the ``start``
        rule.
        """
        config = config if config is not None else AdapterConfig()
        uniform = {entry.llama2_id: float(entry.bias) for entry in config.uniform_table}
        start = None
        if pieces is not None:
            if len(pieces) != LLAMA2.vocab_size:
                raise ValueError(
                    f"pieces has {len(pieces)} entries; expected Llama-2's {LLAMA2.vocab_size}"
                )
            start = torch.tensor([float(start_piece_score(p, config.agreements)) for p in pieces])
        rules = ResolvedRules(
            vocab_size=LLAMA2.vocab_size,
            eos_id=LLAMA2.eos_id,
            user_signature=LLAMA2.user_signature,
            assistant_signature=LLAMA2.assistant_signature,
            uniform=uniform,
            exclaim_id=LLAMA2.exclaim_id,
            newline_id=LLAMA2.newline_id,
            start_scores=start,
        )
        return cls.from_token_ids(rules, config=config, template=TULU)

    def _llama2_from_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> ResolvedRules:
        vocab = tokenizer.get_vocab()
        by_id = {i: p for p, i in vocab.items()}
        expected = {e.llama2_id: e.llama2_piece for e in self.config.uniform_table}
        expected.update({LLAMA2.eos_id: "</s>", 465: "ass", 22137: "istant", 1792: "user"})
        wrong = {i: (p, by_id.get(i)) for i, p in expected.items() if by_id.get(i) != p}
        if wrong:
            shown = ", ".join(f"{i}: expected {p!r}, found {q!r}" for i, (p, q) in wrong.items())
            raise ValueError(
                f"faithful_llama2_ids=True but this tokenizer is not Llama-2's ({shown}); "
                "pass faithful_llama2_ids=False to resolve the tokens through this tokenizer"
            )
        pieces = [by_id.get(i, "") for i in range(LLAMA2.vocab_size)]
        needs_start = "start" in self.config.enabled
        adapter = RuleBasedAdapter.llama2(
            config=self.config, pieces=pieces if needs_start else None
        )
        return adapter.rules

    def _resolve(self, tokenizer: PreTrainedTokenizerBase) -> ResolvedRules:
        vocab = tokenizer.get_vocab()
        vocab_size = max(len(tokenizer), max(vocab.values()) + 1)
        uniform: dict[int, float] = {}
        missing: list[str] = []
        for entry in self.config.uniform_table:
            token_id = resolve_piece(tokenizer, entry.text)
            if token_id is None:
                missing.append(entry.text)
            elif token_id in uniform:
                logger.debug(
                    "uniform tokens %r share id %d; keeping the first", entry.text, token_id
                )
            else:
                uniform[token_id] = float(entry.bias)
        if missing and "uniform" in self.config.enabled:
            _warn_once(tokenizer, missing)

        start = None
        if "start" in self.config.enabled:
            by_id = {i: p for p, i in vocab.items()}
            start = torch.tensor(
                [
                    float(start_piece_score(by_id.get(i, ""), self.config.agreements))
                    for i in range(vocab_size)
                ]
            )
        return ResolvedRules(
            vocab_size=vocab_size,
            eos_id=int(tokenizer.eos_token_id),  # type: ignore[arg-type]
            user_signature=tuple(_tag_signature(tokenizer, self.template.user_tag, self.template)),
            assistant_signature=tuple(
                _tag_signature(tokenizer, self.template.assistant_tag, self.template)
            ),
            uniform=uniform,
            exclaim_id=resolve_piece(tokenizer, "!"),
            newline_id=resolve_piece(tokenizer, "\n"),
            start_scores=start,
        )

    def _check_template(self, tokenizer: PreTrainedTokenizerBase) -> None:
        ids = tokenizer(self.template.prompt("Say hello."), return_tensors="pt").input_ids
        user_end = _last_match_end(ids, torch.tensor(self.rules.user_signature))
        assistant_end = _last_match_end(ids, torch.tensor(self.rules.assistant_signature))
        if int(user_end[0]) < 0 or int(assistant_end[0]) != ids.shape[1]:
            raise ValueError(
                f"template {self.template.name!r} does not tokenise into findable tags with this "
                f"tokenizer (user tag ids {list(self.rules.user_signature)}, assistant tag ids "
                f"{list(self.rules.assistant_signature)}, prompt ids {ids[0].tolist()}); pass "
                "another template"
            )

    # Scores -----------------------------------------------------------------------------------

    def with_config(self, **changes: Any) -> RuleBasedAdapter:
        """A copy with some settings changed (same resolved tokens)."""
        return RuleBasedAdapter.from_token_ids(
            self.rules, config=replace(self.config, **changes), template=self.template
        )

    def response_lengths(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Tokens after the last assistant tag in each row, ``(batch,)`` (-1: no tag)."""
        ends = _last_match_end(input_ids, torch.tensor(self.rules.assistant_signature))
        return torch.where(ends >= 0, input_ids.shape[1] - ends, ends)

    def check_prompt(self, input_ids: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming the missing tag if a row lacks one the rules need.

        ``input_ids`` is ``(batch, seq)``.
        """
        self.bias(input_ids)

    def bias(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The rule scores for the next token of each row.

        Parameters
        ----------
        input_ids
            ``(batch, seq)`` token ids: prompt plus the response so far.

        Returns
        -------
        torch.Tensor
            ``(batch, vocab_size)`` float32 scores to add to the logits (zeros where no rule
            applies; ``-inf`` for every token but EOS in a row past ``hard_stop_tokens``).
        """
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(
                "input_ids must be a (batch, seq) tensor of token ids, got "
                f"{type(input_ids).__name__} with shape {getattr(input_ids, 'shape', None)}"
            )
        cfg = self.config
        enabled = cfg.enabled
        rules = self.rules
        vocab = rules.vocab_size
        batch, length = input_ids.shape
        device = input_ids.device
        scores = torch.zeros(batch, vocab, dtype=torch.float32, device=device)
        rows = torch.arange(batch, device=device)

        needs_assistant = bool({"eos", "start"} & set(enabled)) or (
            "diversity" in enabled and not cfg.faithful
        )
        assistant_end = _last_match_end(input_ids, torch.tensor(rules.assistant_signature))
        if needs_assistant:
            self._require(assistant_end, self.template.assistant_tag, rules.assistant_signature)
        n = (length - assistant_end).clamp(min=0)  # response tokens so far, (batch,)

        if "eos" in enabled:
            # 15 * n / 250 in float64 then float32, as the official code's Python arithmetic.
            ramp = cfg.eos_weight * n.double() / cfg.eos_ramp_tokens
            if cfg.faithful:
                # The official ramp only applies for 0 < n < 250 and is 0 again afterwards.
                ramp = torch.where((n > 0) & (n < cfg.eos_ramp_tokens), ramp, 0.0)
            else:
                ramp = (
                    cfg.eos_weight * n.clamp(max=cfg.eos_ramp_tokens).double() / cfg.eos_ramp_tokens
                )
            scores[:, rules.eos_id] += ramp.float()

        if "uniform" in enabled and rules.uniform:
            ids = torch.tensor(list(rules.uniform), device=device)
            values = torch.tensor(list(rules.uniform.values()), dtype=torch.float32, device=device)
            scores[:, ids] += values

        if "diversity" in enabled:
            if cfg.faithful:
                start = _last_match_end(input_ids, torch.tensor(rules.user_signature))
                self._require(start, self.template.user_tag, rules.user_signature)
            else:
                start = assistant_end
            in_span = torch.arange(length, device=device)[None, :] >= start[:, None]
            valid = in_span & (input_ids >= 0) & (input_ids < vocab)
            # Ids outside the span go to a spare column that is dropped: once per distinct id.
            columns = torch.where(valid, input_ids, torch.full_like(input_ids, vocab))
            seen = torch.zeros(batch, vocab + 1, dtype=torch.bool, device=device)
            seen.scatter_(1, columns, True)
            scores -= cfg.diversity_penalty * seen[:, :vocab].float()

        if "start" in enabled:
            if rules.start_scores is not None:
                first = (n == 0).float()[:, None]
                scores += first * cfg.start_weight * rules.start_scores.to(device)[None, :]
            if rules.exclaim_id is not None:
                scores[rows, rules.exclaim_id] += (n == 1).float() * cfg.start_second_bias
            if rules.newline_id is not None:
                scores[rows, rules.newline_id] += (n == 2).float() * cfg.start_third_bias

        if cfg.hard_stop_tokens is not None:
            stop = n >= cfg.hard_stop_tokens
            others = torch.ones(vocab, dtype=torch.bool, device=device)
            others[rules.eos_id] = False
            scores = scores.masked_fill(stop[:, None] & others[None, :], float("-inf"))
        return scores

    def _require(self, ends: torch.Tensor, tag: str, signature: tuple[int, ...]) -> None:
        missing = (ends < 0).nonzero().flatten().tolist()
        if missing:
            raise ValueError(
                f"batch row(s) {missing} contain no {tag!r} tag (token ids {list(signature)}); "
                f"the rules {', '.join(self.config.enabled)} need it. Build prompts with the "
                f"adapter's template, e.g. {self.template.prompt('Say hello.')!r}"
            )

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Add the rule scores to ``scores`` ``(batch, vocab)``; returns a new tensor."""
        bias = self.bias(input_ids)
        width = scores.shape[-1]
        # The model's output layer may be wider (padded) or narrower than the tokenizer.
        if width > bias.shape[1]:
            bias = torch.nn.functional.pad(bias, (0, width - bias.shape[1]))
        elif width < bias.shape[1]:
            bias = bias[:, :width]
        return scores + bias.to(scores.dtype)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"RuleBasedAdapter(rules={'-'.join(self.config.enabled)}, "
            f"faithful={self.config.faithful}, "
            f"template={self.template.name!r}, vocab_size={self.rules.vocab_size})"
        )


_WARNED: set[tuple[str, tuple[str, ...]]] = set()


def _warn_once(tokenizer: PreTrainedTokenizerBase, missing: list[str]) -> None:
    key = (str(getattr(tokenizer, "name_or_path", id(tokenizer))), tuple(missing))
    if key in _WARNED:
        return
    _WARNED.add(key)
    logger.warning(
        "the tokenizer %s has no single token for %d of the adapter's uniform-rule texts (%s); "
        "those entries are skipped",
        key[0] or type(tokenizer).__name__,
        len(missing),
        ", ".join(repr(t) for t in missing),
    )


def product_of_experts_logits(base_logits: torch.Tensor, rule_scores: torch.Tensor) -> torch.Tensor:
    """The official 1:1 product of experts: ``log_softmax(base) + log_softmax(rules)``.

    Equal to ``base_logits + rule_scores`` up to a constant per row, so it has the same argmax
    and the same softmax; kept to check that equivalence. Shapes ``(..., vocab)``.
    """
    width = min(base_logits.shape[-1], rule_scores.shape[-1])
    base = torch.log_softmax(base_logits[..., :width].float(), dim=-1)
    rules = torch.log_softmax(rule_scores[..., :width].float(), dim=-1)
    return base + rules
