"""Finite scalar quantisation (FSQ) exactly as EMOVA's speech tokenizer uses it.

EMOVA (arXiv 2409.18042) turns 16 kHz speech into 25 units per second: a speech encoder, a
``Linear(768 -> 4)`` bottleneck called ``pre_quant``, then FSQ (Mentzer et al., arXiv 2309.15505)
with levels ``[8, 8, 8, 8]``, i.e. a 4096-entry implicit codebook. This module reproduces the
shipped quantiser bit for bit on CPU float32:

1. bound: ``tanh(z + shift) * half_l - offset`` with ``half_l = (L - 1)(1 - eps) / 2``,
   ``offset = 0.5`` for even ``L`` (0 for odd) and ``shift = tan(offset / half_l)``;
2. round half to even, with a straight-through gradient;
3. divide by ``L // 2``; for even ``L`` the codes are ``{-1, ..., (L/2 - 1)/(L/2)}`` (no ``+1``);
4. index ``= sum(digit_i * basis_i)`` with ``digit = code * (L // 2) + L // 2`` and the first
   dimension least significant (basis ``[1, 8, 64, 512]`` for EMOVA).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["EMOVA_FSQ_LEVELS", "FSQ", "UnitExtractorHead", "round_ste"]

#: The levels of the released EMOVA speech tokenizer (codebook of 8**4 = 4096 units).
EMOVA_FSQ_LEVELS: tuple[int, ...] = (8, 8, 8, 8)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


class FSQ(nn.Module):
    """Finite scalar quantiser with EMOVA's bounding function and index basis.

    Parameters
    ----------
    levels
        Number of quantisation levels per dimension; EMOVA uses ``(8, 8, 8, 8)``.
    eps
        Shrinks the bound slightly inside ``(L - 1) / 2`` so that ``tanh`` never reaches a
        rounding boundary; the shipped value is ``1e-3``.
    shift
        ``"tan"`` (default) is what the released checkpoint was trained with, as in the FSQ
        paper's notebook; ``"atanh"`` is the variant some later ports use. The two shifts
        differ by about ``4e-6`` for ``L = 8`` and almost never change an index.

    Examples
    --------
    >>> fsq = FSQ()
    >>> codes = fsq(torch.zeros(1, 2, 4))
    >>> fsq.codes_to_indices(codes).tolist()
    [[2340, 2340]]
    """

    _half_l: torch.Tensor
    _offset: torch.Tensor
    _shift: torch.Tensor
    _half_width: torch.Tensor
    _levels_t: torch.Tensor
    _basis: torch.Tensor

    def __init__(
        self,
        levels: Sequence[int] = EMOVA_FSQ_LEVELS,
        *,
        eps: float = 1e-3,
        shift: Literal["tan", "atanh"] = "tan",
    ) -> None:
        super().__init__()
        levels = list(levels)
        if not levels or not all(isinstance(level, int) and level >= 2 for level in levels):
            raise ValueError(
                f"levels must be a non-empty sequence of integers >= 2; got {levels!r}. "
                "EMOVA uses (8, 8, 8, 8)."
            )
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps must lie in [0, 1); got {eps!r}. The shipped value is 1e-3.")
        if shift not in ("tan", "atanh"):
            raise ValueError(f"shift must be 'tan' or 'atanh'; got {shift!r}")
        self.levels = tuple(levels)
        self.eps = eps
        self.shift_kind = shift

        # Constants in float32, computed in the same order as the official module so that
        # ``bound`` agrees to the last bit on CPU.
        lv = torch.tensor(levels, dtype=torch.int32)
        half_l = (lv - 1) * (1 - eps) / 2
        offset = torch.where(lv % 2 == 1, 0.0, 0.5)
        ratio = offset / half_l
        shift_value = torch.tan(ratio) if shift == "tan" else torch.atanh(ratio)
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.int64), dim=0)
        self.register_buffer("_half_l", half_l.to(torch.float32), persistent=False)
        self.register_buffer("_offset", offset.to(torch.float32), persistent=False)
        self.register_buffer("_shift", shift_value.to(torch.float32), persistent=False)
        self.register_buffer("_half_width", (lv // 2).to(torch.float32), persistent=False)
        self.register_buffer("_levels_t", lv.to(torch.int64), persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    @property
    def dim(self) -> int:
        """Number of FSQ dimensions (4 for EMOVA)."""
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        """Number of distinct codes, the product of the levels (4096 for EMOVA)."""
        size = 1
        for level in self.levels:
            size *= level
        return size

    @property
    def basis(self) -> list[int]:
        """Mixed-radix basis of the index, first dimension least significant."""
        return [int(b) for b in self._basis]

    @property
    def shift(self) -> torch.Tensor:
        """The per-dimension shift added before ``tanh``, shape ``(dim,)``."""
        return self._shift.clone()

    def _check_last_dim(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{name} must have {self.dim} values in its last dimension (one per FSQ level "
                f"{list(self.levels)}); got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash ``z`` into the quantisation range, before rounding.

        Parameters
        ----------
        z
            Continuous features, shape ``(..., dim)``.

        Returns
        -------
        torch.Tensor
            Same shape; values in ``(-L/2, L/2 - 1)`` per dimension for even ``L``.
        """
        self._check_last_dim(z, "z")
        return torch.tanh(z + self._shift) * self._half_l - self._offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantise ``z`` to normalised codes with a straight-through gradient.

        Parameters
        ----------
        z
            Continuous features, shape ``(..., dim)``.

        Returns
        -------
        torch.Tensor
            Codes of the same shape, each a multiple of ``1 / (L // 2)`` in ``[-1, 1]``.
        """
        return round_ste(self.bound(z)) / self._half_width

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes and unit indices of ``z``.

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            ``codes`` of shape ``(..., dim)`` and ``indices`` (int64) of shape ``(...)``.
        """
        codes = self(z)
        return codes, self.codes_to_indices(codes)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Map normalised codes to integer indices.

        Parameters
        ----------
        codes
            Codes as produced by :meth:`forward`, shape ``(..., dim)``.

        Returns
        -------
        torch.Tensor
            int64 indices in ``[0, codebook_size)``, shape ``(...)``.
        """
        self._check_last_dim(codes, "codes")
        digits = codes * self._half_width + self._half_width
        # The official code sums in float (exact for these small integers) and casts later.
        flat = (digits * self._basis.to(codes.dtype)).sum(dim=-1)
        indices = torch.round(flat).to(torch.int64)
        if bool(((digits < -1e-4) | (digits > self._levels_t - 1 + 1e-4)).any()):
            raise ValueError(
                "codes lie outside the FSQ grid: every code must be a multiple of 1/(L//2) in "
                f"[-1, 1] for levels {list(self.levels)}; pass the output of FSQ.forward"
            )
        return indices

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Map integer indices back to normalised codes.

        Parameters
        ----------
        indices
            Integer (or integral float) indices in ``[0, codebook_size)``, any shape ``(...)``.

        Returns
        -------
        torch.Tensor
            float32 codes, shape ``(..., dim)``.
        """
        if not isinstance(indices, torch.Tensor):
            raise TypeError(f"indices must be a torch.Tensor; got {type(indices).__name__}")
        as_int = indices.to(torch.int64)
        if indices.is_floating_point() and bool((as_int.to(indices.dtype) != indices).any()):
            raise ValueError("indices must be whole numbers; got fractional values")
        if as_int.numel() and (int(as_int.min()) < 0 or int(as_int.max()) >= self.codebook_size):
            raise ValueError(
                f"indices must lie in [0, {self.codebook_size}) for levels {list(self.levels)}; "
                f"got values from {int(as_int.min())} to {int(as_int.max())}"
            )
        digits = torch.div(as_int.unsqueeze(-1), self._basis, rounding_mode="floor")
        digits = torch.remainder(digits, self._levels_t).to(torch.float32)
        return (digits - self._half_width) / self._half_width

    @property
    def codebook(self) -> torch.Tensor:
        """All codes in index order, shape ``(codebook_size, dim)``; row ``k`` is code ``k``."""
        return self.indices_to_codes(torch.arange(self.codebook_size, device=self._basis.device))

    def extra_repr(self) -> str:
        return f"levels={list(self.levels)}, eps={self.eps}, shift={self.shift_kind!r}"


class UnitExtractorHead(nn.Module):
    """The part of EMOVA's speech-to-unit model after the speech encoder.

    ``pre_quant`` (``Linear(768 -> 4)``) projects each 40 ms encoder frame, FSQ quantises it,
    and each valid frame becomes one unit id. Parameter names match the official model, so the
    ``pre_quant.*`` tensors of the released checkpoint load directly. The SPIRAL speech encoder
    that produces ``encoder_output`` needs the released tokenizer weights and is not part of
    this class.

    Parameters
    ----------
    in_features
        Encoder width (768 in the released tokenizer).
    levels
        FSQ levels.
    """

    def __init__(self, in_features: int = 768, levels: Sequence[int] = EMOVA_FSQ_LEVELS) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1; got {in_features}")
        self.pre_quant = nn.Linear(in_features, len(tuple(levels)))
        self.fsq = FSQ(levels)

    def forward(
        self, encoder_output: torch.Tensor, encoded_len: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project and quantise every frame (padding frames too, as the official code does).

        Parameters
        ----------
        encoder_output
            Encoder features, shape ``(batch, frames, in_features)``.
        encoded_len
            Valid frames per sequence, shape ``(batch,)``; only checked here, used by
            :meth:`unit_sequences`.

        Returns
        -------
        (torch.Tensor, torch.Tensor, torch.Tensor)
            ``pre_quant_output`` ``(batch, frames, dim)``, ``codes`` ``(batch, frames, dim)``
            and ``unit_ids`` (int64) ``(batch, frames)``.
        """
        if encoder_output.ndim != 3 or encoder_output.shape[-1] != self.pre_quant.in_features:
            raise ValueError(
                "encoder_output must have shape (batch, frames, "
                f"{self.pre_quant.in_features}); got {tuple(encoder_output.shape)}"
            )
        if encoded_len is not None:
            _check_lengths(encoded_len, encoder_output.shape[0], encoder_output.shape[1])
        projected = self.pre_quant(encoder_output)
        codes, ids = self.fsq.quantize(projected)
        return projected, codes, ids

    @torch.no_grad()
    def unit_sequences(
        self, encoder_output: torch.Tensor, encoded_len: torch.Tensor, *, reduce: bool = True
    ) -> list[list[int]]:
        """Unit ids of each sequence, truncated to its valid length and optionally reduced.

        Parameters
        ----------
        encoder_output
            Shape ``(batch, frames, in_features)``.
        encoded_len
            Valid frames per sequence, shape ``(batch,)``.
        reduce
            Collapse consecutive repeats (the released pipeline always does).
        """
        from eightfold.speech.units import reduce_units

        _, _, ids = self(encoder_output, encoded_len)
        sequences = []
        for row, length in zip(ids.tolist(), encoded_len.tolist(), strict=True):
            units = row[: int(length)]
            sequences.append(reduce_units(units) if reduce else units)
        return sequences


def _check_lengths(lengths: torch.Tensor, batch: int, frames: int) -> None:
    if not isinstance(lengths, torch.Tensor) or lengths.ndim != 1 or lengths.shape[0] != batch:
        shape = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else type(lengths)
        raise ValueError(f"lengths must be a tensor of shape ({batch},); got {shape}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > frames):
        raise ValueError(
            f"lengths must lie in [0, {frames}] (the padded number of frames); got "
            f"{lengths.tolist()}"
        )
