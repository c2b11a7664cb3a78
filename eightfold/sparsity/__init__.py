"""N:M semi-structured sparsity: MaskLLM learnable masks and the magnitude, Wanda and SparseGPT
baselines, with export to Hugging Face folders.

>>> from eightfold.sparsity import MaskLLM, save_sparse
>>> result = MaskLLM(pattern="2:4", steps=200).apply_(model, calibration)   # doctest: +SKIP
>>> save_sparse(model, "out", masks=result.masks)                           # doctest: +SKIP
"""

from __future__ import annotations

from eightfold.sparsity.base import (
    ModuleCheck,
    NMCheckReport,
    NMPattern,
    Sparsifier,
    SparsityResult,
    apply_mask,
    apply_masks_,
    candidate_masks,
    check_masks,
    check_nm,
    find_linears,
    nm_mask_from_scores,
)
from eightfold.sparsity.export import (
    LoadedSparse,
    load_masks,
    load_sparse,
    masks_from_weights,
    read_mask_npz,
    save_sparse,
    to_semi_structured,
    write_mask_npz,
)
from eightfold.sparsity.magnitude import Magnitude
from eightfold.sparsity.maskllm import (
    MaskedLinear,
    MaskLLM,
    cosine_learning_rate,
    gumbel_softmax_sample,
    hard_masks_from_logits,
    linear_schedule,
    prior_logits,
)
from eightfold.sparsity.sparsegpt import SparseGPT, sparsegpt_prune
from eightfold.sparsity.wanda import Wanda, wanda_scores

METHODS: dict[str, type[Sparsifier]] = {
    "magnitude": Magnitude,
    "wanda": Wanda,
    "sparsegpt": SparseGPT,
    "maskllm": MaskLLM,
}

__all__ = [
    "METHODS",
    "LoadedSparse",
    "Magnitude",
    "MaskLLM",
    "MaskedLinear",
    "ModuleCheck",
    "NMCheckReport",
    "NMPattern",
    "SparseGPT",
    "Sparsifier",
    "SparsityResult",
    "Wanda",
    "apply_mask",
    "apply_masks_",
    "candidate_masks",
    "check_masks",
    "check_nm",
    "cosine_learning_rate",
    "find_linears",
    "gumbel_softmax_sample",
    "hard_masks_from_logits",
    "linear_schedule",
    "load_masks",
    "load_sparse",
    "masks_from_weights",
    "nm_mask_from_scores",
    "prior_logits",
    "read_mask_npz",
    "save_sparse",
    "sparsegpt_prune",
    "to_semi_structured",
    "wanda_scores",
    "write_mask_npz",
]
