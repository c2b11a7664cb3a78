"""Build a long-context method by name, for the CLI, the demo and the benchmark."""

from __future__ import annotations

from eightfold.longcontext.gemfilter import GemFilter
from eightfold.longcontext.generation import FullAttention, LongContextMethod
from eightfold.longcontext.h2o import H2O
from eightfold.longcontext.snapkv import SnapKV

__all__ = ["METHOD_NAMES", "make_method"]

METHOD_NAMES = ("gemfilter", "snapkv", "h2o", "full")


def make_method(
    name: str,
    *,
    topk: int = 1024,
    filter_layer: int | None = None,
    window: int = 32,
    keep_last: int = 0,
) -> LongContextMethod:
    """A method by name; ``topk`` is GemFilter's kept tokens and SnapKV / H2O's cache budget.

    Raises
    ------
    ValueError
        For an unknown name or invalid settings.
    """
    key = name.lower()
    if key == "gemfilter":
        return GemFilter(filter_layer=filter_layer, topk=topk, keep_last=keep_last)
    if key == "snapkv":
        return SnapKV(budget=topk, window=min(window, topk))
    if key == "h2o":
        return H2O(budget=topk, window=min(window, topk))
    if key == "full":
        return FullAttention()
    raise ValueError(f"method {name!r} is unknown; expected one of {', '.join(METHOD_NAMES)}")
