"""Text corpora: two that exist on every machine with Python, and user files.

Built-in corpora
----------------
``python-docs``
    The English prose of Python's bundled documentation: the pydoc topic pages shipped with the
    interpreter (``pydoc_data.topics``) and the docstrings of the standard library's modules,
    classes and functions, read with :mod:`ast` (nothing is imported or executed). One document
    per topic and one per module.
``python-source``
    The standard library's ``.py`` files, one document per file (test suites excluded).

Both are split by document into train / validation / test (90 / 5 / 5) with a hash of the
document id, so the split is the same on every machine and does not depend on file order.

User corpora
------------
A ``.txt`` file (documents separated by blank lines), a folder of ``.txt``/``.md``/``.py`` files
(one document per file), or a ``.jsonl`` file with a ``text`` field (and optionally ``id``).
Files that are not valid UTF-8 are skipped with a warning (``on_decode_error="skip"``, the
default) or raise (``"error"``).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import os
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_CORPORA",
    "SPLITS",
    "Corpus",
    "Document",
    "load_corpus",
    "pack_blocks",
    "split_of",
    "stdlib_python_files",
]

SPLITS = ("train", "validation", "test")
Split = Literal["train", "validation", "test", "all"]
BUILTIN_CORPORA = ("python-docs", "python-source")

_EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
_USER_SUFFIXES = {".txt", ".md", ".rst", ".py", ".text"}


@dataclass(frozen=True)
class Document:
    """One document: a stable id and its text."""

    id: str
    text: str


@dataclass
class Corpus:
    """A named list of documents."""

    name: str
    documents: list[Document] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def texts(self) -> list[str]:
        return [doc.text for doc in self.documents]

    def split(self, split: Split) -> Corpus:
        """The documents of one split (``"all"`` returns every document)."""
        if split == "all":
            return self
        if split not in SPLITS:
            raise ValueError(
                f"split={split!r} is not a split; expected one of {', '.join(SPLITS)} or 'all'"
            )
        docs = [doc for doc in self.documents if split_of(doc.id) == split]
        return Corpus(name=f"{self.name}:{split}", documents=docs)

    def num_chars(self) -> int:
        return sum(len(doc.text) for doc in self.documents)


def split_of(doc_id: str) -> str:
    """The split a document belongs to, from a hash of its id (90 / 5 / 5)."""
    bucket = int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < 90:
        return "train"
    if bucket < 95:
        return "validation"
    return "test"


# ---------------------------------------------------------------------------------------------
# Built-in corpora


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_python_files() -> list[Path]:
    """The standard library's ``.py`` files in a stable order, test suites excluded."""
    root = _stdlib_root()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _EXCLUDED_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith("test_"):
                files.append(Path(dirpath) / name)
    return files


def _module_name(path: Path) -> str:
    rel = path.relative_to(_stdlib_root()).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _docstrings(tree: ast.Module, module: str) -> list[str]:
    out = []
    doc = ast.get_docstring(tree)
    if doc:
        out.append(f"{module}\n\n{doc}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            if doc and len(doc) >= 40:
                out.append(f"{module}.{node.name}\n\n{doc}")
    return out


@functools.cache
def _python_docs() -> tuple[Document, ...]:
    docs: list[Document] = []
    topics: dict[str, str] = {}
    try:
        from pydoc_data import topics as pydoc_topics

        topics = dict(pydoc_topics.topics)
    except ImportError:  # pragma: no cover - some distributions strip pydoc_data
        logger.warning("pydoc_data is not installed; python-docs uses docstrings only")
    for name in sorted(topics):
        text = topics[name].strip()
        if text:
            docs.append(Document(id=f"topic:{name}", text=text))
    for path in stdlib_python_files():
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
        module = _module_name(path)
        parts = _docstrings(tree, module)
        if parts:
            docs.append(Document(id=f"module:{module}", text="\n\n".join(parts)))
    return tuple(docs)


@functools.cache
def _python_source() -> tuple[Document, ...]:
    root = _stdlib_root()
    docs = []
    for path in stdlib_python_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip():
            docs.append(Document(id=f"source:{path.relative_to(root).as_posix()}", text=text))
    return tuple(docs)


# ---------------------------------------------------------------------------------------------
# User corpora


def _read_text(path: Path, on_decode_error: str) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        if on_decode_error == "error":
            raise ValueError(
                f"file {str(path)!r} is not valid UTF-8 (byte {exc.start}); convert it to UTF-8 "
                "or leave it out (the Python API skips such files with on_decode_error='skip')"
            ) from exc
        logger.warning("skipping %s: not valid UTF-8 (byte %d)", path, exc.start)
        return None


def _paragraph_documents(path: Path, text: str, min_chars: int = 1) -> list[Document]:
    # A plain text file is cut into documents at blank lines, so the split by document works
    # even for a single file.
    docs = []
    for i, block in enumerate(text.split("\n\n")):
        block = block.strip()
        if len(block) >= min_chars:
            docs.append(Document(id=f"{path.name}:{i}", text=block))
    return docs


def _jsonl_documents(path: Path, on_decode_error: str) -> list[Document]:
    text = _read_text(path, on_decode_error)
    if text is None:
        return []
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be a JSON object "
                'with a "text" field'
            ) from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            keys = sorted(record) if isinstance(record, dict) else []
            raise ValueError(
                f'{path}:{lineno}: expected a JSON object with a string "text" field, got '
                f"{type(record).__name__} with keys {keys}"
            )
        doc_id = str(record.get("id", record.get("_id", f"{path.name}:{lineno}")))
        docs.append(Document(id=doc_id, text=record["text"]))
    return docs


def _user_corpus(path: Path, on_decode_error: str) -> list[Document]:
    if path.is_dir():
        docs = []
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _USER_SUFFIXES)
        for file in files:
            text = _read_text(file, on_decode_error)
            if text is not None and text.strip():
                docs.append(Document(id=file.relative_to(path).as_posix(), text=text))
        return docs
    if path.suffix == ".jsonl":
        return _jsonl_documents(path, on_decode_error)
    text = _read_text(path, on_decode_error)
    return [] if text is None else _paragraph_documents(path, text)


def load_corpus(
    name_or_path: str | os.PathLike[str],
    split: Split = "all",
    *,
    on_decode_error: Literal["skip", "error"] = "skip",
) -> Corpus:
    """Load a built-in corpus by name, or a user corpus from a file or folder.

    Parameters
    ----------
    name_or_path
        ``"python-docs"``, ``"python-source"``, several names joined by ``+``, or a path.
    split
        ``"train"``, ``"validation"``, ``"test"`` or ``"all"``.
    on_decode_error
        What to do with a file that is not UTF-8: ``"skip"`` it with a warning or ``"error"``.

    Raises
    ------
    FileNotFoundError
        If the name is not a built-in corpus and no such path exists.
    ValueError
        If the corpus (or the requested split) holds no text.
    """
    if on_decode_error not in ("skip", "error"):
        raise ValueError(f"on_decode_error={on_decode_error!r}; expected 'skip' or 'error'")
    text_name = str(name_or_path)
    names = text_name.split("+") if "+" in text_name and not Path(text_name).exists() else None
    documents: list[Document]
    if names is not None:
        documents = []
        for name in names:
            documents.extend(load_corpus(name, "all", on_decode_error=on_decode_error).documents)
    elif text_name == "python-docs":
        documents = list(_python_docs())
    elif text_name == "python-source":
        documents = list(_python_source())
    else:
        path = Path(text_name).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"corpus {text_name!r} is neither a built-in corpus ({', '.join(BUILTIN_CORPORA)}) "
                "nor an existing file or folder; pass one of those names or a path to a .txt file, "
                "a .jsonl file with a 'text' field, or a folder of text files"
            )
        documents = _user_corpus(path, on_decode_error)
    documents = [doc for doc in documents if doc.text.strip()]
    corpus = Corpus(name=text_name, documents=documents)
    if not corpus.documents:
        raise ValueError(
            f"corpus {text_name!r} holds no text; give a file or folder with non-empty UTF-8 text"
        )
    result = corpus.split(split)
    if not result.documents:
        raise ValueError(
            f"split {split!r} of corpus {text_name!r} is empty ({len(corpus)} documents in all); "
            "give a larger corpus (the split is 90/5/5 by document) or use split='all'"
        )
    logger.debug(
        "corpus %s: %d documents, %d characters", result.name, len(result), result.num_chars()
    )
    return result


def pack_blocks(
    token_ids: Iterable[Sequence[int]],
    block_size: int,
    *,
    separator_id: int | None = None,
    max_blocks: int | None = None,
) -> torch.Tensor:
    """Concatenate tokenised documents and cut them into non-overlapping blocks.

    Parameters
    ----------
    token_ids
        One list of token ids per document.
    block_size
        Tokens per block.
    separator_id
        Appended after every document (usually the EOS id).
    max_blocks
        Stop after this many blocks.

    Returns
    -------
    torch.Tensor
        ``(num_blocks, block_size)`` int64; the tail shorter than a block is dropped.
    """
    if block_size < 2:
        raise ValueError(f"block_size={block_size}; expected at least 2 tokens per block")
    if max_blocks is not None and max_blocks < 1:
        raise ValueError(f"max_blocks={max_blocks}; expected at least 1 (or no limit)")
    stream: list[int] = []
    limit = None if max_blocks is None else max_blocks * block_size
    for ids in token_ids:
        stream.extend(ids)
        if separator_id is not None:
            stream.append(separator_id)
        if limit is not None and len(stream) >= limit:
            break
    n_blocks = len(stream) // block_size
    if max_blocks is not None:
        n_blocks = min(n_blocks, max_blocks)
    if n_blocks == 0:
        raise ValueError(
            f"the corpus has {len(stream)} tokens, fewer than one block of {block_size}; "
            "use a larger corpus or a smaller block size"
        )
    return torch.tensor(stream[: n_blocks * block_size], dtype=torch.long).view(
        n_blocks, block_size
    )
