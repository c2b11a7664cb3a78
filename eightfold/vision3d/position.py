"""The 3D position embedding of LLaVA-3D and the 3D patches it makes.

A 3D patch is a CLIP patch feature plus a learned embedding of the patch's world position:
``F3D = F_clip + MLP(xyz)`` with ``MLP = Linear(3, C) -> LayerNorm(C) -> ReLU -> Linear(C, C)``
on raw metric xyz (Zhu et al., arXiv 2409.18125). The same MLP design with the language model's
width encodes coordinate prompts (:class:`PromptEncoder`). Parameter names match the released
checkpoint, so its weights load without renaming inside these modules.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["PositionEmbeddingMLP", "PromptEncoder", "SpatialAwareModule", "patches_3d"]


def _check_xyz(xyz: torch.Tensor) -> None:
    if not isinstance(xyz, torch.Tensor):
        raise TypeError(f"xyz must be a torch.Tensor; got {type(xyz).__name__}")
    if xyz.ndim < 1 or xyz.shape[-1] != 3:
        raise ValueError(
            f"xyz must end in 3 coordinates (..., 3); got shape {tuple(xyz.shape)}. A click is "
            "one [x, y, z] point; pass boxes through their centre."
        )


class PositionEmbeddingMLP(nn.Module):
    """Learned MLP embedding of 3D points: ``Linear(3, F) -> LayerNorm -> ReLU -> Linear(F, F)``.

    Parameters
    ----------
    num_pos_feats
        Output width ``F``: 1024 for patches (the CLIP width), 4096 for clicks (the LLM width).
    dim
        Input coordinates (3).

    Notes
    -----
    Weight matrices are Xavier-uniform initialised and biases keep PyTorch's defaults, as in the
    released code. The submodule is called ``position_embedding_head`` with indices 0 (first
    Linear), 1 (LayerNorm), 3 (second Linear), the released parameter names.
    """

    def __init__(self, num_pos_feats: int = 1024, dim: int = 3) -> None:
        super().__init__()
        if num_pos_feats <= 0 or dim <= 0:
            raise ValueError(
                f"num_pos_feats and dim must be positive; got num_pos_feats={num_pos_feats}, "
                f"dim={dim}"
            )
        self.num_pos_feats = num_pos_feats
        self.position_embedding_head = nn.Sequential(
            nn.Linear(dim, num_pos_feats),
            nn.LayerNorm(num_pos_feats),
            nn.ReLU(),
            nn.Linear(num_pos_feats, num_pos_feats),
        )
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """``(..., 3)`` metric xyz -> ``(..., F)``."""
        _check_xyz(xyz)
        return self.position_embedding_head(xyz)


class SpatialAwareModule(nn.Module):
    """Adds the 3D position embedding to patch features: the 3D patch of LLaVA-3D.

    Parameters
    ----------
    latent_dim
        Width of the patch features (1024 for CLIP ViT-L/14).
    """

    def __init__(self, latent_dim: int = 1024) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.positional_embedding = PositionEmbeddingMLP(num_pos_feats=latent_dim)

    def forward(self, features: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        """3D patches ``features + MLP(xyz)``.

        Parameters
        ----------
        features
            ``(..., C)`` patch features, e.g. ``(B, V*576, C)``.
        xyz
            ``(..., 3)`` patch positions with the same leading shape.

        Returns
        -------
        torch.Tensor
            ``(..., C)``.
        """
        return patches_3d(features, xyz, self.positional_embedding)

    def encode_2d(self, features: torch.Tensor, *, ddp_trick: bool = False) -> torch.Tensor:
        """The 2D-only path: plain images get no position (LLaVA-1.5 behaviour).

        With ``ddp_trick=True`` the MLP runs on all-zero xyz and its output, multiplied by 0, is
        added, as the released training code does so the MLP always receives a gradient under
        DDP; the values are identical either way.

        Parameters
        ----------
        features
            ``(..., C)`` image patch features.
        """
        if not ddp_trick:
            return features
        zeros = features.new_zeros(*features.shape[:-1], 3)
        return features + 0.0 * self.positional_embedding(zeros)


def patches_3d(
    features: torch.Tensor, xyz: torch.Tensor, embedding: PositionEmbeddingMLP
) -> torch.Tensor:
    """``features + embedding(xyz)``: CLIP patch features made 3D-aware.

    Parameters
    ----------
    features
        ``(..., C)`` patch features.
    xyz
        ``(..., 3)`` world positions of the patches (same leading shape).
    embedding
        The position MLP with output width ``C``.
    """
    _check_xyz(xyz)
    if features.shape[:-1] != xyz.shape[:-1]:
        raise ValueError(
            f"features {tuple(features.shape)} and xyz {tuple(xyz.shape)} must have the same "
            "leading shape (one position per patch feature)"
        )
    if features.shape[-1] != embedding.num_pos_feats:
        raise ValueError(
            f"features have width {features.shape[-1]} but the position embedding has width "
            f"{embedding.num_pos_feats}; build it with num_pos_feats={features.shape[-1]}"
        )
    weight_dtype = next(embedding.parameters()).dtype
    return features + embedding(xyz.to(weight_dtype)).to(features.dtype)


class PromptEncoder(nn.Module):
    """The click encoder: one language-model-width token per 3D point.

    Its output goes straight into the language model's input embeddings at a ``<boxes>``
    placeholder, bypassing the multimodal projector.

    Parameters
    ----------
    latent_dim
        The language model's hidden size (4096 for the released 7B model).
    """

    def __init__(self, latent_dim: int = 4096) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.pos_emb3d = PositionEmbeddingMLP(num_pos_feats=latent_dim)

    def forward(self, clicks: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` clicks -> ``(N, latent_dim)`` tokens (``N`` may be 0)."""
        _check_xyz(clicks)
        return self.pos_emb3d(clicks)
