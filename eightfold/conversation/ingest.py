"""Read conversations from JSON, JSONL, CSV and plain-text transcripts into :class:`Conversation`.

Supported layouts
-----------------
JSON / JSONL
    One conversation per object: an id under ``id``, ``conversation_id``, ``dialogue_id`` or
    ``convo_id``; turns under ``turns``, ``utterances``, ``messages``, ``dialogue`` or ``original``.
    A turn is an object (speaker under ``speaker``, ``role``, ``from`` or ``author``; text under
    ``text``, ``utterance``, ``content`` or ``value``; time under ``ts``, ``timestamp`` or
    ``time``) or a ``[speaker, text]`` pair. This covers the eightfold layout, Taskmaster
    (``utterances`` with USER/ASSISTANT, and the flattened TM-4 coffee layout whose customer turns
    carry ``api_calls``), ConvLab-3 unified ``dialogues.json`` (user/system), ABCD ``original``
    pairs and OpenAI-style ``messages``. Other keys of a conversation go to ``meta``; other keys of
    a turn go to the turn's ``meta``. A ``.json`` file holds one conversation, a list of them, or
    an object with a ``conversations``/``dialogues``/``data`` list.
CSV
    One row per turn with columns ``conversation_id``, ``speaker`` and ``text``, and optionally
    ``turn_idx`` (rows are sorted by it within a conversation) and ``timestamp``.
Text
    ``Speaker: text`` lines, optionally starting with a ``[hh:mm:ss]`` time stamp. A line without a
    speaker prefix continues the previous turn. A line of three or more ``-`` or ``=`` separates
    conversations.

Roles
-----
Speaker names are mapped to ``customer``, ``agent``, ``bot``, ``system`` or ``action``
(:data:`ROLE_ALIASES`; in ConvLab-3 data, ``system`` is the dialogue system and becomes ``bot``).
Names not in the table take the role given in ``speaker_roles``; failing that, they fill the
missing one of customer/agent in order of appearance, and the guess is recorded in the
conversation's ``warnings``.

Bad input
---------
- An empty conversation, a turn without a speaker or text, or a conversation whose (non-action)
  speaker never changes raises ``ValueError`` naming the conversation and the turn.
- Turns longer than ``max_turn_chars`` are cut there and a warning is recorded.
- Bytes that are not UTF-8 raise ``ValueError`` with the byte offset, unless
  ``encoding_errors="replace"`` (then they become U+FFFD and a warning is logged).
- A file that mixes formats (a transcript line in a JSONL file, JSON inside a transcript) raises
  ``ValueError`` naming the line.
- With ``on_error="collect"`` a bad conversation is recorded in :attr:`IngestResult.errors` and
  reading goes on; with ``"raise"`` the first one stops it.
- Personal data is redacted (:mod:`eightfold.conversation.redact`) unless ``redact=False``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from eightfold.conversation.redact import redact_conversation, redact_text
from eightfold.conversation.schema import ROLES, Conversation, Turn

logger = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "ROLE_ALIASES",
    "IngestError",
    "IngestResult",
    "conversation_from_dict",
    "conversations_from_text",
    "normalise_role",
    "read_conversations",
]

FORMATS = ("auto", "json", "jsonl", "csv", "text")
Format = Literal["auto", "json", "jsonl", "csv", "text"]

ROLE_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ["customer", "user", "usr", "client", "caller", "consumer", "guest", "patient", "human"],
        "customer",
    ),
    **dict.fromkeys(
        [
            "agent",
            "assistant",
            "representative",
            "rep",
            "operator",
            "advisor",
            "support",
            "staff",
            "barista",
            "clerk",
            "cashier",
            "wizard",
        ],
        "agent",
    ),
    **dict.fromkeys(["bot", "chatbot", "virtual agent", "virtual assistant", "ivr"], "bot"),
    **dict.fromkeys(["system", "sys"], "system"),
    **dict.fromkeys(["action", "api", "api_call", "tool", "function"], "action"),
}

_ID_KEYS = ("id", "conversation_id", "dialogue_id", "dialog_id", "convo_id")
_TURNS_KEYS = ("turns", "utterances", "messages", "dialogue", "dialog", "original")
_SPEAKER_KEYS = ("speaker", "role", "from", "author", "participant")
_TEXT_KEYS = ("text", "utterance", "content", "value", "message")
_TS_KEYS = ("ts", "timestamp", "time")
_CONTAINER_KEYS = ("conversations", "dialogues", "dialogs", "data")
_SUFFIX_FORMAT = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".txt": "text",
    ".text": "text",
}
_TEXT_LINE = re.compile(
    r"^\s*(?:\[(?P<ts>(?:\d{1,2}:)?\d{1,2}:\d{2}(?:\.\d+)?)\]\s*)?"
    r"(?P<speaker>[A-Za-z][\w .'-]{0,39}?)\s*:\s(?P<text>.*)$"
)
_SEPARATOR = re.compile(r"^\s*(?:-{3,}|={3,})\s*$")


@dataclass(kw_only=True)
class IngestError:
    """A conversation that could not be read: where it was and why."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(kw_only=True)
class IngestResult:
    """Conversations read, and the ones skipped with their errors."""

    conversations: list[Conversation] = field(default_factory=list)
    errors: list[IngestError] = field(default_factory=list)


def normalise_role(
    speaker: str, speaker_roles: Mapping[str, str] | None = None, *, convlab: bool = False
) -> str | None:
    """The role of ``speaker``, or ``None`` when neither the aliases nor ``speaker_roles`` know it.

    ``speaker_roles`` (exact speaker name to role) wins over :data:`ROLE_ALIASES`.
    """
    if speaker_roles and speaker in speaker_roles:
        return speaker_roles[speaker]
    key = speaker.strip().lower().replace("-", " ").replace("_", " ")
    key = re.sub(r"\s+\d+$", "", key)  # "agent 2" is an agent
    if convlab and key == "system":
        return "bot"
    return ROLE_ALIASES.get(key) or ROLE_ALIASES.get(key.replace(" ", "_"))


def _check_speaker_roles(speaker_roles: Mapping[str, str] | None) -> None:
    if speaker_roles is None:
        return
    for name, role in speaker_roles.items():
        if role not in ROLES:
            raise ValueError(
                f"speaker_roles[{name!r}] = {role!r}; expected one of {', '.join(ROLES)}"
            )


def _first(obj: Mapping[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    for key in keys:
        if key in obj:
            return key, obj[key]
    return None, None


def _cut(text: str, limit: int) -> str:
    """``text[:limit]``, moved back so that neither a word nor a number is split.

    A number cut in half no longer matches its redaction pattern (a card number fails the Luhn
    check) and a part of it would be kept, so a cut inside a run of digits, spaces and dashes
    drops the whole run; a cut inside a word backs off to the last white space within 64
    characters.
    """
    head = text[:limit]
    if limit >= len(text):
        return head
    if re.search(r"\d[ -]?$", head) and re.match(r"[ -]?\d", text[limit:]):
        run = re.search(r"[\d][\d -]*$", head)
        if run is not None:
            return head[: run.start()].rstrip()
    if not text[limit].isspace():
        space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
        if space >= max(1, limit - 64):
            return head[:space]
    return head


def _build(
    conv_id: str,
    raw_turns: list[tuple[Any, Any, Any, dict[str, Any]]],
    meta: dict[str, Any],
    *,
    speaker_roles: Mapping[str, str] | None,
    max_turn_chars: int,
    convlab: bool = False,
) -> Conversation:
    """Validate raw ``(speaker, text, ts, meta)`` tuples and build a conversation."""
    if not raw_turns:
        raise ValueError(
            f"conversation {conv_id!r} has no turns; every conversation needs at least two turns "
            "from two speakers"
        )
    warnings: list[str] = []
    cleaned: list[tuple[str, str, float | None, dict[str, Any]]] = []
    for position, (speaker, text, ts, turn_meta) in enumerate(raw_turns):
        if speaker is None or (isinstance(speaker, str) and not speaker.strip()):
            raise ValueError(
                f"conversation {conv_id!r}, turn {position}: no speaker; give every turn a "
                f"speaker (one of the keys {', '.join(_SPEAKER_KEYS)})"
            )
        if not isinstance(speaker, str):
            raise TypeError(
                f"conversation {conv_id!r}, turn {position}: speaker must be a string, got "
                f"{type(speaker).__name__} {speaker!r}"
            )
        if text is None:
            raise ValueError(
                f"conversation {conv_id!r}, turn {position}: no text; give every turn a text "
                f"(one of the keys {', '.join(_TEXT_KEYS)})"
            )
        if not isinstance(text, str):
            raise TypeError(
                f"conversation {conv_id!r}, turn {position}: text must be a string, got "
                f"{type(text).__name__}"
            )
        if len(text) > max_turn_chars:
            warnings.append(
                f"turn {position} had {len(text)} characters; cut to max_turn_chars="
                f"{max_turn_chars}"
            )
            text = _cut(text, max_turn_chars)
        if ts is not None and not isinstance(ts, int | float):
            ts = _parse_ts(ts, conv_id, position)
        cleaned.append((speaker.strip(), text, ts, turn_meta))

    # Roles: known aliases first, then the caller's mapping, then order of appearance.
    roles: dict[str, str] = {}
    unknown: list[str] = []
    for speaker, *_ in cleaned:
        if speaker in roles or speaker in unknown:
            continue
        role = normalise_role(speaker, speaker_roles, convlab=convlab)
        if role is None:
            unknown.append(speaker)
        else:
            roles[speaker] = role
    if unknown:
        missing = [r for r in ("customer", "agent") if r not in roles.values()]
        guessed = []
        for name in unknown:
            roles[name] = missing.pop(0) if missing else "agent"
            guessed.append(f"{name}={roles[name]}")
        warnings.append(
            "speaker roles guessed from order of appearance: "
            + ", ".join(guessed)
            + "; pass speaker_roles (or --role NAME=ROLE) to set them"
        )

    parties = {s for s, *_ in cleaned if roles[s] not in ("action", "system")}
    if len(parties) < 2 or len({roles[s] for s in parties}) < 2:
        who = ", ".join(f"{s} ({roles[s]})" for s in sorted(parties)) or "only system/action turns"
        raise ValueError(
            f"conversation {conv_id!r}: the speaker never changes ({who} across {len(cleaned)} "
            "turns); conversation analysis needs two parties with different roles (a customer "
            "and an agent or bot). Check the speaker field, pass speaker_roles (--role "
            "NAME=ROLE), or split a monologue from the conversation data"
        )

    turns = [
        Turn(idx=i, speaker=s, role=roles[s], text=t, ts=ts, meta=m)  # type: ignore[arg-type]
        for i, (s, t, ts, m) in enumerate(cleaned)
    ]
    return Conversation(id=conv_id, turns=turns, meta=meta, warnings=warnings)


def _parse_ts(value: Any, conv_id: str, position: int) -> float:
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        parts = text.split(":")
        if 2 <= len(parts) <= 3:
            try:
                seconds = 0.0
                for part in parts:
                    seconds = seconds * 60 + float(part)
                return seconds
            except ValueError:
                pass
        try:
            from datetime import datetime

            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ValueError(
        f"conversation {conv_id!r}, turn {position}: time stamp {value!r} is not a number of "
        "seconds, hh:mm:ss or an ISO date-time"
    )


def conversation_from_dict(
    obj: Mapping[str, Any],
    *,
    default_id: str = "conversation",
    speaker_roles: Mapping[str, str] | None = None,
    max_turn_chars: int = 20_000,
) -> Conversation:
    """Build a conversation from one JSON object in any supported layout (see module docstring)."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"a conversation must be a JSON object, got {type(obj).__name__}")
    _check_speaker_roles(speaker_roles)
    id_key, conv_id = _first(obj, _ID_KEYS)
    conv_id = str(conv_id) if conv_id not in (None, "") else default_id
    turns_key, turns = _first(obj, _TURNS_KEYS)
    if turns_key is None:
        raise ValueError(
            f"conversation {conv_id!r} has no turns: expected one of the keys "
            f"{', '.join(_TURNS_KEYS)}; found keys {sorted(obj)}"
        )
    if not isinstance(turns, list):
        raise TypeError(
            f"conversation {conv_id!r}: {turns_key!r} must be a list of turns, got "
            f"{type(turns).__name__}"
        )
    meta = dict(obj.get("meta") or {})
    for key, value in obj.items():
        if key not in (id_key, turns_key, "meta"):
            meta.setdefault(key, value)

    raw: list[tuple[Any, Any, Any, dict[str, Any]]] = []
    convlab = False
    for position, turn in enumerate(turns):
        if isinstance(turn, list | tuple):
            if len(turn) != 2:
                raise ValueError(
                    f"conversation {conv_id!r}, turn {position}: a list turn must be "
                    f"[speaker, text], got {len(turn)} items"
                )
            raw.append((turn[0], turn[1], None, {}))
            continue
        if not isinstance(turn, Mapping):
            raise TypeError(
                f"conversation {conv_id!r}, turn {position}: expected an object or a "
                f"[speaker, text] pair, got {type(turn).__name__}"
            )
        speaker_key, speaker = _first(turn, _SPEAKER_KEYS)
        text_key, text = _first(turn, _TEXT_KEYS)
        ts_key, ts = _first(turn, _TS_KEYS)
        convlab = convlab or text_key == "utterance"
        used = {speaker_key, text_key, ts_key, "index", "idx", "turn_idx"}
        raw.append((speaker, text, ts, {k: v for k, v in turn.items() if k not in used}))
    return _build(
        conv_id,
        raw,
        meta,
        speaker_roles=speaker_roles,
        max_turn_chars=max_turn_chars,
        convlab=convlab,
    )


def conversations_from_text(
    text: str,
    *,
    id_prefix: str = "transcript",
    speaker_roles: Mapping[str, str] | None = None,
    max_turn_chars: int = 20_000,
) -> Iterator[tuple[str, Conversation | Exception]]:
    """Parse ``Speaker: text`` transcripts; yields ``(where, conversation or error)``."""
    _check_speaker_roles(speaker_roles)
    blocks: list[tuple[int, list[tuple[int, str]]]] = [(1, [])]
    for number, line in enumerate(text.splitlines(), start=1):
        if _SEPARATOR.match(line):
            blocks.append((number + 1, []))
        elif line.strip():
            blocks[-1][1].append((number, line))
    count = 0
    for start, lines in blocks:
        if not lines:
            continue
        count += 1
        conv_id = f"{id_prefix}-{count}"
        where = f"{id_prefix} line {start}"
        try:
            raw: list[tuple[Any, Any, Any, dict[str, Any]]] = []
            for number, line in lines:
                stripped = line.strip()
                if stripped.startswith(("{", "[{")) and stripped.endswith(("}", "}]")):
                    raise ValueError(
                        f"line {number} looks like JSON inside a text transcript; the file "
                        "mixes formats. Put JSON conversations in a .json/.jsonl file"
                    )
                match = _TEXT_LINE.match(line)
                if match:
                    raw.append((match["speaker"], match["text"].strip(), match["ts"], {}))
                elif raw:
                    speaker, previous, ts, meta = raw[-1]
                    raw[-1] = (speaker, f"{previous} {stripped}", ts, meta)
                else:
                    raise ValueError(
                        f"line {number}: {redact_text(stripped[:60])[0]!r} has no 'Speaker: ' "
                        "prefix and there "
                        "is no earlier turn to continue"
                    )
            yield (
                where,
                _build(
                    conv_id, raw, {}, speaker_roles=speaker_roles, max_turn_chars=max_turn_chars
                ),
            )
        except (ValueError, TypeError) as exc:
            yield where, exc


def _decode(data: bytes, where: str, encoding_errors: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if encoding_errors == "replace":
            logger.warning(
                "%s: bytes at offset %d are not UTF-8; replaced by U+FFFD", where, exc.start
            )
            return data.decode("utf-8", errors="replace")
        raise ValueError(
            f"{where}: byte {data[exc.start : exc.start + 1]!r} at offset {exc.start} is not "
            "UTF-8; convert the file to UTF-8, or pass encoding_errors='replace' "
            "(--encoding-errors replace) to substitute U+FFFD"
        ) from None


def _sniff(text: str) -> str:
    head = text.lstrip()[:4096]
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        first_line = head.splitlines()[0].strip()
        try:
            json.loads(first_line)
            return "jsonl"
        except json.JSONDecodeError:
            return "json"
    first = head.splitlines()[0] if head else ""
    if "," in first and {"speaker", "text"} <= {c.strip().lower() for c in first.split(",")}:
        return "csv"
    return "text"


def _from_json(text: str, where: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); if the "
            "file has one conversation per line, name it .jsonl or pass format='jsonl'"
        ) from None
    if isinstance(data, Mapping):
        key, container = _first(data, _CONTAINER_KEYS)
        items = container if key is not None and isinstance(container, list) else [data]
    elif isinstance(data, list):
        items = data
    else:
        raise TypeError(f"{where}: expected a JSON object or list, got {type(data).__name__}")
    for position, item in enumerate(items):
        item_where = f"{where}[{position}]"
        try:
            yield (
                item_where,
                conversation_from_dict(
                    item, default_id=f"{Path(where).stem}-{position}", **options
                ),
            )
        except (ValueError, TypeError, ValidationError) as exc:
            yield item_where, exc


def _from_jsonl(text: str, where: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        line_where = f"{where}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            hint = (
                " (it looks like a 'Speaker: text' transcript line: the file mixes formats)"
                if _TEXT_LINE.match(line)
                else ""
            )
            yield line_where, ValueError(f"line {number} is not valid JSON: {exc.msg}{hint}")
            continue
        try:
            yield (
                line_where,
                conversation_from_dict(obj, default_id=f"{Path(where).stem}-{number}", **options),
            )
        except (ValueError, TypeError, ValidationError) as exc:
            yield line_where, exc


def _from_csv(text: str, where: str, options: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    missing = [c for c in ("conversation_id", "speaker", "text") if c not in columns]
    if missing:
        raise ValueError(
            f"{where}: CSV is missing column(s) {missing}; expected conversation_id, speaker, "
            f"text and optionally turn_idx, timestamp; found {reader.fieldnames}"
        )
    grouped: dict[str, list[tuple[float, int, dict[str, str]]]] = {}
    for row_number, row in enumerate(reader, start=2):
        conv_id = (row.get(columns["conversation_id"]) or "").strip()
        if not conv_id:
            yield f"{where}:{row_number}", ValueError(f"row {row_number} has no conversation_id")
            continue
        order = row_number
        if "turn_idx" in columns and (row.get(columns["turn_idx"]) or "").strip():
            try:
                order = float(row[columns["turn_idx"]])  # type: ignore[assignment]
            except ValueError:
                yield (
                    f"{where}:{row_number}",
                    ValueError(
                        f"row {row_number}: turn_idx {row[columns['turn_idx']]!r} is not a number"
                    ),
                )
                continue
        grouped.setdefault(conv_id, []).append((order, row_number, row))
    for conv_id, rows in grouped.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        raw: list[tuple[Any, Any, Any, dict[str, Any]]] = []
        for _, _, row in rows:
            speaker = row.get(columns["speaker"])
            ts = row.get(columns["timestamp"]) if "timestamp" in columns else None
            raw.append((speaker or None, row.get(columns["text"]), ts or None, {}))
        try:
            yield f"{where} conversation {conv_id}", _build(conv_id, raw, {}, **options)
        except (ValueError, TypeError, ValidationError) as exc:
            yield f"{where} conversation {conv_id}", exc


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _SUFFIX_FORMAT)
        if not files:
            raise FileNotFoundError(
                f"folder {str(path)!r} has no .json, .jsonl, .csv or .txt files"
            )
        return files
    if not path.exists():
        raise FileNotFoundError(f"input {str(path)!r} does not exist")
    return [path]


def _read_file(
    file: Path, format: str, encoding_errors: str, options: dict[str, Any]
) -> Iterator[tuple[str, Conversation | Exception]]:
    where = str(file)
    text = _decode(file.read_bytes(), where, encoding_errors)
    kind = format if format != "auto" else _SUFFIX_FORMAT.get(file.suffix.lower())
    kind = kind or _sniff(text)
    if kind == "json":
        return _from_json(text, where, options)
    if kind == "jsonl":
        return _from_jsonl(text, where, options)
    if kind == "csv":
        return _from_csv(text, where, options)
    return conversations_from_text(text, id_prefix=file.stem, **options)


def read_conversations(
    path: str | os.PathLike[str],
    *,
    format: Format = "auto",
    redact: bool = True,
    on_error: Literal["raise", "collect"] = "raise",
    speaker_roles: Mapping[str, str] | None = None,
    max_turn_chars: int = 20_000,
    encoding_errors: Literal["strict", "replace"] = "strict",
) -> IngestResult:
    """Read every conversation in a file or folder, redacting personal data.

    Parameters
    ----------
    path
        A file, or a folder searched recursively for ``.json``, ``.jsonl``, ``.csv`` and ``.txt``.
    format
        ``auto`` picks the parser from the file suffix, else from the content.
    redact
        Replace emails, phone, card and account numbers before returning (on by default).
    on_error
        ``raise`` stops at the first bad conversation or unreadable file; ``collect`` skips it,
        records it in :attr:`IngestResult.errors` and goes on with the rest.
    speaker_roles
        Speaker name to role, for names that are not in :data:`ROLE_ALIASES`.
    max_turn_chars
        Longer turns are cut to this length (with a warning on the conversation).
    encoding_errors
        ``strict`` raises on non-UTF-8 bytes; ``replace`` substitutes U+FFFD.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; expected one of {', '.join(FORMATS)}")
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'collect'")
    if encoding_errors not in ("strict", "replace"):
        raise ValueError(f"encoding_errors={encoding_errors!r}; expected 'strict' or 'replace'")
    if not isinstance(max_turn_chars, int) or max_turn_chars < 1:
        raise ValueError(f"max_turn_chars={max_turn_chars!r}; expected a positive integer")
    _check_speaker_roles(speaker_roles)
    options = {"speaker_roles": speaker_roles, "max_turn_chars": max_turn_chars}

    result = IngestResult()
    seen: set[str] = set()
    for file in _files(Path(path)):
        where = str(file)
        try:
            items = list(_read_file(file, format, encoding_errors, options))
        except (ValueError, TypeError, OSError) as exc:
            # A file that cannot be read at all (bytes, JSON syntax, CSV columns) is one error in
            # a batch, like a bad conversation; the files after it are still read.
            if on_error == "raise":
                raise
            result.errors.append(IngestError(where=where, message=str(exc)))
            continue
        for item_where, item in items:
            if isinstance(item, Conversation) and item.id in seen:
                item = ValueError(f"conversation id {item.id!r} appears twice; ids must be unique")
            if isinstance(item, Exception):
                if on_error == "raise":
                    raise ValueError(f"{item_where}: {item}") from item
                result.errors.append(IngestError(where=item_where, message=str(item)))
                continue
            seen.add(item.id)
            for warning in item.warnings:
                logger.debug("%s: %s", item.id, warning)
            result.conversations.append(redact_conversation(item) if redact else item)
    if result.errors:
        logger.warning(
            "%d conversation(s) could not be read (first: %s)",
            len(result.errors),
            result.errors[0],
        )
    return result
