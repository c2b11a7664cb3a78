"""An on-disk multi-vector index with exact MaxSim search and a centroid candidate stage.

Layout of an index folder (format version 1)::

    manifest.json              format, version, encoder, pooling, shards, checksums
    shards/<name>/vectors.npy  (n_vectors, dim) float16, memory-mapped when searching
    shards/<name>/offsets.npy  (n_docs + 1,) int64: document i owns vectors[offsets[i]:offsets[i+1]]
    shards/<name>/ids.json     the document ids, in order
    shards/<name>/texts.jsonl  the document texts (optional)
    shards/<name>/codes.npy    (n_vectors,) int32 nearest centroid (when a candidate stage exists)
    centroids.npy              (n_centroids, dim) float32 (when a candidate stage exists)

Writes are atomic: a new index is built in a temporary folder and renamed into place; an append
writes a new shard folder first and the manifest last, so a reader sees the old index or the new
one. A lock file beside the index (``.<name>.lock``) keeps a second writer out; a lock left by a
process that died is detected and taken over, and the half-written leftovers of that process are
removed. Arrays are plain ``.npy`` files read with ``allow_pickle=False``.

Shards can be encoded in parallel (one process per part of the corpus, see
:meth:`Index.build` with ``shard`` and ``num_shards``) and joined with :meth:`Index.merge`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from eightfold.progress import progress
from eightfold.retrieval.encoder import EncoderConfig, MultiVectorEncoder
from eightfold.retrieval.pooling import PoolingConfig, pool_embeddings
from eightfold.retrieval.search import maxsim_flat
from eightfold.storage import atomic_dir, atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "VERSION",
    "Index",
    "IndexCorruptedError",
    "IndexLockedError",
    "SearchHit",
]

FORMAT = "eightfold-multivector-index"
VERSION = 1
SearchMode = Literal["auto", "exact", "candidates"]


class IndexCorruptedError(ValueError):
    """The index folder is damaged, incomplete or not an index."""


class IndexLockedError(FileExistsError):
    """Another process is writing the index."""


@dataclass(frozen=True)
class SearchHit:
    """One search result."""

    id: str
    score: float
    rank: int
    text: str | None = None


# ---------------------------------------------------------------------------------------------
# Documents


def _normalise_documents(documents: Any) -> tuple[list[str], list[str]]:
    """(ids, texts) from a list of texts, (id, text) pairs, dicts or objects with id/text."""
    if isinstance(documents, str | bytes):
        raise TypeError("documents must be a list of documents, not a single string")
    ids: list[str] = []
    texts: list[str] = []
    for i, doc in enumerate(documents):
        doc_id: Any
        text: Any
        if isinstance(doc, str):
            doc_id, text = str(i), doc
        elif isinstance(doc, tuple) and len(doc) == 2:
            doc_id, text = doc
        elif isinstance(doc, dict):
            doc_id, text = str(doc.get("id", doc.get("_id", i))), doc.get("text")
        elif hasattr(doc, "id") and hasattr(doc, "text"):
            doc_id, text = doc.id, doc.text
        else:
            raise TypeError(
                f"documents[{i}] is a {type(doc).__name__}; expected a str, an (id, text) pair, a "
                "dict with 'id' and 'text', or an object with .id and .text"
            )
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"document {doc_id!r} is not valid UTF-8 (byte {exc.start}); decode it first"
                ) from exc
        if not isinstance(text, str):
            raise TypeError(f"document {doc_id!r}: text must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(
                f"document {doc_id!r} is empty; remove empty documents before indexing"
            )
        ids.append(str(doc_id))
        texts.append(text)
    if not ids:
        raise ValueError("no documents given; an index needs at least one document")
    _check_unique(ids)
    return ids, texts


def _check_unique(ids: Sequence[str], existing: set[str] | None = None) -> None:
    seen: set[str] = set(existing or ())
    dupes = []
    for doc_id in ids:
        if doc_id in seen:
            dupes.append(doc_id)
        seen.add(doc_id)
    if dupes:
        shown = ", ".join(repr(d) for d in dupes[:5])
        where = "already in the index or repeated" if existing else "repeated"
        raise ValueError(
            f"{len(dupes)} document id(s) {where}: {shown}; document ids must be unique"
        )


# ---------------------------------------------------------------------------------------------
# Locking


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _write_lock(target: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``target``; take over a lock whose process has died."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    for _attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text())
            except (OSError, ValueError):
                owner = {}
            same_host = owner.get("host") == me["host"]
            pid = owner.get("pid")
            if same_host and isinstance(pid, int) and not _pid_alive(pid):
                logger.warning(
                    "index %s: removing the lock of process %d, which ended without releasing it",
                    target,
                    pid,
                )
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            raise IndexLockedError(
                f"index {str(target)!r} is being written by process {pid} on {owner.get('host')} "
                f"(lock file {str(lock)!r}); wait for it to finish. If no such process runs, "
                "remove the lock file."
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        # Holding the lock, nobody else is writing: whatever an interrupted writer left behind
        # (temporary folders, a shard the manifest never listed) can go.
        _remove_leftovers(target)
        break
    else:  # pragma: no cover - two takeovers in a row
        raise IndexLockedError(f"could not take the lock {lock}; retry")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _remove_leftovers(target: Path) -> None:
    """Temporary folders of an interrupted build, and shards no manifest lists."""
    for item in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(item, ignore_errors=True)
    shards = target / "shards"
    manifest = target / "manifest.json"
    if shards.is_dir() and manifest.is_file():
        try:
            listed = {s["name"] for s in json.loads(manifest.read_text())["shards"]}
        except (OSError, ValueError, KeyError, TypeError):
            return
        for item in shards.iterdir():
            if item.name not in listed and item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
                logger.warning("index %s: removed unfinished shard %s", target, item.name)


# ---------------------------------------------------------------------------------------------
# Files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


@dataclass
class _Shard:
    name: str
    vectors: np.ndarray  # (n_vectors, dim), float16 memmap or float32 in memory
    offsets: np.ndarray  # (n_docs + 1,) int64
    ids: list[str]
    codes: np.ndarray | None
    folder: Path

    @property
    def num_docs(self) -> int:
        return len(self.ids)


def _write_shard(
    folder: Path,
    ids: Sequence[str],
    texts: Sequence[str] | None,
    embeddings: Sequence[torch.Tensor],
) -> dict[str, Any]:
    """Write one shard folder; returns its manifest entry (without the name)."""
    folder.mkdir(parents=True, exist_ok=True)
    lengths = [int(e.shape[0]) for e in embeddings]
    if min(lengths) < 1:
        raise ValueError("every document needs at least one vector after pooling")
    vectors = torch.cat([e.detach().float() for e in embeddings]).numpy().astype(np.float16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    _save_npy(folder / "vectors.npy", vectors)
    _save_npy(folder / "offsets.npy", offsets)
    atomic_write_json(folder / "ids.json", list(ids))
    files = ["vectors.npy", "offsets.npy", "ids.json"]
    if texts is not None:
        lines = "".join(
            json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n"
            for i, t in zip(ids, texts, strict=True)
        )
        atomic_write_bytes(folder / "texts.jsonl", lines.encode("utf-8"))
        files.append("texts.jsonl")
    return {
        "num_docs": len(ids),
        "num_vectors": int(offsets[-1]),
        "files": {name: _sha256(folder / name) for name in files},
    }


# ---------------------------------------------------------------------------------------------
# Candidate stage


def _num_centroids(num_vectors: int) -> int:
    # About 2·sqrt(N) centroids, a power of two (PLAID uses 16·sqrt(N); fewer centroids keep
    # training and assignment cheap on CPU, and the exact rerank restores precision).
    return int(min(max(2 ** round(math.log2(max(2 * math.sqrt(num_vectors), 1))), 8), 8192))


def _assign(vectors: np.ndarray, centroids: np.ndarray, block: int = 1 << 15) -> np.ndarray:
    codes = np.empty(vectors.shape[0], dtype=np.int32)
    for start in range(0, vectors.shape[0], block):
        chunk = np.asarray(vectors[start : start + block], dtype=np.float32)
        codes[start : start + block] = np.argmax(chunk @ centroids.T, axis=1)
    return codes


def _train_centroids(shards: Sequence[_Shard], seed: int = 0, iterations: int = 8) -> np.ndarray:
    total = sum(s.vectors.shape[0] for s in shards)
    k = min(_num_centroids(total), total)
    rng = np.random.default_rng(seed)
    sample_size = min(total, 64 * k)
    picks = np.sort(rng.choice(total, size=sample_size, replace=False))
    parts, base = [], 0
    for shard in shards:
        n = shard.vectors.shape[0]
        local = picks[(picks >= base) & (picks < base + n)] - base
        parts.append(np.asarray(shard.vectors[local], dtype=np.float32))
        base += n
    sample = np.concatenate(parts)
    centroids = sample[rng.choice(sample_size, size=k, replace=False)].copy()
    # Spherical k-means: the vectors are unit-norm, so nearest centroid = largest dot product.
    for _ in range(iterations):
        codes = np.argmax(sample @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, codes, sample)
        counts = np.bincount(codes, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        centroids = centroids / np.maximum(norms, 1e-12)
    return centroids.astype(np.float32)


# ---------------------------------------------------------------------------------------------


class Index:
    """A multi-vector index on disk.

    Build one with :meth:`build` (texts) or :meth:`from_embeddings` (precomputed token vectors),
    open one with :meth:`load`, add documents with :meth:`add`, join parts with :meth:`merge`,
    and query with :meth:`search`.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        shards: list[_Shard],
        centroids: np.ndarray | None,
        encoder: MultiVectorEncoder | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._shards = shards
        self._centroids = centroids
        self._encoder = encoder
        self._texts: dict[str, str] | None = None
        self._ivf: tuple[np.ndarray, np.ndarray] | None = None
        self._refresh()

    def _refresh(self) -> None:
        self.ids: list[str] = [doc_id for s in self._shards for doc_id in s.ids]
        self._doc_base = np.cumsum([0] + [s.num_docs for s in self._shards]).astype(np.int64)
        self._ivf = None

    # ------------------------------------------------------------------ properties

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_vectors(self) -> int:
        return int(sum(s.vectors.shape[0] for s in self._shards))

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def pooling(self) -> PoolingConfig:
        return PoolingConfig.from_dict(self.manifest["pooling"])

    @property
    def has_candidate_stage(self) -> bool:
        return self._centroids is not None

    def nbytes(self) -> int:
        """Bytes of all files of the index on disk."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def doclens(self) -> np.ndarray:
        """``(n_docs,)`` vectors per document."""
        return np.concatenate([np.diff(s.offsets) for s in self._shards])

    @property
    def encoder(self) -> MultiVectorEncoder:
        """The query encoder, loaded from the manifest on first use."""
        if self._encoder is None:
            config = EncoderConfig(**self.manifest["encoder"]["config"])
            self._encoder = MultiVectorEncoder(config=config)
            if self._encoder.fingerprint != self.manifest["encoder"]["fingerprint"]:
                logger.warning(
                    "index %s was built with encoder weights %s; the model found now is %s "
                    "(results may be meaningless)",
                    self.path,
                    self.manifest["encoder"]["fingerprint"],
                    self._encoder.fingerprint,
                )
        return self._encoder

    def text(self, doc_id: str) -> str | None:
        """The stored text of a document (``None`` when texts were not stored)."""
        if self._texts is None:
            self._texts = {}
            for shard in self._shards:
                file = shard.folder / "texts.jsonl"
                if file.is_file():
                    for line in file.read_text(encoding="utf-8").splitlines():
                        record = json.loads(line)
                        self._texts[record["id"]] = record["text"]
        return self._texts.get(doc_id)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        documents: Any,
        out: str | os.PathLike[str],
        *,
        encoder: MultiVectorEncoder | EncoderConfig | None = None,
        pooling: PoolingConfig | None = None,
        shard_size: int = 10_000,
        store_text: bool = True,
        candidates: bool | None = None,
        overwrite: bool = False,
    ) -> Index:
        """Encode, pool and write documents to a new index folder.

        Parameters
        ----------
        documents
            Texts, ``(id, text)`` pairs, dicts with ``id``/``text`` or objects with ``.id`` and
            ``.text``. Ids must be unique; empty texts are refused.
        out
            The index folder; it must not exist unless ``overwrite``.
        encoder
            A :class:`MultiVectorEncoder` or its config (default: the bundled MiniLM).
        pooling
            Token pooling applied to every document (default: hierarchical, pool factor 2).
        shard_size
            Documents per shard.
        store_text
            Keep the texts in the index (for showing results).
        candidates
            Build the centroid candidate stage; ``None``: when the index holds at least 200,000
            vectors.
        overwrite
            Replace an existing index at ``out``.
        """
        ids, texts = _normalise_documents(documents)
        if isinstance(encoder, EncoderConfig):
            encoder = MultiVectorEncoder(config=encoder)
        encoder = encoder or MultiVectorEncoder()
        pooling = pooling or PoolingConfig()
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size={shard_size!r}; expected an integer >= 1")
        timings = {"encode_seconds": 0.0, "pool_seconds": 0.0}
        target = Path(out)
        with _write_lock(target):
            if target.exists() and not overwrite:
                raise FileExistsError(
                    f"index folder {str(target)!r} already exists; pass overwrite=True "
                    "(CLI: --overwrite) to replace it, or use Index.load(...).add(...) to append"
                )
            with atomic_dir(target, overwrite=True, kind="index") as tmp:
                entries: list[dict[str, Any]] = []
                for start in range(0, len(ids), shard_size):
                    part = slice(start, start + shard_size)
                    embeddings, unpooled = _encode_and_pool(encoder, texts[part], pooling, timings)
                    name = f"{len(entries):05d}"
                    entry = _write_shard(
                        tmp / "shards" / name,
                        ids[part],
                        texts[part] if store_text else None,
                        embeddings,
                    )
                    entry.update(name=name, unpooled_vectors=unpooled)
                    entries.append(entry)
                manifest = _new_manifest(encoder.describe(), pooling, entries, timings)
                atomic_write_json(tmp / "manifest.json", manifest)
                cls.load(tmp, in_memory=False)._finalise(candidates)
        return cls.load(target, encoder=encoder)

    @classmethod
    def from_embeddings(
        cls,
        ids: Sequence[str],
        embeddings: Sequence[torch.Tensor],
        out: str | os.PathLike[str],
        *,
        encoder: MultiVectorEncoder | dict[str, Any],
        pooling: PoolingConfig | None = None,
        pooled: bool = False,
        texts: Sequence[str] | None = None,
        shard_size: int = 10_000,
        candidates: bool | None = None,
        overwrite: bool = False,
    ) -> Index:
        """Write an index from token vectors computed elsewhere.

        Parameters
        ----------
        ids
            Unique document ids.
        embeddings
            One ``(n_tokens_i, dim)`` tensor per document, from ``encoder``.
        encoder
            The encoder that made them, or its :meth:`MultiVectorEncoder.describe` dict.
        pooling
            Pooling settings (default: hierarchical, factor 2).
        pooled
            ``True`` when ``embeddings`` are already pooled with ``pooling``.
        """
        ids = [str(i) for i in ids]
        if len(ids) != len(embeddings):
            raise ValueError(f"got {len(ids)} ids but {len(embeddings)} embeddings; pass one each")
        if not ids:
            raise ValueError("no documents given; an index needs at least one document")
        _check_unique(ids)
        description = encoder.describe() if isinstance(encoder, MultiVectorEncoder) else encoder
        pooling = pooling or PoolingConfig()
        timings = {"encode_seconds": 0.0, "pool_seconds": 0.0}
        target = Path(out)
        with _write_lock(target):
            if target.exists() and not overwrite:
                raise FileExistsError(
                    f"index folder {str(target)!r} already exists; pass overwrite=True to replace"
                )
            with atomic_dir(target, overwrite=True, kind="index") as tmp:
                entries: list[dict[str, Any]] = []
                for start in range(0, len(ids), shard_size):
                    part = list(embeddings[start : start + shard_size])
                    unpooled = sum(int(e.shape[0]) for e in part)
                    if not pooled:
                        t0 = time.perf_counter()
                        part = [pool_embeddings(e, config=pooling).vectors for e in part]
                        timings["pool_seconds"] += time.perf_counter() - t0
                    name = f"{len(entries):05d}"
                    entry = _write_shard(
                        tmp / "shards" / name,
                        ids[start : start + shard_size],
                        None if texts is None else texts[start : start + shard_size],
                        part,
                    )
                    entry.update(name=name, unpooled_vectors=unpooled)
                    entries.append(entry)
                atomic_write_json(
                    tmp / "manifest.json", _new_manifest(description, pooling, entries, timings)
                )
                cls.load(tmp, in_memory=False)._finalise(candidates)
        return cls.load(
            target, encoder=encoder if isinstance(encoder, MultiVectorEncoder) else None
        )

    def add(self, documents: Any, *, candidates: bool | None = None) -> Index:
        """Append documents as a new shard (encoded and pooled like the rest).

        The new shard is written first and the manifest last: if the process stops in between,
        the index is unchanged and the unfinished shard is removed by the next writer.
        """
        ids, texts = _normalise_documents(documents)
        _check_unique(ids, set(self.ids))
        encoder = self.encoder
        pooling = self.pooling
        timings = {"encode_seconds": 0.0, "pool_seconds": 0.0}
        with _write_lock(self.path):
            manifest = self._read_current_manifest()
            embeddings, unpooled = _encode_and_pool(encoder, texts, pooling, timings)
            name = _next_shard_name(manifest)
            tmp = self.path / "shards" / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            stores_text = any((s.folder / "texts.jsonl").is_file() for s in self._shards)
            entry = _write_shard(tmp, ids, texts if stores_text else None, embeddings)
            entry.update(name=name, unpooled_vectors=unpooled)
            if self._centroids is not None:
                vectors = np.load(tmp / "vectors.npy", mmap_mode="r", allow_pickle=False)
                _save_npy(tmp / "codes.npy", _assign(vectors, self._centroids))
                entry["files"]["codes.npy"] = _sha256(tmp / "codes.npy")
            os.replace(tmp, self.path / "shards" / name)
            manifest["shards"].append(entry)
            for key in timings:
                manifest["timings"][key] += timings[key]
            _update_totals(manifest)
            atomic_write_json(self.path / "manifest.json", manifest)
        fresh = Index.load(self.path, encoder=encoder)
        self.__dict__.update(fresh.__dict__)
        if candidates and not self.has_candidate_stage:
            self.build_candidate_stage()
        return self

    def build_candidate_stage(self) -> None:
        """Train centroids over all token vectors and store every vector's nearest one."""
        with _write_lock(self.path):
            self._finalise(True)
        self.__dict__.update(Index.load(self.path, encoder=self._encoder).__dict__)

    def _finalise(self, candidates: bool | None) -> None:
        """Write the candidate stage into this (locked or temporary) index folder."""
        want = candidates if candidates is not None else self.num_vectors >= 200_000
        if not want:
            return
        t0 = time.perf_counter()
        centroids = _train_centroids(self._shards)
        _save_npy(self.path / "centroids.npy", centroids)
        manifest = self._read_current_manifest()
        for shard, entry in zip(self._shards, manifest["shards"], strict=True):
            _save_npy(shard.folder / "codes.npy", _assign(shard.vectors, centroids))
            entry["files"]["codes.npy"] = _sha256(shard.folder / "codes.npy")
        manifest["candidates"] = {
            "centroids": int(centroids.shape[0]),
            "sha256": _sha256(self.path / "centroids.npy"),
            "seconds": time.perf_counter() - t0,
        }
        atomic_write_json(self.path / "manifest.json", manifest)
        logger.info(
            "candidate stage: %d centroids in %.1f s", centroids.shape[0], time.perf_counter() - t0
        )

    def _read_current_manifest(self) -> dict[str, Any]:
        manifest = _read_manifest(self.path)
        if [s["name"] for s in manifest["shards"]] != [s.name for s in self._shards]:
            raise IndexCorruptedError(
                f"index {str(self.path)!r} changed on disk since it was opened; load it again"
            )
        return manifest

    @classmethod
    def merge(
        cls,
        parts: Sequence[str | os.PathLike[str]],
        out: str | os.PathLike[str],
        *,
        candidates: bool | None = None,
        overwrite: bool = False,
    ) -> Index:
        """Join indexes built with the same encoder and pooling into one new index.

        Raises
        ------
        ValueError
            If the parts disagree on encoder or pooling, or share document ids.
        """
        if len(parts) < 1:
            raise ValueError("merge needs at least one index part")
        loaded = [cls.load(p) for p in parts]
        first = loaded[0].manifest
        for part in loaded[1:]:
            for key in ("encoder", "pooling", "dim"):
                if part.manifest[key] != first[key]:
                    raise ValueError(
                        f"cannot merge {str(part.path)!r}: its {key} differs from "
                        f"{str(loaded[0].path)!r}'s; build every part with the same settings"
                    )
        _check_unique([i for part in loaded for i in part.ids])
        target = Path(out)
        with _write_lock(target):
            if target.exists() and not overwrite:
                raise FileExistsError(
                    f"index folder {str(target)!r} already exists; pass overwrite=True to replace"
                )
            with atomic_dir(target, overwrite=True, kind="index") as tmp:
                entries: list[dict[str, Any]] = []
                timings = {"encode_seconds": 0.0, "pool_seconds": 0.0}
                for part in loaded:
                    for key in timings:
                        timings[key] += part.manifest["timings"][key]
                    for shard, entry in zip(part._shards, part.manifest["shards"], strict=True):
                        name = f"{len(entries):05d}"
                        dest = tmp / "shards" / name
                        dest.mkdir(parents=True)
                        for file in ("vectors.npy", "offsets.npy", "ids.json", "texts.jsonl"):
                            if (shard.folder / file).is_file():
                                shutil.copyfile(shard.folder / file, dest / file)
                        files = {k: v for k, v in entry["files"].items() if k != "codes.npy"}
                        entries.append({**entry, "name": name, "files": files})
                manifest = _new_manifest(
                    first["encoder"], PoolingConfig.from_dict(first["pooling"]), entries, timings
                )
                atomic_write_json(tmp / "manifest.json", manifest)
                cls.load(tmp, in_memory=False)._finalise(candidates)
        return cls.load(target)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder: MultiVectorEncoder | None = None,
        in_memory: bool = True,
        verify: bool = False,
    ) -> Index:
        """Open an index folder.

        Parameters
        ----------
        path
            The folder written by :meth:`build`.
        encoder
            The query encoder (default: rebuilt from the manifest on first text query).
        in_memory
            Read the vectors into memory as float32 (fast search, ``4 * dim`` bytes per vector)
            instead of memory-mapping the float16 files.
        verify
            Check the SHA-256 of every file against the manifest.

        Raises
        ------
        FileNotFoundError
            If the folder does not exist.
        IndexCorruptedError
            If it is not an index, from another format version, or damaged.
        """
        folder = Path(path)
        if folder.is_file():
            raise NotADirectoryError(
                f"index {str(folder)!r} is a file; expected the folder written by "
                "`eightfold index build`"
            )
        if not folder.is_dir():
            raise FileNotFoundError(f"index folder {str(folder)!r} does not exist")
        manifest = _read_manifest(folder)
        shards = []
        for entry in manifest["shards"]:
            shard_dir = folder / "shards" / entry["name"]
            for file, digest in entry["files"].items():
                if not (shard_dir / file).is_file():
                    raise IndexCorruptedError(
                        f"index {str(folder)!r} is missing shards/{entry['name']}/{file}; rebuild "
                        "the index"
                    )
                if verify and _sha256(shard_dir / file) != digest:
                    raise IndexCorruptedError(
                        f"index {str(folder)!r}: shards/{entry['name']}/{file} does not match its "
                        "checksum; the file is damaged, rebuild the index"
                    )
            try:
                vectors = np.load(shard_dir / "vectors.npy", mmap_mode="r", allow_pickle=False)
                offsets = np.load(shard_dir / "offsets.npy", allow_pickle=False)
                ids = json.loads((shard_dir / "ids.json").read_text(encoding="utf-8"))
                codes = (
                    np.load(shard_dir / "codes.npy", allow_pickle=False)
                    if "codes.npy" in entry["files"]
                    else None
                )
            except (OSError, ValueError) as exc:
                raise IndexCorruptedError(
                    f"index {str(folder)!r}: cannot read shard {entry['name']} ({exc}); rebuild "
                    "the index"
                ) from exc
            _check_shard(folder, entry, manifest["dim"], vectors, offsets, ids, codes)
            if in_memory:
                vectors = np.asarray(vectors, dtype=np.float32)
            shards.append(_Shard(entry["name"], vectors, offsets, ids, codes, shard_dir))
        centroids = None
        if manifest.get("candidates"):
            file = folder / "centroids.npy"
            if not file.is_file():
                raise IndexCorruptedError(f"index {str(folder)!r} is missing centroids.npy")
            if verify and _sha256(file) != manifest["candidates"]["sha256"]:
                raise IndexCorruptedError(f"index {str(folder)!r}: centroids.npy is damaged")
            centroids = np.load(file, allow_pickle=False)
        return cls(folder, manifest, shards, centroids, encoder)

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: str | Sequence[str],
        k: int = 10,
        *,
        mode: SearchMode = "auto",
        n_probe: int = 8,
        n_rerank: int | None = None,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """The ``k`` best documents for a query (or for each of several queries).

        Parameters
        ----------
        queries
            One query string, or a list of them.
        k
            Results per query (fewer when the index holds fewer documents).
        mode
            ``"exact"``: MaxSim against every document. ``"candidates"``: documents from the
            ``n_probe`` nearest centroids of each query token, ranked by centroid MaxSim, the
            best ``n_rerank`` scored exactly. ``"auto"``: candidates when the index has a
            candidate stage, else exact.
        """
        single = isinstance(queries, str)
        texts = [queries] if single else list(queries)
        vectors = self.encoder.encode_queries(texts)  # type: ignore[arg-type]
        results = self.search_vectors(vectors, k, mode=mode, n_probe=n_probe, n_rerank=n_rerank)
        return results[0] if single else results

    def search_vectors(
        self,
        queries: Sequence[torch.Tensor | np.ndarray],
        k: int = 10,
        *,
        mode: SearchMode = "auto",
        n_probe: int = 8,
        n_rerank: int | None = None,
        with_text: bool = True,
    ) -> list[list[SearchHit]]:
        """As :meth:`search`, for query token vectors ``(q_len_i, dim)``."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r}; expected an integer >= 1")
        if mode not in ("auto", "exact", "candidates"):
            raise ValueError(f"mode={mode!r}; expected 'auto', 'exact' or 'candidates'")
        if mode == "candidates" and self._centroids is None:
            raise ValueError(
                f"index {str(self.path)!r} has no candidate stage; build it with "
                "index.build_candidate_stage() (CLI: index build --candidates) or search with "
                "mode='exact'"
            )
        qs = []
        for i, q in enumerate(queries):
            array = q.detach().float().cpu().numpy() if isinstance(q, torch.Tensor) else q
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 2 or array.shape[1] != self.dim or array.shape[0] == 0:
                raise ValueError(
                    f"query {i} has shape {array.shape}; expected (n_tokens >= 1, {self.dim})"
                )
            qs.append(array)
        use_candidates = mode == "candidates" or (mode == "auto" and self._centroids is not None)
        out = []
        for q in qs:
            if use_candidates:
                docs, scores = self._candidate_search(q, k, n_probe, n_rerank)
            else:
                scores_all = self.exact_scores([q])[0]
                docs = _top(scores_all, k)
                scores = scores_all[docs]
            out.append(
                [
                    SearchHit(
                        id=self.ids[d],
                        score=float(s),
                        rank=r + 1,
                        text=self.text(self.ids[d]) if with_text else None,
                    )
                    for r, (d, s) in enumerate(zip(docs, scores, strict=True))
                ]
            )
        return out

    def exact_scores(self, queries: Sequence[np.ndarray]) -> np.ndarray:
        """MaxSim of every query against every document.

        Parameters
        ----------
        queries
            Query token vectors, each ``(q_len_i, dim)`` float32.

        Returns
        -------
        numpy.ndarray
            ``(n_queries, n_docs)`` float32, documents in :attr:`ids` order.
        """
        return np.concatenate(
            [maxsim_flat(queries, s.vectors, s.offsets) for s in self._shards], axis=1
        )

    def _inverted_lists(self) -> tuple[np.ndarray, np.ndarray]:
        """For every centroid, the (global) documents with a vector assigned to it (CSR)."""
        if self._ivf is None:
            pairs = []
            for shard, base in zip(self._shards, self._doc_base, strict=False):
                assert shard.codes is not None
                doc_of_vector = np.repeat(np.arange(shard.num_docs) + base, np.diff(shard.offsets))
                pairs.append(shard.codes.astype(np.int64) * len(self.ids) + doc_of_vector)
            keys = np.unique(np.concatenate(pairs))
            assert self._centroids is not None
            cells = keys // len(self.ids)
            docs = keys % len(self.ids)
            starts = np.searchsorted(cells, np.arange(self._centroids.shape[0] + 1))
            self._ivf = (starts, docs)
        return self._ivf

    def _candidate_search(
        self, q: np.ndarray, k: int, n_probe: int, n_rerank: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._centroids is not None
        starts, ivf_docs = self._inverted_lists()
        centroid_scores = q @ self._centroids.T  # (q_len, n_centroids)
        n_probe = max(1, min(n_probe, centroid_scores.shape[1]))
        probe = np.argpartition(-centroid_scores, n_probe - 1, axis=1)[:, :n_probe]
        cells = np.unique(probe)
        candidates = np.unique(np.concatenate([ivf_docs[starts[c] : starts[c + 1]] for c in cells]))

        # Centroid interaction: each candidate vector stands in for its centroid, so the
        # approximate MaxSim needs only table lookups.
        rerank = n_rerank if n_rerank is not None else max(8 * k, 256)
        if candidates.size > rerank:
            approx = np.empty(candidates.size, dtype=np.float32)
            table = centroid_scores.T  # (n_centroids, q_len)
            for shard, base, (lo, hi) in self._by_shard(candidates):
                local = candidates[lo:hi] - base
                idx, seg = _gather_ranges(shard.offsets, local)
                sims = table[shard.codes[idx]]  # type: ignore[index]
                approx[lo:hi] = np.maximum.reduceat(sims, seg, axis=0).sum(1)
            candidates = candidates[_top(approx, rerank)]
            candidates.sort()

        exact = np.empty(candidates.size, dtype=np.float32)
        for shard, base, (lo, hi) in self._by_shard(candidates):
            local = candidates[lo:hi] - base
            idx, seg = _gather_ranges(shard.offsets, local)
            vecs = np.asarray(shard.vectors[idx], dtype=np.float32)
            offsets = np.append(seg, idx.size)
            exact[lo:hi] = maxsim_flat([q], vecs, offsets)[0]
        best = _top(exact, k)
        return candidates[best], exact[best]

    def _by_shard(self, docs: np.ndarray) -> Iterator[tuple[_Shard, int, tuple[int, int]]]:
        """Split sorted global document numbers by shard."""
        bounds = np.searchsorted(docs, self._doc_base)
        for i, shard in enumerate(self._shards):
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            if hi > lo:
                yield shard, int(self._doc_base[i]), (lo, hi)


def _gather_ranges(offsets: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vector rows of ``docs`` back to back, and where each document starts in them."""
    lengths = offsets[docs + 1] - offsets[docs]
    seg = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    idx = np.repeat(offsets[docs] - seg, lengths) + np.arange(int(lengths.sum()))
    return idx, seg


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first (ties broken by position)."""
    k = min(k, scores.size)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    return part[np.lexsort((part, -scores[part]))]


def _encode_and_pool(
    encoder: MultiVectorEncoder,
    texts: Sequence[str],
    pooling: PoolingConfig,
    timings: dict[str, float],
) -> tuple[list[torch.Tensor], int]:
    t0 = time.perf_counter()
    embeddings = encoder.encode_documents(texts)
    timings["encode_seconds"] += time.perf_counter() - t0
    unpooled = sum(int(e.shape[0]) for e in embeddings)
    t0 = time.perf_counter()
    with progress("pooling", total=len(embeddings)) as update:
        pooled = []
        for e in embeddings:
            pooled.append(pool_embeddings(e, config=pooling).vectors)
            update(1)
    timings["pool_seconds"] += time.perf_counter() - t0
    return pooled, unpooled


def _new_manifest(
    encoder: dict[str, Any],
    pooling: PoolingConfig,
    shards: list[dict[str, Any]],
    timings: dict[str, float],
) -> dict[str, Any]:
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encoder": encoder,
        "pooling": pooling.to_dict(),
        "dim": int(encoder["dim"]),
        "dtype": "float16",
        "shards": shards,
        "candidates": None,
        "timings": dict(timings),
    }
    _update_totals(manifest)
    return manifest


def _update_totals(manifest: dict[str, Any]) -> None:
    manifest["num_docs"] = sum(s["num_docs"] for s in manifest["shards"])
    manifest["num_vectors"] = sum(s["num_vectors"] for s in manifest["shards"])
    manifest["unpooled_vectors"] = sum(s["unpooled_vectors"] for s in manifest["shards"])


def _next_shard_name(manifest: dict[str, Any]) -> str:
    numbers = [int(s["name"]) for s in manifest["shards"] if s["name"].isdigit()]
    return f"{max(numbers, default=-1) + 1:05d}"


def _read_manifest(folder: Path) -> dict[str, Any]:
    file = folder / "manifest.json"
    if not file.is_file():
        raise IndexCorruptedError(
            f"{str(folder)!r} is not an eightfold index (no manifest.json); build one with "
            "`eightfold index build`"
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptedError(
            f"index {str(folder)!r}: manifest.json is unreadable ({exc}); rebuild the index"
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorruptedError(
            f"{str(folder)!r} is not an eightfold multi-vector index (format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r})"
        )
    version = manifest.get("version")
    if version != VERSION:
        newer = isinstance(version, int) and version > VERSION
        raise IndexCorruptedError(
            f"index {str(folder)!r} has format version {version!r}; this eightfold reads version "
            f"{VERSION}. "
            + ("Upgrade eightfold to read it." if newer else "Rebuild the index with this version.")
        )
    for key in ("encoder", "pooling", "dim", "shards"):
        if key not in manifest:
            raise IndexCorruptedError(f"index {str(folder)!r}: manifest.json lacks {key!r}")
    return manifest


def _check_shard(
    folder: Path,
    entry: dict[str, Any],
    dim: int,
    vectors: np.ndarray,
    offsets: np.ndarray,
    ids: list[str],
    codes: np.ndarray | None,
) -> None:
    problems = []
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        problems.append(f"vectors have shape {vectors.shape}, expected (n, {dim})")
    if vectors.shape[0] != entry["num_vectors"]:
        problems.append(f"{vectors.shape[0]} vectors, manifest says {entry['num_vectors']}")
    if len(ids) != entry["num_docs"] or offsets.shape != (len(ids) + 1,):
        problems.append(
            f"{len(ids)} ids and {offsets.shape[0]} offsets for {entry['num_docs']} documents"
        )
    elif offsets[0] != 0 or offsets[-1] != vectors.shape[0] or np.any(np.diff(offsets) < 1):
        problems.append("document offsets are inconsistent with the vectors")
    if codes is not None and codes.shape != (vectors.shape[0],):
        problems.append("centroid codes do not match the vectors")
    if problems:
        raise IndexCorruptedError(
            f"index {str(folder)!r}, shard {entry['name']}: "
            + "; ".join(problems)
            + ". Rebuild the index."
        )
