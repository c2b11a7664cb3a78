"""Saving and loading N:M sparse models and masks.

``save_sparse`` writes an ordinary Hugging Face folder (``config.json`` + safetensors) whose
masked linears hold exact zeros (``+0.0``, never ``-0.0``) and whose embeddings, norms and output
head are untouched, plus:

``mask_compressed.npz``
    The masks in the layout of MaskLLM's published mask files: one entry ``<module>.weight.mask``
    per masked linear holding ``numpy.packbits`` of the flattened mask (numpy's default
    big-endian bit order), written with ``numpy.savez_compressed``. One bit per weight.
``sparsity.json``
    The pattern, the method, and each masked module's shape.

Such a folder is what TensorRT-LLM (``trtllm-build --weight_sparsity``), NVIDIA Model Optimizer,
llm-compressor and ``torch.sparse.to_sparse_semi_structured`` (see :func:`to_semi_structured`)
take as input; ``transformers`` loads it as a dense model. There is no speed-up on CPU.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eightfold.sparsity.base import (
    NMCheckReport,
    NMPattern,
    apply_mask,
    check_masks,
    check_nm,
    find_linears,
    group_view,
)
from eightfold.storage import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = [
    "MASKS_FILE",
    "SPARSITY_FILE",
    "LoadedSparse",
    "load_logits",
    "load_masks",
    "load_sparse",
    "masks_from_weights",
    "read_mask_npz",
    "save_sparse",
    "to_semi_structured",
    "write_mask_npz",
]

MASKS_FILE = "mask_compressed.npz"
SPARSITY_FILE = "sparsity.json"
LOGITS_FILE = "logits.safetensors"
_MASK_SUFFIX = ".weight.mask"


# ---------------------------------------------------------------------------------------------
# Mask files


def write_mask_npz(path: str | os.PathLike[str], masks: Mapping[str, torch.Tensor]) -> Path:
    """Write masks as MaskLLM's ``mask_compressed.npz`` (big-endian packed bits), atomically.

    Parameters
    ----------
    masks
        Module name -> boolean ``(out_features, in_features)`` mask.
    """
    import io

    from eightfold.storage import atomic_write_bytes

    arrays = {
        f"{name}{_MASK_SUFFIX}": np.packbits(mask.detach().cpu().bool().numpy().reshape(-1))
        for name, mask in masks.items()
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return atomic_write_bytes(path, buffer.getvalue())


def read_mask_npz(
    path: str | os.PathLike[str], shapes: Mapping[str, Sequence[int]]
) -> dict[str, torch.Tensor]:
    """Read a ``mask_compressed.npz`` back into boolean masks of the given shapes.

    Parameters
    ----------
    shapes
        Module name -> weight shape (a packed file does not record shapes).
    """
    out = {}
    with np.load(Path(path), allow_pickle=False) as data:
        keys = set(data.files)
        for name, shape in shapes.items():
            key = f"{name}{_MASK_SUFFIX}"
            if key not in keys:
                raise ValueError(
                    f"mask file {str(path)!r} has no entry {key!r}; it holds "
                    f"{len(keys)} entries such as {sorted(keys)[:3]}"
                )
            count = int(np.prod(shape))
            bits = np.unpackbits(data[key], count=count)
            if bits.size != count:
                raise ValueError(
                    f"mask {key!r} in {str(path)!r} holds {bits.size} bits; the weight has "
                    f"{count} entries (shape {tuple(shape)})"
                )
            out[name] = torch.from_numpy(bits.astype(bool)).view(*shape)
    return out


def _read_sparsity_json(folder: Path) -> dict[str, Any]:
    path = folder / SPARSITY_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no {SPARSITY_FILE}; pass a folder written by save_sparse"
        )
    meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return meta


def load_masks(
    path: str | os.PathLike[str], shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, torch.Tensor]:
    """Load masks from a ``save_sparse`` folder or a ``mask_compressed.npz`` file.

    Parameters
    ----------
    path
        A folder holding ``sparsity.json`` and ``mask_compressed.npz``, or an ``.npz`` file
        (then ``shapes`` is required unless a ``sparsity.json`` lies beside it).
    shapes
        Module name -> weight shape; defaults to the shapes recorded in ``sparsity.json``.
    """
    target = Path(path)
    folder = target if target.is_dir() else target.parent
    file = target / MASKS_FILE if target.is_dir() else target
    if not file.is_file():
        raise FileNotFoundError(
            f"no mask file at {str(file)!r}; pass a folder written by save_sparse or a "
            f"{MASKS_FILE} file"
        )
    if shapes is None:
        if not (folder / SPARSITY_FILE).is_file():
            raise ValueError(
                f"{str(file)!r} does not record the weights' shapes; pass shapes= (module name "
                "-> weight shape) or keep the sparsity.json written beside it"
            )
        shapes = {k: tuple(v) for k, v in _read_sparsity_json(folder)["modules"].items()}
    return read_mask_npz(file, shapes)


def load_logits(path: str | os.PathLike[str]) -> dict[str, torch.Tensor] | None:
    """MaskLLM logits from a checkpoint folder (or its ``logits.safetensors``); ``None`` if
    ``path`` holds none."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    target = Path(path)
    file = target / LOGITS_FILE if target.is_dir() else target
    if not file.is_file() or file.suffix != ".safetensors":
        return None
    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != "maskllm-logits":
        return None
    return load_file(str(file))


# ---------------------------------------------------------------------------------------------
# Whole models


def masks_from_weights(
    model: nn.Module, pattern: str | NMPattern = "2:4", targets: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Recover masks from already-pruned weights: the ``N`` largest ``|w|`` of each group.

    Raises
    ------
    ValueError
        If a group holds more than ``N`` non-zeros (the model is not N:M sparse).
    """
    nm = NMPattern.parse(pattern)
    masks = {}
    for name, linear in find_linears(model, targets).items():
        weight = linear.weight.detach()
        groups = group_view(weight, nm.m, name)
        over = int(((groups != 0).sum(dim=1) > nm.n).sum())
        if over:
            raise ValueError(
                f"module {name!r} is not {nm} sparse ({over} groups hold more than {nm.n} "
                "non-zeros); sparsify the model first or pass its masks"
            )
        kept = torch.topk(groups.abs().float(), nm.n, dim=1).indices
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, kept, True)
        masks[name] = mask.view_as(weight).cpu()
    return masks


def save_sparse(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    pattern: str | NMPattern = "2:4",
    tokenizer: Any = None,
    method: str | None = None,
    targets: Sequence[str] | None = None,
) -> Path:
    """Write an N:M sparse model as a Hugging Face folder with exact zeros and its masks.

    The model is not modified: pruned entries are written as ``+0.0`` into the saved copy.

    Parameters
    ----------
    model
        A Hugging Face model (``save_pretrained``) whose masked linears are already pruned.
    folder
        Output folder (replaced atomically).
    masks
        Module name -> boolean mask; default: recovered from the weights.
    pattern
        The N:M pattern every mask must follow.
    tokenizer
        Saved beside the model when given.
    method
        Recorded in ``sparsity.json``.

    Raises
    ------
    ValueError
        If a mask breaks the pattern or a weight is non-zero where its mask prunes.
    """
    nm = NMPattern.parse(pattern)
    if masks is None:
        masks = masks_from_weights(model, nm, targets)
    if not masks:
        raise ValueError("masks is empty; nothing would be sparse in the saved model")
    check_masks(masks, nm)
    modules = dict(model.named_modules())
    state = {k: v for k, v in model.state_dict().items()}
    for name, mask in masks.items():
        key = f"{name}.weight"
        if key not in state:
            raise ValueError(f"mask for {name!r} names no weight of this model ({key!r})")
        weight = state[key]
        stray = int(((weight != 0) & ~mask.to(weight.device)).sum())
        if stray:
            raise ValueError(
                f"{name!r} has {stray} non-zero weights where its mask prunes; apply the masks "
                "first (apply_masks_) or pass the masks the model was pruned with"
            )
        state[key] = apply_mask(weight, mask)
    target = Path(folder)
    with atomic_dir(target, kind="model") as tmp:
        model.save_pretrained(
            str(tmp),
            state_dict=state,  # type: ignore[operator]
            safe_serialization=True,
        )
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        write_mask_npz(tmp / MASKS_FILE, masks)
        total = sum(m.numel() for m in masks.values())
        atomic_write_json(
            tmp / SPARSITY_FILE,
            {
                "format": "eightfold-nm-sparse",
                "pattern": str(nm),
                "method": method,
                "masks_file": MASKS_FILE,
                "mask_layout": "numpy.packbits of the flattened (out, in) mask, big-endian bits",
                "masked_parameters": total,
                "modules": {name: list(modules[name].weight.shape) for name in masks},
            },
        )
    logger.info("saved %s sparse model (%d masked modules) to %s", nm, len(masks), target)
    return target


@dataclass
class LoadedSparse:
    """A model loaded by :func:`load_sparse`, with its masks and the pattern check."""

    model: Any
    tokenizer: Any
    masks: dict[str, torch.Tensor]
    pattern: NMPattern
    check: NMCheckReport


def load_sparse(
    folder: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
) -> LoadedSparse:
    """Load a folder written by :func:`save_sparse` and verify its N:M pattern.

    Raises
    ------
    ValueError
        If a mask breaks the pattern, or a weight is non-zero (or ``-0.0``) where its mask
        prunes.
    """
    from eightfold.models import load_causal_lm

    path = Path(folder)
    meta = _read_sparsity_json(path)
    nm = NMPattern.parse(meta["pattern"])
    masks = load_masks(path)
    check_masks(masks, nm)
    loaded = load_causal_lm(path, dtype=dtype, device=device)
    named = dict(loaded.model.named_modules())
    for name, mask in masks.items():
        if name not in named:
            raise ValueError(f"{SPARSITY_FILE} names module {name!r}, which the model lacks")
        weight = named[name].weight.detach()
        pruned = ~mask.to(weight.device)
        stray = int((pruned & ((weight != 0) | torch.signbit(weight))).sum())
        if stray:
            raise ValueError(
                f"{str(path)!r}: {name!r} has {stray} pruned entries that are not +0.0; the "
                "weights do not match the saved masks (the folder was changed after saving)"
            )
    report = check_nm({n: named[n].weight for n in masks}, nm)
    return LoadedSparse(
        model=loaded.model, tokenizer=loaded.tokenizer, masks=masks, pattern=nm, check=report
    )


def to_semi_structured(model: nn.Module, masks: Mapping[str, Any]) -> list[str]:
    """Swap the masked linears' weights for ``torch.sparse`` 2:4 semi-structured tensors (CUDA).

    Needs an NVIDIA GPU with sparse tensor cores (Ampere or newer), fp16/bf16 weights and
    shapes the kernels accept (multiples of 64 are safe); modules that do not qualify stay dense.

    Returns
    -------
    list[str]
        The names of the converted modules.

    Raises
    ------
    NotImplementedError
        If the model is not on a CUDA device (PyTorch only has these kernels for CUDA).
    """
    from torch.sparse import to_sparse_semi_structured

    device = next(model.parameters()).device
    if device.type != "cuda":
        raise NotImplementedError(
            f"to_semi_structured needs the model on a CUDA GPU (it is on {device}); PyTorch's "
            "2:4 kernels exist only for CUDA. On CPU use the saved dense-with-zeros folder."
        )
    named = dict(model.named_modules())
    converted = []
    for name in masks:
        linear = named[name]
        weight = linear.weight
        if (
            weight.dtype not in (torch.float16, torch.bfloat16)
            or weight.shape[0] % 64
            or (weight.shape[1] % 64)
        ):
            logger.warning(
                "%s stays dense: %s %s is not a supported 2:4 kernel shape/dtype",
                name,
                tuple(weight.shape),
                weight.dtype,
            )
            continue
        linear.weight = nn.Parameter(
            to_sparse_semi_structured(weight.detach()), requires_grad=False
        )
        converted.append(name)
    return converted
