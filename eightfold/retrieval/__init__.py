"""Multi-vector (late-interaction) retrieval with token pooling.

Token-level embeddings from any Hugging Face encoder (:class:`MultiVectorEncoder`), token pooling
(:func:`pool_embeddings`, Clavié et al., arXiv:2409.14683), an on-disk sharded index with exact
MaxSim search and a centroid candidate stage (:class:`Index`), BEIR-layout evaluation and a code
search task built from Python's standard library.
"""

from __future__ import annotations

from eightfold.retrieval.encoder import DEFAULT_MODEL, EncoderConfig, MultiVectorEncoder
from eightfold.retrieval.index import (
    Index,
    IndexCorruptedError,
    IndexLockedError,
    SearchHit,
)
from eightfold.retrieval.pooling import (
    PooledEmbeddings,
    PoolingConfig,
    pool_embeddings,
    pool_embeddings_sweep,
    ward_linkage,
)
from eightfold.retrieval.search import maxsim, maxsim_flat, maxsim_padded

__all__ = [
    "DEFAULT_MODEL",
    "EncoderConfig",
    "Index",
    "IndexCorruptedError",
    "IndexLockedError",
    "MultiVectorEncoder",
    "PooledEmbeddings",
    "PoolingConfig",
    "SearchHit",
    "maxsim",
    "maxsim_flat",
    "maxsim_padded",
    "pool_embeddings",
    "pool_embeddings_sweep",
    "ward_linkage",
]
