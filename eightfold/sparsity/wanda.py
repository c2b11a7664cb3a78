"""Wanda (Sun et al., 2023, arXiv 2306.11695): weight magnitude times input activation norm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from eightfold.sparsity.base import Sparsifier, nm_mask_from_scores

__all__ = ["Wanda", "wanda_scores"]


class _InputNorms:
    """Running sum of squared inputs per input channel."""

    def __init__(self, in_features: int, device: torch.device) -> None:
        self.sum_sq = torch.zeros(in_features, dtype=torch.float64, device=device)
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        self.sum_sq += x.pow(2).sum(dim=0)
        self.tokens += x.shape[0]


def wanda_scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """Wanda importance ``|W_ij| * ||X_j||``.

    Parameters
    ----------
    weight
        ``(out_features, in_features)``.
    input_norms
        ``(in_features,)`` L2 norm of each input channel over the calibration tokens.
    """
    if input_norms.shape != (weight.shape[1],):
        raise ValueError(
            f"input_norms has shape {tuple(input_norms.shape)}; expected ({weight.shape[1]},), "
            "one norm per input feature"
        )
    return weight.abs().float() * input_norms.float().unsqueeze(0)


@dataclass(kw_only=True)
class Wanda(Sparsifier):
    """Wanda N:M pruning: score ``|W| * ||X_j||_2``, keep the best ``N`` of every ``M`` inputs.

    No weight update. Layers are pruned block by block on the calibration set; each linear's
    input norms come from one pass through its dense block, whose inputs are the outputs of the
    already-pruned blocks before it (``sequential=True``), as in the authors' code.
    """

    method_name: ClassVar[str] = "wanda"

    def _new_stats(self, linear: nn.Linear) -> Any:
        return _InputNorms(linear.in_features, linear.weight.device)

    def _add_batch(self, stats: Any, inputs: torch.Tensor) -> None:
        stats.add(inputs)

    def _prune(
        self, name: str, weight: torch.Tensor, stats: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        norms = (stats.sum_sq / max(stats.tokens, 1)).sqrt()
        return nm_mask_from_scores(wanda_scores(weight, norms), self.nm), None
