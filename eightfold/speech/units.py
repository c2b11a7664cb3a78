"""EMOVA speech units: reduction, ``<|speech_k|>`` strings, U2S symbol ids, vocabulary extension.

Speech enters and leaves the EMOVA language model as ordinary vocabulary tokens: unit ``k``
(``0 <= k < 4096``, 25 per second of audio) is the added token ``<|speech_k|>``. The released
pipeline always collapses consecutive repeats ("reduced" units), so durations are discarded and
the unit-to-speech decoder predicts them again.

Two families of functions live here:

* strict ones (:func:`units_to_speech_tokens`, :func:`speech_tokens_to_units`,
  :func:`parse_unit_string`) that validate their input and raise a clear error, and
* faithful ones (:func:`official_speech_token_string`, :func:`official_content_units`,
  :func:`official_u2s_symbol_ids`) that reproduce the authors' string handling, quirks
  included, for comparison with their outputs.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "NUM_UNITS",
    "U2S_NUM_SYMBOLS",
    "U2S_SYMBOL_OFFSET",
    "UNIT_RATE_HZ",
    "VocabularyExtension",
    "check_units",
    "extend_vocabulary_",
    "official_content_units",
    "official_speech_token_string",
    "official_u2s_symbol_ids",
    "parse_unit_string",
    "reduce_units",
    "speech_token",
    "speech_tokens_to_units",
    "unit_string",
    "units_to_speech_tokens",
    "units_to_symbol_ids",
]

#: Size of the unit vocabulary (FSQ levels 8 x 8 x 8 x 8).
NUM_UNITS = 4096
#: Units per second of audio (one unit per 40 ms encoder frame).
UNIT_RATE_HZ = 25.0
#: The U2S symbol table holds 178 ordinary VITS symbols before the 4096 unit symbols.
U2S_SYMBOL_OFFSET = 178
U2S_NUM_SYMBOLS = U2S_SYMBOL_OFFSET + NUM_UNITS

_TOKEN_RE = re.compile(r"<\|speech_([0-9]+)\|>")
_PREFIX = "<|speech_"
_SUFFIX = "|>"


def is_integer(value: object) -> bool:
    """Whether ``value`` is one integer id (Python/NumPy integer or 0-d integer tensor)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return (
        isinstance(value, torch.Tensor)
        and value.ndim == 0
        and not value.is_floating_point()
        and not value.is_complex()
    )


def _as_int_list(units: Iterable[int] | torch.Tensor, name: str = "units") -> list[int]:
    if isinstance(units, torch.Tensor):
        if units.is_floating_point() or units.is_complex():
            raise TypeError(f"{name} must hold integers; got a tensor of dtype {units.dtype}")
        if units.ndim != 1:
            raise ValueError(f"{name} must be one sequence (1-D); got shape {tuple(units.shape)}")
        return [int(u) for u in units.tolist()]
    if isinstance(units, str | bytes):
        raise TypeError(
            f"{name} must be a sequence of integers, not a string; parse a string with "
            "parse_unit_string()"
        )
    out = []
    for position, unit in enumerate(units):
        if not is_integer(unit):
            raise TypeError(
                f"{name}[{position}] must be an integer unit id; got {type(unit).__name__} {unit!r}"
            )
        out.append(int(unit))
    return out


def check_units(
    units: Iterable[int] | torch.Tensor,
    *,
    num_units: int = NUM_UNITS,
    allow_empty: bool = False,
    name: str = "units",
) -> list[int]:
    """Validate a unit sequence and return it as a list of ints.

    Raises
    ------
    ValueError
        If the sequence is empty (unless ``allow_empty``) or an id lies outside
        ``[0, num_units)``; the message names the first offending position.
    TypeError
        If an element is not an integer.
    """
    values = _as_int_list(units, name)
    if not values and not allow_empty:
        raise ValueError(
            f"{name} is empty; expected at least one unit id in [0, {num_units}). An empty "
            "reply cannot be synthesised."
        )
    for position, unit in enumerate(values):
        if not 0 <= unit < num_units:
            raise ValueError(
                f"{name}[{position}] = {unit} is out of range; unit ids must lie in "
                f"[0, {num_units}) (the EMOVA tokenizer has {num_units} units)"
            )
    return values


def reduce_units(units: Iterable[int] | torch.Tensor) -> list[int]:
    """Collapse consecutive repeats: ``[5, 5, 17, 17, 5] -> [5, 17, 5]``.

    This is the "reduced" form the released pipeline uses everywhere; run lengths (durations)
    are discarded and later re-predicted by the unit-to-speech decoder.
    """
    values = _as_int_list(units)
    return [u for i, u in enumerate(values) if i == 0 or u != values[i - 1]]


def unit_string(units: Iterable[int] | torch.Tensor) -> str:
    """Space-separated decimal ids, the form of the official unit files (``"5 17 4095"``)."""
    return " ".join(str(u) for u in _as_int_list(units))


def speech_token(unit: int, *, num_units: int = NUM_UNITS) -> str:
    """The vocabulary token of one unit, ``<|speech_k|>``."""
    check_units([unit], num_units=num_units, name="unit")
    return f"{_PREFIX}{int(unit)}{_SUFFIX}"


def units_to_speech_tokens(
    units: Iterable[int] | torch.Tensor,
    *,
    reduce: bool = False,
    num_units: int = NUM_UNITS,
    allow_empty: bool = False,
) -> str:
    """Render units as the concatenated ``<|speech_k|>`` tokens the language model reads.

    Parameters
    ----------
    units
        Unit ids in ``[0, num_units)``.
    reduce
        Collapse consecutive repeats first.
    allow_empty
        Return ``""`` for an empty sequence instead of raising. (The official renderer turns
        an empty sequence into the malformed ``"<|speech_|>"``; see
        :func:`official_speech_token_string`.)
    """
    values = check_units(units, num_units=num_units, allow_empty=allow_empty)
    if reduce:
        values = reduce_units(values)
    return "".join(f"{_PREFIX}{u}{_SUFFIX}" for u in values)


def speech_tokens_to_units(
    text: str,
    *,
    num_units: int = NUM_UNITS,
    strict: bool = True,
    allow_empty: bool = False,
) -> list[int]:
    """Parse ``<|speech_k|>`` tokens back to unit ids.

    Parameters
    ----------
    text
        Concatenated tokens; whitespace between tokens is allowed.
    strict
        Reject any other text (a greeting before the tokens, a truncated last token). With
        ``strict=False`` such text is dropped with a WARNING, which repairs typical LLM output.
    allow_empty
        Accept a string without any unit.

    Raises
    ------
    ValueError
        On foreign text (strict mode), out-of-range ids, or no unit at all.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str of <|speech_k|> tokens; got {type(text).__name__}")
    units: list[int] = []
    leftovers: list[str] = []
    position = 0
    for match in _TOKEN_RE.finditer(text):
        between = text[position : match.start()]
        if between.strip():
            leftovers.append(between.strip())
        units.append(int(match.group(1)))
        position = match.end()
    tail = text[position:]
    if tail.strip():
        leftovers.append(tail.strip())
    if leftovers:
        shown = ", ".join(repr(s[:40]) for s in leftovers[:3])
        if strict:
            raise ValueError(
                f"text holds {len(leftovers)} piece(s) that are not <|speech_k|> tokens: "
                f"{shown}. Pass only unit tokens, or strict=False (CLI: --lenient) to drop the "
                "rest."
            )
        logger.warning(
            "dropped %d non-unit piece(s) from the unit string: %s", len(leftovers), shown
        )
    return check_units(units, num_units=num_units, allow_empty=allow_empty)


def parse_unit_string(
    text: str, *, num_units: int = NUM_UNITS, strict: bool = True, allow_empty: bool = False
) -> list[int]:
    """Units from either form: ``<|speech_k|>`` tokens or space-separated ids (``"5 17 4095"``).

    Used by the CLI, which accepts both.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    if _PREFIX in text:
        return speech_tokens_to_units(
            text, num_units=num_units, strict=strict, allow_empty=allow_empty
        )
    pieces = text.replace(",", " ").split()
    bad = [p for p in pieces if not (p.isascii() and p.isdigit())]
    if bad:
        raise ValueError(
            f"could not read unit ids from {text[:60]!r}: {bad[:3]} are not whole numbers. "
            'Pass space-separated ids ("5 17 4095") or <|speech_k|> tokens.'
        )
    return check_units([int(p) for p in pieces], num_units=num_units, allow_empty=allow_empty)


def units_to_symbol_ids(
    units: Iterable[int] | torch.Tensor, *, offset: int = U2S_SYMBOL_OFFSET
) -> list[int]:
    """Unit ids to the unit-to-speech decoder's input ids (unit ``k`` -> ``offset + k``)."""
    return [offset + u for u in check_units(units)]


# --- the authors' string handling, reproduced ----------------------------------------------


def official_speech_token_string(unit_string_: str) -> str:
    """Render a space-separated unit string as the official demo encoder does.

    The string is split on single spaces and each piece wrapped in ``<|speech_...|>``; an empty
    string therefore becomes ``"<|speech_|>"`` (a quirk kept here for comparison; use
    :func:`units_to_speech_tokens` in new code).
    """
    if not isinstance(unit_string_, str):
        raise TypeError(f"unit_string_ must be a str; got {type(unit_string_).__name__}")
    return "".join(f"{_PREFIX}{piece}{_SUFFIX}" for piece in unit_string_.split(" "))


def official_content_units(llm_output: str) -> str:
    """Turn LLM output into the unit string the official scripts pass to the decoder.

    Every ``<|speech_`` is deleted, every ``|>`` becomes a space, and the ends are stripped.
    Any other text survives (``"Sure! <|speech_5|>"`` -> ``"Sure! 5"``).
    """
    if not isinstance(llm_output, str):
        raise TypeError(f"llm_output must be a str; got {type(llm_output).__name__}")
    return llm_output.replace(_PREFIX, "").replace(_SUFFIX, " ").strip()


def _u2s_symbol_table(num_units: int) -> dict[str, int]:
    # The decoder's text front end: pad, punctuation, letters and IPA letters of the original
    # VITS symbol set (178 entries, as in keithito/tacotron), then the unit ids "0".."4095".
    # Built like the authors' dict, so a symbol listed twice (the apostrophe) keeps its last id.
    symbols = ["_", *_PUNCTUATION, *_LETTERS, *_IPA_LETTERS]
    symbols += [str(k) for k in range(num_units)]
    return {symbol: i for i, symbol in enumerate(symbols)}


_PUNCTUATION = ';:,.!?¡¿—…"«»“” '
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_IPA_LETTERS = (
    "ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢ"
    "ǀǁǂǃˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘'\u0329'ᵻ"
)


def official_u2s_symbol_ids(content_units: str, *, num_units: int = NUM_UNITS) -> list[int]:
    """Map a content-unit string to decoder symbol ids exactly as the authors' front end does.

    The string is split on whitespace (the ``text_split`` cleaner) and each piece looked up in
    the decoder's symbol table: 178 text symbols, then unit ``k`` at ``178 + k``. Where the
    authors' lookup fails with ``KeyError`` (text left around the tokens such as ``"Sure!"``,
    an id >= 4096, a truncated token such as ``"2|"``) this raises ``ValueError``. Like the
    original, a lone letter or punctuation mark maps to a text symbol (``"."`` -> 4); use
    :func:`units_to_symbol_ids` for a strict, units-only conversion.
    """
    if not isinstance(content_units, str):
        raise TypeError(f"content_units must be a str; got {type(content_units).__name__}")
    table = _u2s_symbol_table(num_units)
    ids = []
    for piece in content_units.split():
        if piece not in table:
            raise ValueError(
                f"{piece!r} is not a unit symbol: the decoder accepts the ids 0..{num_units - 1} "
                "written in decimal. Remove any text around the <|speech_k|> tokens "
                "(speech_tokens_to_units(..., strict=False) does this)."
            )
        ids.append(table[piece])
    return ids


# --- vocabulary extension -------------------------------------------------------------------


@dataclass(frozen=True)
class VocabularyExtension:
    """What :func:`extend_vocabulary_` changed.

    Attributes
    ----------
    original_size
        ``len(tokenizer)`` before.
    first_unit_id
        Token id of ``<|speech_0|>``; unit ``k`` is ``first_unit_id + k``.
    num_units
        Number of unit tokens.
    num_added
        Tokens actually added (0 when the tokenizer already held them).
    tokenizer_size
        ``len(tokenizer)`` after (for Qwen2.5: 151,665 + 4,096 = 155,761, which the released
        model then uses as its image-token id).
    embedding_size
        Rows of the input embedding after resizing (padded to a multiple of ``pad_to``;
        155,776 for Qwen2.5).
    resized
        Whether the embedding matrix was resized (it is not when it already had room).
    """

    original_size: int
    first_unit_id: int
    num_units: int
    num_added: int
    tokenizer_size: int
    embedding_size: int
    resized: bool

    def unit_token_id(self, unit: int) -> int:
        """Token id of unit ``unit``."""
        check_units([unit], num_units=self.num_units, name="unit")
        return self.first_unit_id + int(unit)


def extend_vocabulary_(
    tokenizer: Any,
    model: Any | None = None,
    *,
    num_units: int = NUM_UNITS,
    pad_to: int = 128,
) -> VocabularyExtension:
    """Add ``<|speech_0|> ... <|speech_{n-1}|>`` to a tokenizer and resize the model to fit.

    Follows the authors' recipe: the tokens are added as ``AddedToken(single_word=True,
    lstrip=False, rstrip=False)``, and when the tokenizer outgrows the embedding matrix it is
    resized to ``ceil(len(tokenizer) / pad_to) * pad_to`` rows. Unlike the recipe (which adds
    them from an unordered set) the tokens are added in unit order, so unit ``k`` gets id
    ``first_unit_id + k``. Both the tokenizer and ``model`` are modified in place.

    Parameters
    ----------
    tokenizer
        A Hugging Face tokenizer (fast or slow).
    model
        A ``PreTrainedModel`` whose input embedding (and tied or untied LM head) is resized;
        ``None`` to extend the tokenizer only.
    num_units
        Number of unit tokens (4096 for EMOVA).
    pad_to
        Pad the embedding rows to a multiple of this (128 in the recipe).

    Raises
    ------
    ValueError
        If some unit tokens already exist but not as a contiguous block in unit order.
    """
    from tokenizers import AddedToken

    if not isinstance(num_units, int) or num_units < 1:
        raise ValueError(f"num_units must be a positive int; got {num_units!r}")
    if not isinstance(pad_to, int) or pad_to < 1:
        raise ValueError(f"pad_to must be a positive int; got {pad_to!r}")
    if not hasattr(tokenizer, "add_tokens") or not hasattr(tokenizer, "get_vocab"):
        raise TypeError(
            f"tokenizer must be a Hugging Face tokenizer; got {type(tokenizer).__name__}"
        )

    original_size = len(tokenizer)
    vocab = tokenizer.get_vocab()
    names = [f"{_PREFIX}{k}{_SUFFIX}" for k in range(num_units)]
    present = [name for name in names if name in vocab]
    if present:
        first = vocab.get(names[0])
        contiguous = (
            len(present) == num_units
            and first is not None
            and all(vocab[name] == first + k for k, name in enumerate(names))
        )
        if not contiguous:
            raise ValueError(
                f"the tokenizer already holds {len(present)} of the {num_units} unit tokens, "
                "not as one block in unit order; start from the original tokenizer"
            )
        logger.info("the tokenizer already holds the %d unit tokens", num_units)
        num_added = 0
        first_unit_id = int(first)  # type: ignore[arg-type]
    else:
        tokens = [AddedToken(n, single_word=True, lstrip=False, rstrip=False) for n in names]
        num_added = int(tokenizer.add_tokens(tokens))
        first_unit_id = int(tokenizer.convert_tokens_to_ids(names[0]))
        last = int(tokenizer.convert_tokens_to_ids(names[-1]))
        if num_added != num_units or last != first_unit_id + num_units - 1:
            raise ValueError(
                f"added {num_added} of {num_units} unit tokens with ids {first_unit_id}..{last}; "
                "expected one contiguous block"
            )
    tokenizer_size = len(tokenizer)

    resized = False
    embedding_size = tokenizer_size
    if model is not None:
        embedding = model.get_input_embeddings()
        embedding_size = int(embedding.weight.shape[0])
        if tokenizer_size > embedding_size:
            embedding_size = int(math.ceil(tokenizer_size / pad_to) * pad_to)
            model.resize_token_embeddings(embedding_size)
            resized = True
            logger.info("resized the embedding matrix to %d rows", embedding_size)
    return VocabularyExtension(
        original_size=original_size,
        first_unit_id=first_unit_id,
        num_units=num_units,
        num_added=num_added,
        tokenizer_size=tokenizer_size,
        embedding_size=embedding_size,
        resized=resized,
    )
