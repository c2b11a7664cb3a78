"""Long-context methods: prompt-time token and KV-cache selection.

* :class:`GemFilter` (arXiv:2409.17422): select input tokens at an early layer, rerun on them.
* :class:`SnapKV` (arXiv:2404.14469): compress each layer's KV cache by observation-window votes.
* :class:`H2O` (arXiv:2306.14048): keep heavy hitters by accumulated attention, prefill-only.
* :class:`FullAttention`: the uncompressed reference with the same interface.
"""

from __future__ import annotations

from eightfold.longcontext.base import SUPPORTED_MODEL_TYPES, avg_pool_scores
from eightfold.longcontext.gemfilter import (
    DEFAULT_FILTER_LAYERS,
    GemFilter,
    default_filter_layer,
    last_query_scores,
)
from eightfold.longcontext.generation import (
    FullAttention,
    LongContextMethod,
    PrefillOutput,
    greedy_decode_official,
)
from eightfold.longcontext.h2o import H2O, accumulated_attention
from eightfold.longcontext.kvcache import KVCacheCompressor
from eightfold.longcontext.registry import METHOD_NAMES, make_method
from eightfold.longcontext.snapkv import SnapKV, snapkv_votes

__all__ = [
    "DEFAULT_FILTER_LAYERS",
    "H2O",
    "METHOD_NAMES",
    "SUPPORTED_MODEL_TYPES",
    "FullAttention",
    "GemFilter",
    "KVCacheCompressor",
    "LongContextMethod",
    "PrefillOutput",
    "SnapKV",
    "accumulated_attention",
    "avg_pool_scores",
    "default_filter_layer",
    "greedy_decode_official",
    "last_query_scores",
    "make_method",
    "snapkv_votes",
]
