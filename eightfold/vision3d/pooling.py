"""3D pooling of LLaVA-3D: voxelization as released, the token cap, farthest point sampling.

Twenty views give 11,520 3D patches, too many for a 4096-token language model. The released code
(Zhu et al., arXiv 2409.18125; ``ZCMax/LLaVA-3D``) pools them into voxels of 0.2 m and averages
the 3D patch features of each occupied voxel; a scene with more than 2560 voxels keeps a random
subset of 2560. The paper's alternative, farthest point sampling (FPS) to a fixed count, was in the
initial release and is offered here as :func:`fps_pool`.

Everything is pure PyTorch (no torch-scatter, no pytorch3d).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_SCENE_TOKENS",
    "PooledScene",
    "cap_tokens",
    "farthest_point_sampling",
    "fps_pool",
    "voxel_pool",
    "voxelize",
]

MAX_SCENE_TOKENS = 2560  # the released cap on voxel tokens per scene
VOXEL_SIZE = 0.2  # metres, hard-coded in the released video tower


def _check_points(xyz: torch.Tensor, name: str = "xyz") -> torch.Tensor:
    """Return xyz as ``(B, N, 3)`` from ``(N, 3)``, ``(B, N, 3)`` or ``(B, V, H, W, 3)``."""
    if not isinstance(xyz, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(xyz).__name__}")
    if xyz.shape[-1] != 3 or xyz.ndim not in (2, 3, 5):
        raise ValueError(
            f"{name} must be (N, 3), (B, N, 3) or (B, V, H, W, 3); got {tuple(xyz.shape)}"
        )
    if not xyz.is_floating_point():
        raise TypeError(f"{name} must be floating point; got {xyz.dtype}")
    if not bool(torch.isfinite(xyz).all()):
        raise ValueError(
            f"{name} has NaN or infinite coordinates; check the depth maps and poses (NaN depth, "
            "inf poses) before pooling"
        )
    if xyz.ndim == 2:
        return xyz[None]
    if xyz.ndim == 5:
        return xyz.reshape(xyz.shape[0], -1, 3)
    return xyz


def voxelize(
    xyz: torch.Tensor, voxel_size: float = VOXEL_SIZE
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Assign every point to a voxel, numbering the voxels as the released code does.

    ``q = round(xyz / voxel_size)`` (float32 division, round half to even), minus the per-scene
    minimum of each axis; voxel ids number the distinct ``(qx, qy, qz)`` in lexicographic order,
    x most significant (the order of the released ravelled hash key). The input is not modified.

    Parameters
    ----------
    xyz
        ``(N, 3)``, ``(B, N, 3)`` or ``(B, V, H, W, 3)`` points (flattened per scene in (view, row,
        column) order).
    voxel_size
        Voxel edge in metres (0.2 in the released model).

    Returns
    -------
    (torch.Tensor, list[torch.Tensor])
        ``point_to_voxel`` ``(B, N)`` int64 voxel id of each point within its scene, and per scene
        the integer voxel coordinates ``(M_b, 3)`` after the minimum shift, in voxel-id order.
    """
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be a positive number of metres; got {voxel_size}")
    points = _check_points(xyz)
    batch, n, _ = points.shape
    if n == 0:
        raise ValueError("xyz has no points; a scene needs at least one 3D patch")
    grid = torch.round(points / voxel_size).long()
    grid = grid - grid.min(dim=1, keepdim=True)[0]
    extent = grid.max(dim=1, keepdim=True)[0] + 1  # (B, 1, 3) radices of the hash
    keys = (grid[..., 0] * extent[..., 1] + grid[..., 1]) * extent[..., 2] + grid[..., 2]
    point_to_voxel = torch.empty(batch, n, dtype=torch.long, device=points.device)
    ijk = []
    for b in range(batch):
        unique, inverse = torch.unique(keys[b], sorted=True, return_inverse=True)
        point_to_voxel[b] = inverse
        first = torch.zeros(unique.numel(), dtype=torch.long, device=points.device)
        first.scatter_(0, inverse, torch.arange(n, device=points.device))
        ijk.append(grid[b, first])
    return point_to_voxel, ijk


def _segment_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    # Sum per voxel divided by the count: identical to scatter_mean of the released code and to
    # index_reduce_(..., "mean", include_self=False).
    out = values.new_zeros(size, values.shape[-1])
    out.index_add_(0, index, values)
    count = torch.bincount(index, minlength=size).to(values.dtype).clamp_min(1)
    return out / count[:, None]


@dataclass
class PooledScene:
    """Pooled scene tokens of a batch of scenes.

    Attributes
    ----------
    features
        ``(M_total, C)`` pooled features, scenes concatenated, rows in token order.
    batch_offset
        ``(B,)`` int32 cumulative token count up to and including each scene (the end row of
        scene ``b`` in ``features``), as the released tower returns it.
    xyz
        ``(M_total, 3)`` a position per token: the mean xyz of the voxel's points (voxel pooling)
        or the sampled point (FPS). For plots and prompts; not fed to the model.
    point_to_token
        ``(B, N)`` int64 token of each input point within its scene (voxel pooling), or ``None``
        (FPS).
    voxel_ijk
        ``(M_total, 3)`` int64 integer voxel coordinates after the minimum shift (voxel pooling),
        or ``None``.
    """

    features: torch.Tensor
    batch_offset: torch.Tensor
    xyz: torch.Tensor
    point_to_token: torch.Tensor | None = None
    voxel_ijk: torch.Tensor | None = None

    @property
    def num_tokens(self) -> list[int]:
        """Tokens per scene."""
        ends = self.batch_offset.tolist()
        return [e - s for s, e in zip([0, *ends[:-1]], ends, strict=True)]

    def split(self) -> list[torch.Tensor]:
        """Per-scene feature tensors ``(M_b, C)``."""
        return list(torch.split(self.features, self.num_tokens))

    def split_xyz(self) -> list[torch.Tensor]:
        """Per-scene token positions ``(M_b, 3)``."""
        return list(torch.split(self.xyz, self.num_tokens))


def _check_features(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor; got {type(features).__name__}")
    if features.ndim == 2:
        features = features[None]
    if features.ndim != 3 or features.shape[:2] != points.shape[:2]:
        raise ValueError(
            f"features must be (B, N, C) with one row per point; got {tuple(features.shape)} for "
            f"{points.shape[1]} points in {points.shape[0]} scene(s)"
        )
    return features


def voxel_pool(
    xyz: torch.Tensor,
    features: torch.Tensor,
    *,
    voxel_size: float = VOXEL_SIZE,
    valid: torch.Tensor | None = None,
) -> PooledScene:
    """Voxel pooling as released: the mean of the 3D patch features in each occupied voxel.

    Parameters
    ----------
    xyz
        ``(N, 3)``, ``(B, N, 3)`` or ``(B, V, H, W, 3)`` patch positions.
    features
        ``(B, N, C)`` (or ``(N, C)``) 3D patch features in the same point order.
    voxel_size
        Voxel edge in metres (0.2 released).
    valid
        Optional ``(B, N)`` bool: pool only these points (e.g. patches with depth). The released
        model pools every patch, including zero-depth ones at the camera centre (default).

    Returns
    -------
    PooledScene
        Tokens in voxel-id order, one per occupied voxel. The result does not depend on the order
        of the views (up to float summation order inside a voxel's mean).
    """
    points = _check_points(xyz)
    feats = _check_features(features, points)
    if valid is None:
        point_to_voxel, ijk = voxelize(points, voxel_size)
        pooled, centres = [], []
        for b in range(points.shape[0]):
            m = ijk[b].shape[0]
            pooled.append(_segment_mean(feats[b], point_to_voxel[b], m))
            centres.append(_segment_mean(points[b], point_to_voxel[b], m))
        counts = torch.tensor([c.shape[0] for c in ijk], dtype=torch.int64)
        return PooledScene(
            features=torch.cat(pooled),
            batch_offset=counts.cumsum(0).to(torch.int32),
            xyz=torch.cat(centres),
            point_to_token=point_to_voxel,
            voxel_ijk=torch.cat(ijk),
        )

    valid = valid.reshape(points.shape[0], -1).bool()
    if valid.shape[1] != points.shape[1]:
        raise ValueError(
            f"valid must have one flag per point ({points.shape[1]}); got {tuple(valid.shape)}"
        )
    parts = []
    full_map = torch.full(points.shape[:2], -1, dtype=torch.long)
    for b in range(points.shape[0]):
        keep = valid[b]
        if not bool(keep.any()):
            raise ValueError(
                f"scene {b} has no valid points to pool (every patch lacks depth); check its depth "
                "maps or pool without a validity mask"
            )
        part = voxel_pool(points[b][keep], feats[b][keep], voxel_size=voxel_size)
        assert part.point_to_token is not None
        full_map[b, keep] = part.point_to_token[0]
        parts.append(part)
    counts = torch.tensor([p.features.shape[0] for p in parts], dtype=torch.int64)
    return PooledScene(
        features=torch.cat([p.features for p in parts]),
        batch_offset=counts.cumsum(0).to(torch.int32),
        xyz=torch.cat([p.xyz for p in parts]),
        point_to_token=full_map,
        voxel_ijk=torch.cat([p.voxel_ijk for p in parts if p.voxel_ijk is not None]),
    )


def cap_tokens(
    tokens: torch.Tensor,
    max_tokens: int = MAX_SCENE_TOKENS,
    *,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    keep_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep at most ``max_tokens`` rows of one scene's tokens, chosen at random.

    The released model keeps ``tokens[torch.randperm(n)[:2560]]`` from the global, unseeded RNG,
    so its inference is not repeatable and the kept tokens come in random order. Here the
    permutation comes from an explicit generator.

    Parameters
    ----------
    tokens
        ``(M, C)`` pooled tokens of one scene.
    max_tokens
        The cap (2560 released).
    seed
        Seed of a fresh generator (default 0: repeatable). ``None`` draws from PyTorch's global
        RNG, like the released code.
    generator
        A generator to draw from instead (overrides ``seed``).
    keep_order
        Keep the kept rows in their original (voxel) order instead of the random order of the
        released code.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The kept tokens ``(min(M, max_tokens), C)`` and their row indices into ``tokens``.
        Scenes at or under the cap are returned unchanged with indices ``0..M-1``.
    """
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive; got {max_tokens}")
    n = tokens.shape[0]
    if n <= max_tokens:
        return tokens, torch.arange(n, device=tokens.device)
    if generator is None and seed is not None:
        generator = torch.Generator(device="cpu").manual_seed(seed)
    index = torch.randperm(n, generator=generator)[:max_tokens].to(tokens.device)
    if keep_order:
        index = index.sort().values
    return tokens[index], index


def farthest_point_sampling(
    xyz: torch.Tensor,
    num_samples: int,
    *,
    start: int | None = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Farthest point sampling of one point cloud.

    Starting from point ``start``, repeatedly add the point whose distance to the chosen set is
    largest (ties go to the lowest index), the rule of pytorch3d's ``sample_farthest_points`` with
    ``random_start_point=False`` that the initial LLaVA-3D release used.

    Parameters
    ----------
    xyz
        ``(N, 3)`` points.
    num_samples
        How many to keep; a cloud with fewer points returns all of them.
    start
        Index of the first point (0 by default), or ``None`` for a random start drawn from
        ``generator``.

    Returns
    -------
    torch.Tensor
        ``(min(N, num_samples),)`` int64 indices in selection order.
    """
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must be (N, 3); got {tuple(xyz.shape)}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive; got {num_samples}")
    n = xyz.shape[0]
    if n == 0:
        raise ValueError("xyz has no points to sample")
    k = min(n, num_samples)
    if start is None:
        start = int(torch.randint(n, (1,), generator=generator))
    if not 0 <= start < n:
        raise ValueError(f"start must be in [0, {n - 1}]; got {start}")
    points = xyz.to(torch.float64) if xyz.dtype != torch.float64 else xyz
    chosen = torch.empty(k, dtype=torch.long, device=xyz.device)
    distance = torch.full((n,), float("inf"), dtype=points.dtype, device=xyz.device)
    current = start
    for i in range(k):
        chosen[i] = current
        step = ((points - points[current]) ** 2).sum(-1)
        distance = torch.minimum(distance, step)
        current = int(torch.argmax(distance))
    return chosen


def fps_pool(
    xyz: torch.Tensor,
    features: torch.Tensor,
    *,
    num_samples: int = 1152,
    start: int | None = 0,
    generator: torch.Generator | None = None,
) -> PooledScene:
    """The paper's alternative to voxel pooling: keep the 3D patches chosen by FPS.

    The features of the sampled patches are gathered (not averaged). 1152 tokens is the count of
    the initial release's scripts and of the released checkpoint's config; the ICCV version of the
    paper reports 3096. Unlike voxel pooling, the result depends on the order of the points (the
    first point seeds the sampling).

    Parameters
    ----------
    xyz
        ``(N, 3)``, ``(B, N, 3)`` or ``(B, V, H, W, 3)`` patch positions.
    features
        ``(B, N, C)`` 3D patch features.
    num_samples
        Tokens per scene.
    """
    points = _check_points(xyz)
    feats = _check_features(features, points)
    picked, positions = [], []
    for b in range(points.shape[0]):
        index = farthest_point_sampling(points[b], num_samples, start=start, generator=generator)
        picked.append(feats[b, index])
        positions.append(points[b, index])
    counts = torch.tensor([p.shape[0] for p in picked], dtype=torch.int64)
    return PooledScene(
        features=torch.cat(picked),
        batch_offset=counts.cumsum(0).to(torch.int32),
        xyz=torch.cat(positions),
    )
