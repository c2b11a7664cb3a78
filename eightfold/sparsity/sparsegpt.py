"""SparseGPT (Frantar & Alistarh, 2023, arXiv 2301.00774) in its N:M mode.

Per linear layer it minimises ``||W X - W_hat X||^2`` under the N:M pattern: columns are swept left
to right, each group of ``M`` columns is scored with ``w^2 / U_cc^2`` (``U`` the upper Cholesky
factor of the damped inverse Hessian) and the error of each pruned column is spread over the
columns not yet visited (the optimal-brain-surgeon update), in lazy blocks for speed.

The mask-only variant (``update_weights=False``) scores with the same saliency on the original
weights and never changes them; it is the prior MaskLLM's authors start from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from eightfold.sparsity.base import NMPattern, Sparsifier

logger = logging.getLogger(__name__)

__all__ = ["SparseGPT", "sparsegpt_prune"]


class _Hessian:
    """Running ``H = (2 / tokens) * sum x x^T`` over a linear's inputs."""

    def __init__(self, in_features: int, device: torch.device) -> None:
        # fp32, as in the reference implementation: fp64 matmuls are slow on most GPUs.
        self.sum = torch.zeros(in_features, in_features, dtype=torch.float32, device=device)
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.sum += x.T @ x
        self.tokens += x.shape[0]

    def value(self) -> torch.Tensor:
        return 2.0 * self.sum / max(self.tokens, 1)


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    pattern: str | NMPattern = "2:4",
    *,
    blocksize: int = 128,
    damp: float = 0.01,
    update_weights: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune one weight matrix to N:M with SparseGPT.

    Parameters
    ----------
    weight
        ``(out_features, in_features)``; not modified.
    hessian
        ``(in_features, in_features)`` layer Hessian ``2 X X^T / n`` from calibration inputs.
    pattern
        The N:M pattern.
    blocksize
        Columns per lazy-update block (a multiple of ``M``); it changes speed, not the result.
    damp
        Added to the Hessian's diagonal as ``damp * mean(diag H)``.
    update_weights
        Spread each pruned column's error over the later columns (SparseGPT); ``False`` gives the
        mask-only variant on the original weights.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The new weight (``weight``'s dtype, pruned entries ``+0.0``) and the boolean mask
        (``True`` = kept), both ``(out_features, in_features)``.
    """
    nm = NMPattern.parse(pattern)
    rows, cols = weight.shape
    if hessian.shape != (cols, cols):
        raise ValueError(
            f"hessian has shape {tuple(hessian.shape)}; expected ({cols}, {cols}) for a weight "
            f"with {cols} input features"
        )
    if blocksize < nm.m or blocksize % nm.m:
        raise ValueError(
            f"blocksize={blocksize}; expected a positive multiple of M={nm.m} so no group "
            "straddles two blocks"
        )
    if damp < 0:
        raise ValueError(f"damp={damp}; expected a non-negative fraction of mean(diag H)")

    W = weight.detach().float().clone()
    H = hessian.detach().float().clone()

    # Inputs that never fire carry no information: fix their Hessian entry, zero their weights.
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype, device=H.device)

    # U: upper Cholesky factor of H^-1. Row i of U gives the update that removes column i once
    # columns < i are fixed.
    try:
        U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except torch.linalg.LinAlgError as exc:
        raise ValueError(
            f"the damped Hessian is not positive definite (damp={damp}); raise damp or use more "
            "calibration samples"
        ) from exc

    pruned = torch.zeros(rows, cols, dtype=torch.bool, device=W.device)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        pruned1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            if i % nm.m == 0:
                # Score the group with its current (already updated) weights.
                saliency = W1[:, i : i + nm.m] ** 2 / torch.diag(U1)[i : i + nm.m].unsqueeze(0) ** 2
                drop = torch.topk(saliency, nm.m - nm.n, dim=1, largest=False).indices
                pruned1.scatter_(1, i + drop, True)
            w = W1[:, i]
            q = torch.where(pruned1[:, i], torch.zeros_like(w), w)
            Q1[:, i] = q
            err = (w - q) / U1[i, i]
            if update_weights:
                W1[:, i:] -= err.unsqueeze(1) @ U1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = pruned1
        if update_weights:
            W[:, i2:] -= Err1 @ U[i1:i2, i2:]

    keep = ~pruned
    if not update_weights:
        W = weight.detach().float()
    new_weight = torch.where(keep, W, torch.zeros((), dtype=W.dtype, device=W.device))
    return new_weight.to(weight.dtype), keep


@dataclass(kw_only=True)
class SparseGPT(Sparsifier):
    """SparseGPT N:M pruning with its weight update.

    Parameters
    ----------
    blocksize
        Lazy-update block size (128 as in the paper; it does not change the result).
    damp
        Diagonal damping as a fraction of ``mean(diag H)`` (0.01).
    update_weights
        ``False`` gives the mask-only variant (MaskLLM's prior): SparseGPT's saliency, original
        weights.

    Notes
    -----
    Columns are visited in their natural order (no activation ordering). All linears of a block
    share one calibration pass through the dense block; with ``sequential=True`` (default) each
    block then sees the outputs of the already-pruned blocks before it.
    """

    blocksize: int = 128
    damp: float = 0.01
    update_weights: bool = True

    method_name: ClassVar[str] = "sparsegpt"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            not isinstance(self.blocksize, int)
            or self.blocksize < self.nm.m
            or (self.blocksize % self.nm.m)
        ):
            raise ValueError(
                f"blocksize={self.blocksize!r}; expected a positive multiple of M={self.nm.m}"
            )
        if self.damp < 0:
            raise ValueError(f"damp={self.damp}; expected a non-negative number such as 0.01")

    def _new_stats(self, linear: nn.Linear) -> Any:
        return _Hessian(linear.in_features, linear.weight.device)

    def _add_batch(self, stats: Any, inputs: torch.Tensor) -> None:
        stats.add(inputs)

    def _prune(
        self, name: str, weight: torch.Tensor, stats: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        new_weight, keep = sparsegpt_prune(
            weight,
            stats.value(),
            self.nm,
            blocksize=self.blocksize,
            damp=self.damp,
            update_weights=self.update_weights,
        )
        return keep, (new_weight if self.update_weights else None)
