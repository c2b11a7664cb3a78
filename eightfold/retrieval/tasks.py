"""Retrieval tasks: BEIR-layout folders and code search over Python's standard library.

A :class:`RetrievalTask` holds a corpus, queries and relevance judgements (qrels).

:func:`load_beir` reads the BEIR layout (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``), as used by SciFact and the other BEIR sets.

:func:`code_search_task` builds a task that exists on every machine with Python: every function
of the standard library that has a docstring gives one query (the docstring's summary line) and
one document (the function's code with the docstring removed); the only relevant document of a
query is its own function. Functions whose summary line is shared with another function are left
out, so every query has a single right answer.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eightfold.evaluation.retrieval import evaluate_run
from eightfold.storage import (
    atomic_write_json,
    cache_dir,
    read_jsonl,
    read_user_text,
    settings_key,
)

logger = logging.getLogger(__name__)

__all__ = ["RetrievalTask", "code_search_task", "evaluate_index", "load_beir", "load_documents"]


@dataclass
class RetrievalTask:
    """A corpus, queries and judgements.

    Attributes
    ----------
    corpus
        ``{doc_id: text}``.
    queries
        ``{query_id: text}``; only judged queries are kept.
    qrels
        ``{query_id: {doc_id: grade}}``.
    """

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    info: dict[str, Any] = field(default_factory=dict)

    def documents(self) -> list[tuple[str, str]]:
        """The corpus as ``(id, text)`` pairs."""
        return list(self.corpus.items())

    def subset(self, max_documents: int | None, *, seed: int = 0) -> RetrievalTask:
        """Every judged document plus a fixed sample of the others, up to ``max_documents``.

        The sample is chosen by a hash of the document id, so it is the same on every machine.
        Queries whose relevant documents all remain are kept.
        """
        if max_documents is None or max_documents >= len(self.corpus):
            return self
        judged = {d for rel in self.qrels.values() for d, g in rel.items() if g > 0}
        judged &= set(self.corpus)
        others = sorted(
            (d for d in self.corpus if d not in judged),
            key=lambda d: hashlib.sha1(f"{seed}:{d}".encode()).hexdigest(),
        )
        keep = judged | set(others[: max(max_documents - len(judged), 0)])
        corpus = {d: t for d, t in self.corpus.items() if d in keep}
        return RetrievalTask(
            name=f"{self.name} (subset of {len(corpus)} documents)",
            corpus=corpus,
            queries=dict(self.queries),
            qrels={q: dict(r) for q, r in self.qrels.items()},
            info={**self.info, "subset_of": len(self.corpus), "subset_seed": seed},
        )


# ---------------------------------------------------------------------------------------------
# BEIR


def _record_id(record: dict[str, Any], path: Path, lineno: int) -> str:
    doc_id = record.get("_id", record.get("id"))
    if doc_id is None:
        raise ValueError(f"{path}:{lineno}: the record has no '_id' (or 'id') field")
    return str(doc_id)


def _beir_corpus(path: Path) -> dict[str, str]:
    corpus: dict[str, str] = {}
    for lineno, record in read_jsonl(path):
        doc_id = _record_id(record, path, lineno)
        title = str(record.get("title") or "").strip()
        body = str(record.get("text") or "").strip()
        text = f"{title} {body}".strip() if title else body
        if doc_id in corpus:
            raise ValueError(f"{path}: document id {doc_id!r} appears twice; ids must be unique")
        if text:
            corpus[doc_id] = text
        else:
            logger.warning("%s: document %r is empty and is left out", path, doc_id)
    if not corpus:
        raise ValueError(f"{path} holds no documents")
    return corpus


def load_beir(folder: str | os.PathLike[str], split: str = "test") -> RetrievalTask:
    """Read a BEIR-layout folder.

    Parameters
    ----------
    folder
        Holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
        ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``).
    split
        Which qrels file to read.

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If a file is not UTF-8, not valid JSON Lines, or the qrels are malformed.
    """
    root = Path(folder)
    files = {
        "corpus": root / "corpus.jsonl",
        "queries": root / "queries.jsonl",
        "qrels": root / "qrels" / f"{split}.tsv",
    }
    for name, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"BEIR folder {str(root)!r} lacks {path.relative_to(root)} ({name}); expected "
                "corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
            )
    corpus = _beir_corpus(files["corpus"])
    all_queries = {
        _record_id(r, files["queries"], i): str(r.get("text", ""))
        for i, r in read_jsonl(files["queries"])
    }
    qrels: dict[str, dict[str, int]] = {}
    lines = read_user_text(files["qrels"], "qrels file").splitlines()
    for lineno, line in enumerate(lines, start=1):
        parts = line.split("\t")
        if not line.strip() or (lineno == 1 and not parts[-1].strip().lstrip("-").isdigit()):
            continue  # blank line or header
        if len(parts) not in (3, 4):
            raise ValueError(
                f"{files['qrels']}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score', got "
                f"{line!r}"
            )
        qid, did, grade = parts[0], parts[-2], parts[-1]
        try:
            qrels.setdefault(qid, {})[did] = int(grade)
        except ValueError as exc:
            raise ValueError(
                f"{files['qrels']}:{lineno}: score {grade!r} is not an integer"
            ) from exc
    missing = sorted({q for q in qrels if q not in all_queries})
    if missing:
        raise ValueError(
            f"{files['qrels']} judges {len(missing)} queries missing from queries.jsonl, e.g. "
            f"{missing[:3]}"
        )
    if not qrels:
        raise ValueError(
            f"{files['qrels']} holds no relevance judgements; expected lines "
            "'query-id<TAB>corpus-id<TAB>score' (a header line is optional)"
        )
    queries = {q: all_queries[q] for q in qrels}
    return RetrievalTask(
        name=root.name,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        info={"source": str(root), "split": split},
    )


def load_documents(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Documents to index from a BEIR folder, a ``.jsonl`` file or text files.

    A folder holding ``corpus.jsonl`` is read as BEIR (title and text joined); a ``.jsonl`` file
    needs ``text`` and ``id``/``_id`` fields (``title`` is optional); anything else goes through
    :func:`eightfold.corpora.load_corpus` (a ``.txt`` file is split at blank lines, a folder gives
    one document per file). ``"stdlib-code"`` names the code-search corpus.

    Raises
    ------
    ValueError
        If a file is not UTF-8 (nothing is skipped silently).
    """
    text = str(path)
    if text == "stdlib-code":
        return code_search_task().documents()
    root = Path(text).expanduser()
    if root.is_dir() and (root / "corpus.jsonl").is_file():
        return list(_beir_corpus(root / "corpus.jsonl").items())
    if root.is_file() and root.suffix == ".jsonl":
        return list(_beir_corpus(root).items())
    from eightfold.corpora import load_corpus

    corpus = load_corpus(text, "all", on_decode_error="error")
    return [(doc.id, doc.text) for doc in corpus.documents]


# ---------------------------------------------------------------------------------------------
# Code search over the standard library


def _summary(docstring: str) -> str | None:
    line = docstring.strip().splitlines()[0].strip() if docstring.strip() else ""
    words = line.split()
    if len(words) < 3 or len(line) < 15 or not line[0].isalpha():
        return None
    return line


def _function_pairs(path: Path, module: str) -> list[tuple[str, str, str]]:
    """(id, summary, code without docstring) for every function with a docstring in a file."""
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (UnicodeDecodeError, SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                visit(child, f"{name}.")
                doc = ast.get_docstring(child)
                summary = _summary(doc) if doc else None
                first = child.body[0]
                if summary is None or child.end_lineno is None or first.end_lineno is None:
                    continue
                start = min([d.lineno for d in child.decorator_list] + [child.lineno]) - 1
                # Drop the docstring's lines; keep everything else of the function.
                kept = lines[start : first.lineno - 1] + lines[first.end_lineno : child.end_lineno]
                code = textwrap.dedent("\n".join(kept)).strip()
                if sum(1 for line in code.splitlines() if line.strip()) < 2:
                    continue  # a function that is only its docstring
                out.append((f"{module}:{name}", summary, code))

    visit(tree, "")
    return out


def code_search_task(
    *,
    max_documents: int | None = None,
    modules: Sequence[str] | None = None,
    seed: int = 0,
    use_cache: bool = True,
) -> RetrievalTask:
    """Code search over Python's standard library (one query per function).

    Parameters
    ----------
    max_documents
        Keep a fixed sample of this many functions (chosen by a hash of their id).
    modules
        Only these top-level modules or packages (e.g. ``["json", "email"]``), which is fast;
        default: the whole standard library (parsed once, then cached).
    seed
        Changes the sample.

    Returns
    -------
    RetrievalTask
        Query ``q:<id>`` = summary line, document ``<id>`` = code without docstring.
    """
    from eightfold.corpora import _module_name, stdlib_python_files

    settings = {
        "python": sys.version.split()[0],
        "modules": sorted(modules) if modules else None,
        "format": 1,
    }
    cache = cache_dir("retrieval") / f"codesearch-{settings_key(settings)}.json"
    pairs: list[list[str]]
    if use_cache and cache.is_file():
        pairs = json.loads(cache.read_text(encoding="utf-8"))
    else:
        t0 = time.perf_counter()
        wanted = set(modules) if modules else None
        pairs = []
        for path in stdlib_python_files():
            module = _module_name(path)
            if wanted is not None and module.split(".")[0] not in wanted:
                continue
            pairs.extend(list(p) for p in _function_pairs(path, module))
        if not pairs:
            raise ValueError(
                f"no documented functions found in modules {sorted(modules or [])}; pass names "
                "of standard-library modules such as 'json' or 'email'"
            )
        if use_cache:
            atomic_write_json(cache, pairs)
        logger.info(
            "code search: parsed %d functions in %.1f s", len(pairs), time.perf_counter() - t0
        )
    counts = Counter(summary.lower() for _, summary, _ in pairs)
    unique = [p for p in pairs if counts[p[1].lower()] == 1]
    ids_seen: set[str] = set()
    deduped = []
    for doc_id, summary, code in unique:
        if doc_id not in ids_seen:  # redefinitions (e.g. platform branches) keep the first
            ids_seen.add(doc_id)
            deduped.append((doc_id, summary, code))
    if max_documents is not None:
        deduped.sort(key=lambda p: hashlib.sha1(f"{seed}:{p[0]}".encode()).hexdigest())
        deduped = sorted(deduped[:max_documents])
    return RetrievalTask(
        name="stdlib code search",
        corpus={doc_id: code for doc_id, _, code in deduped},
        queries={f"q:{doc_id}": summary for doc_id, summary, _ in deduped},
        qrels={f"q:{doc_id}": {doc_id: 1} for doc_id, _, _ in deduped},
        info={"python": settings["python"], "functions": len(pairs)},
    )


def evaluate_index(
    index: Any,
    task: RetrievalTask,
    *,
    k: int = 100,
    mode: str = "auto",
    max_queries: int | None = None,
) -> dict[str, float]:
    """nDCG@10 and Recall@100 of an :class:`~eightfold.retrieval.Index` on a task.

    Documents of the task missing from the index count as not retrieved.
    """
    qids = list(task.queries)[:max_queries] if max_queries else list(task.queries)
    hits = index.search([task.queries[q] for q in qids], k=k, mode=mode)
    run = {qid: {h.id: h.score for h in result} for qid, result in zip(qids, hits, strict=True)}
    qrels = {q: task.qrels[q] for q in qids}
    return evaluate_run(run, qrels)
