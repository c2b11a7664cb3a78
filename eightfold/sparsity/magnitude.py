"""Magnitude pruning to an N:M pattern: keep the largest ``|W|`` of every group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from eightfold.sparsity.base import Sparsifier, nm_mask_from_scores

__all__ = ["Magnitude"]


@dataclass(kw_only=True)
class Magnitude(Sparsifier):
    """Keep the ``N`` largest-magnitude weights of every ``M`` consecutive inputs.

    The data-free baseline of every N:M paper; needs no calibration.

    Examples
    --------
    >>> from eightfold.models import tiny_causal_lm
    >>> result = Magnitude(pattern="2:4").apply_(tiny_causal_lm())
    >>> len(result.masks) > 0
    True
    """

    method_name: ClassVar[str] = "magnitude"
    needs_calibration: ClassVar[bool] = False

    def _prune(
        self, name: str, weight: torch.Tensor, stats: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return nm_mask_from_scores(weight.abs().float(), self.nm), None
