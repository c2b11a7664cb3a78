"""RGB-D geometry of LLaVA-3D: frame preprocessing, intrinsics, unprojection and its inverse.

LLaVA-3D (Zhu et al., arXiv 2409.18125) gives every CLIP patch of every posed RGB-D view a 3D
position in a shared world frame. This module reproduces the released preprocessing and
back-projection exactly:

- colour frames: shortest side resized to 336 (bicubic), centre crop 336 x 336, CLIP mean/std;
- depth frames: shortest side resized to 336 with PIL's nearest rule, centre crop with PIL's
  rounding of the crop box, divided by a depth scale (1000 for ScanNet and 3RScan, 4000 for
  Matterport3D);
- intrinsics: rows scaled by the resize, then only ``cx`` shifted by the horizontal crop;
- unprojection on integer pixel coordinates (no +0.5), OpenCV camera axes (x right, y down,
  z forward), camera-to-world poses, and a patch's position taken from its top-left pixel.

The inverse maps a world point to a pixel of a view, so a click on an image can be lifted to 3D by
reading the depth under it (:func:`lift_click`), and a 3D point can be found in the views that see
it (:func:`point_to_pixel`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "CROP_SIZE",
    "DEPTH_SCALES",
    "PATCH_SIZE",
    "PixelLocation",
    "RGBDScene",
    "adjust_intrinsics",
    "align_poses",
    "check_poses",
    "depth_crop_offset",
    "lift_click",
    "patch_depth_valid",
    "patch_positions",
    "point_to_pixel",
    "preprocess_depth",
    "preprocess_rgb",
    "preprocess_scene",
    "project_points",
    "resized_size",
    "unproject_depth",
    "unproject_patches",
    "visible_views",
]

CROP_SIZE = 336
PATCH_SIZE = 14
# OpenAI CLIP normalisation, as in the image processor of clip-vit-large-patch14-336.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Raw depth PNG units per metre: millimetres for ScanNet/3RScan, quarter millimetres for Matterport.
DEPTH_SCALES: dict[str, float] = {"scannet": 1000.0, "3rscan": 1000.0, "matterport3d": 4000.0}

PatchPosition = Literal["top_left", "center", "mean"]


def _as_tensor(value: object, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, np.ndarray | list | tuple | float | int):
        tensor = torch.as_tensor(np.asarray(value))
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor or a NumPy array; got {type(value).__name__}. "
            "Convert it with torch.as_tensor(...)."
        )
    return tensor.to(dtype) if dtype is not None else tensor


# ---------------------------------------------------------------------------------------------
# Sizes, resizing and cropping
# ---------------------------------------------------------------------------------------------


def resized_size(width: int, height: int, short_side: int = CROP_SIZE) -> tuple[int, int]:
    """Size ``(width, height)`` after resizing the shortest side to ``short_side``.

    The long side is truncated with ``int()``, as the released depth processor does
    (640 x 480 -> 448 x 336, 333 x 250 -> 447 x 336).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive; got width={width}, height={height}")
    if width < height:
        return short_side, int(height * (short_side / width))
    return int(width * (short_side / height)), short_side


def depth_crop_offset(width: int, height: int, crop: int = CROP_SIZE) -> tuple[int, int]:
    """Top-left corner ``(left, top)`` of the centre crop applied to a resized depth image.

    PIL rounds the crop box half to even, so an odd margin starts the crop half a pixel to the
    right of the centre (447 wide -> column 56), while the released intrinsics shift ``cx`` by
    the unrounded 55.5 (see :func:`adjust_intrinsics`).
    """
    if width < crop or height < crop:
        raise ValueError(
            f"cannot centre-crop {crop} x {crop} from a {width} x {height} image; resize it so "
            f"the shortest side is at least {crop} first"
        )
    return round((width - crop) / 2), round((height - crop) / 2)


def _nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    # PIL's nearest rule samples the source pixel under the centre of each destination pixel:
    # floor((dst + 0.5) * in / out). torch's interpolate(mode="nearest") uses floor(dst * in/out)
    # and would pick different rows and columns.
    idx = np.floor((np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out))
    return np.minimum(idx.astype(np.int64), size_in - 1)


def preprocess_depth(
    depth: np.ndarray | torch.Tensor,
    *,
    depth_scale: float = 1000.0,
    size: int = CROP_SIZE,
    invalid: Literal["raise", "zero"] = "raise",
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Resize, centre-crop and scale one depth image as the released processor does.

    Parameters
    ----------
    depth
        Raw depth ``(height, width)``: uint16 units of ``1 / depth_scale`` metres as stored in a
        depth PNG, or floats in the same units.
    depth_scale
        Raw units per metre: 1000 for ScanNet and 3RScan, 4000 for Matterport3D (see
        :data:`DEPTH_SCALES`); pass 1 for depth already in metres.
    size
        Side of the square output (336 for CLIP ViT-L/14-336).
    invalid
        What to do with NaN, infinite or negative raw values: ``"raise"`` (default) or
        ``"zero"`` (replace them with 0, the "no depth" value of depth PNGs). Zero depth itself
        is valid input: the released model back-projects it to the camera centre.

    Returns
    -------
    (torch.Tensor, (int, int))
        Depth in metres ``(size, size)`` float32, and the resized size ``(width, height)`` before
        the crop (what :func:`adjust_intrinsics` needs).
    """
    array = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    if array.ndim != 2:
        raise ValueError(
            f"depth must be one image of shape (height, width); got shape {tuple(array.shape)}. "
            "Pass the views one at a time or use preprocess_scene."
        )
    if depth_scale <= 0 or not np.isfinite(depth_scale):
        raise ValueError(f"depth_scale must be a positive number; got {depth_scale}")
    if invalid not in ("raise", "zero"):
        raise ValueError(f"invalid must be 'raise' or 'zero'; got {invalid!r}")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array) | (array < 0)
        if bad.any():
            if invalid == "raise":
                raise ValueError(
                    f"depth has {int(bad.sum())} NaN, infinite or negative values; depth maps use "
                    "0 for 'no depth'. Clean them or pass invalid='zero' to set them to 0."
                )
            array = np.where(bad, 0, array)
    height, width = array.shape
    new_w, new_h = resized_size(width, height, size)
    rows = _nearest_indices(height, new_h)
    cols = _nearest_indices(width, new_w)
    left, top = depth_crop_offset(new_w, new_h, size)
    cropped = array[rows[top : top + size]][:, cols[left : left + size]]
    # float64 division then float32, as the released processor (NumPy) then torch .float().
    metres = torch.from_numpy(np.ascontiguousarray(cropped / depth_scale)).float()
    return metres, (new_w, new_h)


def preprocess_rgb(image: object, *, size: int = CROP_SIZE) -> torch.Tensor:
    """CLIP preprocessing of one colour frame: bicubic resize, centre crop, normalise.

    Equivalent to the stock CLIP ViT-L/14-336 image processor: the shortest side is resized to
    ``size`` (long side truncated), the crop starts at ``floor(margin / 2)``, pixels are scaled
    to [0, 1] and normalised with :data:`CLIP_MEAN` / :data:`CLIP_STD`.

    Parameters
    ----------
    image
        A PIL image, or an array ``(height, width, 3)`` of uint8.

    Returns
    -------
    torch.Tensor
        ``(3, size, size)`` float32.
    """
    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                "image array must be (height, width, 3) uint8; got shape "
                f"{tuple(image.shape)} dtype {image.dtype}"
            )
        pil = Image.fromarray(image)
    elif isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        raise TypeError(f"image must be a PIL image or a uint8 array; got {type(image).__name__}")
    width, height = pil.size
    new_w, new_h = resized_size(width, height, size)
    resized = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC), dtype=np.float32)
    # The CLIP processor crops at floor(margin / 2), unlike the depth crop (PIL rounding).
    top, left = (new_h - size) // 2, (new_w - size) // 2
    crop = resized[top : top + size, left : left + size] / 255.0
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(((crop - mean) / std).transpose(2, 0, 1).copy())


def adjust_intrinsics(
    intrinsics: np.ndarray | torch.Tensor,
    original_size: tuple[int, int],
    resized: tuple[int, int],
    *,
    crop: Literal["released", "exact"] = "released",
    crop_size: int = CROP_SIZE,
) -> np.ndarray:
    """Intrinsics of the resized and centre-cropped image.

    Parameters
    ----------
    intrinsics
        ``(4, 4)`` or ``(V, 4, 4)`` pinhole intrinsics of the original image (only ``fx, fy,
        cx, cy`` are used). For ScanNet pass the *depth* intrinsic and the depth image size; the
        released code uses the colour intrinsic and colour size for 3RScan and Matterport3D.
    original_size
        ``(width, height)`` of the image the intrinsics refer to.
    resized
        ``(width, height)`` after the shortest-side resize, before the crop (the second output of
        :func:`preprocess_depth`).
    crop
        ``"released"`` (default): row 0 divided by ``orig_w / new_w``, row 1 by
        ``orig_h / new_h``, then ``cx -= (new_w - new_h) / 2``; the vertical crop of portrait
        images is ignored and an odd margin is off by half a pixel from the real crop.
        ``"exact"``: shift ``cx`` and ``cy`` by the integer offsets the depth crop really uses
        (:func:`depth_crop_offset`). The released checkpoint was trained with ``"released"``.

    Returns
    -------
    np.ndarray
        float64, same shape as ``intrinsics``; the input is not modified.
    """
    k = np.array(
        intrinsics.detach().cpu().numpy() if isinstance(intrinsics, torch.Tensor) else intrinsics,
        dtype=np.float64,
        copy=True,
    )
    if k.shape[-2:] != (4, 4) or k.ndim not in (2, 3):
        raise ValueError(
            f"intrinsics must have shape (4, 4) or (V, 4, 4); got {tuple(k.shape)}. Embed a 3x3 "
            "matrix K as np.eye(4) with K in the top-left block."
        )
    (ow, oh), (nw, nh) = original_size, resized
    if min(ow, oh, nw, nh) <= 0:
        raise ValueError(f"sizes must be positive; got original={original_size}, resized={resized}")
    view = k[None] if k.ndim == 2 else k
    view[:, 0] /= ow / nw
    view[:, 1] /= oh / nh
    if crop == "released":
        view[:, 0, 2] -= (nw - nh) / 2
    elif crop == "exact":
        left, top = depth_crop_offset(nw, nh, crop_size)
        view[:, 0, 2] -= left
        view[:, 1, 2] -= top
    else:
        raise ValueError(f"crop must be 'released' or 'exact'; got {crop!r}")
    return k


def check_poses(poses: torch.Tensor, name: str = "poses") -> None:
    """Raise a ValueError naming the views whose pose is not a finite ``(4, 4)`` matrix."""
    if poses.shape[-2:] != (4, 4):
        raise ValueError(f"{name} must end in (4, 4); got shape {tuple(poses.shape)}")
    finite = torch.isfinite(poses).flatten(-2).all(-1)
    if not bool(finite.all()):
        bad = [tuple(int(i) for i in idx) for idx in torch.nonzero(~finite)]
        raise ValueError(
            f"{name} has non-finite (inf or NaN) entries at view index {bad[:8]}"
            f"{' ...' if len(bad) > 8 else ''}; ScanNet marks lost tracking this way. Drop those "
            "frames first (eightfold.vision3d.select_frames does it) or fix the poses."
        )


def align_poses(poses: torch.Tensor, axis_align_matrix: torch.Tensor | None) -> torch.Tensor:
    """Left-multiply camera-to-world poses ``(..., 4, 4)`` by a scene's axis-alignment matrix.

    This puts every view in the axis-aligned scene frame (z up) in which the released model reads
    click coordinates and writes boxes. ``None`` keeps the poses (identity alignment).
    """
    if axis_align_matrix is None:
        return poses.clone()
    align = _as_tensor(axis_align_matrix, "axis_align_matrix", poses.dtype)
    if align.shape != (4, 4):
        raise ValueError(f"axis_align_matrix must be (4, 4); got {tuple(align.shape)}")
    check_poses(align, "axis_align_matrix")
    return align @ poses


# ---------------------------------------------------------------------------------------------
# A preprocessed scene
# ---------------------------------------------------------------------------------------------


@dataclass
class RGBDScene:
    """The preprocessed views of one scene, ready for :func:`unproject_depth`.

    Attributes
    ----------
    depths
        ``(V, H, W)`` float32 metres; 0 means no depth.
    intrinsics
        ``(V, 4, 4)`` float32 intrinsics of the processed ``H x W`` depth image.
    poses
        ``(V, 4, 4)`` float32 camera-to-world poses in the (axis-aligned) scene frame.
    images
        ``(V, 3, H, W)`` CLIP-normalised colour frames, or ``None`` for depth-only scenes.
    """

    depths: torch.Tensor
    intrinsics: torch.Tensor
    poses: torch.Tensor
    images: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.depths.ndim != 3:
            raise ValueError(f"depths must be (V, H, W); got {tuple(self.depths.shape)}")
        views = self.depths.shape[0]
        for name in ("intrinsics", "poses"):
            value = getattr(self, name)
            if value.shape != (views, 4, 4):
                raise ValueError(
                    f"{name} must be ({views}, 4, 4) to match {views} depth views; got "
                    f"{tuple(value.shape)}"
                )
        if self.images is not None and (
            self.images.ndim != 4
            or self.images.shape[0] != views
            or self.images.shape[-2:] != self.depths.shape[-2:]
        ):
            raise ValueError(
                f"images must be ({views}, 3, {self.depths.shape[1]}, {self.depths.shape[2]}) to "
                f"match the depth views; got {tuple(self.images.shape)}"
            )

    @property
    def num_views(self) -> int:
        return int(self.depths.shape[0])


def preprocess_scene(
    depths: Sequence[np.ndarray | torch.Tensor],
    intrinsics: np.ndarray | torch.Tensor,
    poses: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    *,
    images: Sequence[object] | None = None,
    depth_scale: float = 1000.0,
    intrinsic_size: tuple[int, int] | None = None,
    axis_align_matrix: np.ndarray | torch.Tensor | None = None,
    crop: Literal["released", "exact"] = "released",
    invalid_depth: Literal["raise", "zero"] = "raise",
    max_aspect_mismatch: float | None = 0.02,
    size: int = CROP_SIZE,
) -> RGBDScene:
    """Preprocess the raw RGB-D views of one scene as the released LLaVA-3D processor does.

    Parameters
    ----------
    depths
        V raw depth images ``(h, w)`` (uint16 PNG units), all of one size.
    intrinsics
        ``(4, 4)`` shared or ``(V, 4, 4)`` per-view intrinsics of the raw images.
    poses
        ``(V, 4, 4)`` camera-to-world poses (OpenCV camera axes, metres).
    images
        Optional V colour frames (PIL images or uint8 arrays), CLIP-preprocessed.
    depth_scale
        Raw depth units per metre (:data:`DEPTH_SCALES`).
    intrinsic_size
        ``(width, height)`` of the image the intrinsics refer to; default the depth size
        (ScanNet's depth intrinsic). 3RScan and Matterport3D use the colour size.
    axis_align_matrix
        The scene's ``(4, 4)`` axis alignment, applied to every pose (:func:`align_poses`).
    crop
        Intrinsics crop convention, see :func:`adjust_intrinsics`.
    invalid_depth
        NaN / negative depth handling, see :func:`preprocess_depth`.
    max_aspect_mismatch
        Largest allowed relative difference between the colour and depth aspect ratios (the two
        are cropped independently, so a mismatch misaligns features and 3D positions). ``None``
        accepts any mismatch, as the released code does for 3RScan.
    """
    if len(depths) == 0:
        raise ValueError("depths is empty; a scene needs at least one view")
    sizes = {tuple(np.asarray(d).shape) for d in depths}
    if len(sizes) != 1:
        raise ValueError(
            f"all depth images of a scene must have one size; got sizes {sorted(sizes)}"
        )
    (height, width) = sizes.pop()[:2]
    pose_t = _as_tensor(
        np.stack([np.asarray(p) for p in poses]) if isinstance(poses, list | tuple) else poses,
        "poses",
        torch.float32,
    )
    if pose_t.shape != (len(depths), 4, 4):
        raise ValueError(
            f"poses must be ({len(depths)}, 4, 4) for {len(depths)} depth views; got "
            f"{tuple(pose_t.shape)}"
        )
    check_poses(pose_t)

    processed = []
    resized: tuple[int, int] = (0, 0)
    for d in depths:
        metres, resized = preprocess_depth(
            d, depth_scale=depth_scale, size=size, invalid=invalid_depth
        )
        processed.append(metres)

    k = adjust_intrinsics(
        intrinsics, intrinsic_size or (width, height), resized, crop=crop, crop_size=size
    )
    k_t = torch.from_numpy(k).float()
    if k_t.ndim == 2:
        k_t = k_t.unsqueeze(0).repeat(len(depths), 1, 1)
    if k_t.shape[0] != len(depths):
        raise ValueError(
            f"intrinsics has {k_t.shape[0]} views but depths has {len(depths)}; pass one (4, 4) "
            "matrix for the scene or one per view"
        )

    rgb = None
    if images is not None:
        if len(images) != len(depths):
            raise ValueError(
                f"got {len(images)} colour images for {len(depths)} depth images; pass one "
                "colour frame per depth frame"
            )
        frames = []
        for image in images:
            from PIL import Image

            w, h = image.size if isinstance(image, Image.Image) else image.shape[1::-1]  # type: ignore[attr-defined]
            mismatch = abs((w / h) / (width / height) - 1.0)
            if max_aspect_mismatch is not None and mismatch > max_aspect_mismatch:
                raise ValueError(
                    f"colour image {w} x {h} and depth image {width} x {height} have different "
                    f"aspect ratios ({mismatch:.1%} apart), so their centre crops would not line "
                    "up. Register the depth to the colour frame, or pass max_aspect_mismatch=None "
                    "to accept it as the released code does for 3RScan."
                )
            frames.append(preprocess_rgb(image, size=size))
        rgb = torch.stack(frames)

    return RGBDScene(
        depths=torch.stack(processed),
        intrinsics=k_t,
        poses=align_poses(
            pose_t,
            None
            if axis_align_matrix is None
            else _as_tensor(axis_align_matrix, "axis_align_matrix", torch.float32),
        ),
        images=rgb,
    )


# ---------------------------------------------------------------------------------------------
# Unprojection and patch positions
# ---------------------------------------------------------------------------------------------


def _check_geometry(depths: torch.Tensor, intrinsics: torch.Tensor, poses: torch.Tensor) -> None:
    if depths.ndim < 2:
        raise ValueError(f"depths must be (..., H, W); got shape {tuple(depths.shape)}")
    lead = depths.shape[:-2]
    if intrinsics.shape[-2:] not in ((3, 3), (4, 4)) or intrinsics.shape[:-2] != lead:
        raise ValueError(
            f"intrinsics must be {(*lead, 4, 4)} to match depths {tuple(depths.shape)}; got "
            f"{tuple(intrinsics.shape)}"
        )
    if poses.shape != (*lead, 4, 4):
        raise ValueError(
            f"poses must be {(*lead, 4, 4)} to match depths {tuple(depths.shape)}; got "
            f"{tuple(poses.shape)}"
        )
    if not bool(torch.isfinite(depths).all()) or bool((depths < 0).any()):
        bad = int((~torch.isfinite(depths) | (depths < 0)).sum())
        raise ValueError(
            f"depths has {bad} NaN, infinite or negative values; use 0 for 'no depth' "
            "(preprocess_depth(..., invalid='zero') does this)"
        )
    check_poses(poses)


def unproject_depth(
    depths: torch.Tensor, intrinsics: torch.Tensor, poses: torch.Tensor
) -> torch.Tensor:
    """Back-project every pixel of every view to world coordinates.

    Pixel ``(row v, column u)`` uses integer coordinates (no +0.5): ``x = (u - cx) z / fx``,
    ``y = (v - cy) z / fy``; ``[x, y, z, 1]`` is multiplied by the camera-to-world pose and
    divided by its fourth component. Zero depth is not masked: such pixels land at the camera
    centre, as in the released model (mask them with ``depths > 0`` if wanted).

    Parameters
    ----------
    depths
        ``(..., H, W)`` metres, e.g. ``(B, V, H, W)``.
    intrinsics
        ``(..., 4, 4)`` (or ``(..., 3, 3)``) intrinsics of the depth images.
    poses
        ``(..., 4, 4)`` camera-to-world poses.

    Returns
    -------
    torch.Tensor
        ``(..., H, W, 3)`` world xyz, in the dtype of ``depths``.
    """
    _check_geometry(depths, intrinsics, poses)
    height, width = depths.shape[-2:]
    rows = torch.arange(height, device=depths.device)
    cols = torch.arange(width, device=depths.device)
    return _unproject_grid(depths, intrinsics, poses, rows, cols)


def _unproject_grid(
    depths: torch.Tensor,
    intrinsics: torch.Tensor,
    poses: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    # Back-project the pixels at the crossings of ``rows`` and ``cols`` only. The maths per pixel
    # is the same as for the full image; only the batched matrix product may round the last bit
    # differently for a different pixel count.
    lead = depths.shape[:-2]
    dtype = depths.dtype
    k = intrinsics.to(dtype)
    fx, fy = k[..., 0, 0, None], k[..., 1, 1, None]
    cx, cy = k[..., 0, 2, None], k[..., 1, 2, None]
    grid_v, grid_u = torch.meshgrid(rows, cols, indexing="ij")
    z = depths[..., rows, :][..., cols].flatten(-2)  # (..., h*w)
    # Same operation order as the released code, so results agree to the last bit in float32.
    x = (grid_u.flatten() - cx) * z / fx
    y = (grid_v.flatten() - cy) * z / fy
    cam = torch.stack([x, y, z, torch.ones_like(x)], dim=-1)  # (..., h*w, 4)
    world = (poses.to(dtype) @ cam.transpose(-1, -2)).transpose(-1, -2)
    xyz = world[..., :3] / world[..., 3:]
    return xyz.reshape(*lead, rows.numel(), cols.numel(), 3)


def unproject_patches(
    depths: torch.Tensor,
    intrinsics: torch.Tensor,
    poses: torch.Tensor,
    *,
    patch_size: int = PATCH_SIZE,
    mode: Literal["top_left", "center"] = "top_left",
) -> torch.Tensor:
    """Patch positions straight from depth, back-projecting only the pixel each patch uses.

    Equal to ``patch_positions(unproject_depth(...), mode=mode)`` up to the last bit (the batched
    matrix product may round differently for fewer pixels; on 336 x 336 views it has matched
    exactly) at a fraction of the cost: 576 instead of 112,896 pixels per view. A point that sits
    exactly on a voxel boundary could change voxel, so the released-equivalent default of
    :class:`~eightfold.vision3d.assembly.LLaVA3DConfig` back-projects all pixels.

    Returns
    -------
    torch.Tensor
        ``(..., H / patch_size, W / patch_size, 3)``.
    """
    _check_geometry(depths, intrinsics, poses)
    height, width = depths.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image size {height} x {width} is not a multiple of patch_size={patch_size}; crop "
            "or resize to a multiple (336 x 336 gives a 24 x 24 grid)"
        )
    if mode not in ("top_left", "center"):
        raise ValueError(
            f"mode must be 'top_left' or 'center' here; got {mode!r} (use patch_positions on "
            "unproject_depth for 'mean')"
        )
    offset = 0 if mode == "top_left" else patch_size // 2
    rows = torch.arange(offset, height, patch_size, device=depths.device)
    cols = torch.arange(offset, width, patch_size, device=depths.device)
    return _unproject_grid(depths, intrinsics, poses, rows, cols)


def patch_positions(
    pixel_xyz: torch.Tensor,
    *,
    patch_size: int = PATCH_SIZE,
    mode: PatchPosition = "top_left",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """One 3D position per image patch.

    Parameters
    ----------
    pixel_xyz
        ``(..., H, W, 3)`` per-pixel world xyz (:func:`unproject_depth`); ``H`` and ``W`` must be
        multiples of ``patch_size``.
    mode
        ``"top_left"`` (default, the released behaviour and what the checkpoint was trained with):
        the xyz of pixel ``(patch_size * i, patch_size * j)``, i.e. nearest-neighbour
        downsampling. ``"center"``: the pixel ``(p*i + p//2, p*j + p//2)``. ``"mean"``: the
        average over the patch's pixels (over its valid pixels when ``valid`` is given), as
        third-party summaries describe the paper; not the released behaviour.
    valid
        ``(..., H, W)`` bool, pixels with depth; only used by ``"mean"``. A patch without any
        valid pixel falls back to the plain mean.

    Returns
    -------
    torch.Tensor
        ``(..., H / patch_size, W / patch_size, 3)``.
    """
    if pixel_xyz.ndim < 3 or pixel_xyz.shape[-1] != 3:
        raise ValueError(f"pixel_xyz must be (..., H, W, 3); got {tuple(pixel_xyz.shape)}")
    *lead, height, width, _ = pixel_xyz.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(
            f"image size {height} x {width} is not a multiple of patch_size={p}; crop or resize "
            f"to a multiple (336 x 336 gives a 24 x 24 grid)"
        )
    if mode == "top_left":
        return pixel_xyz[..., ::p, ::p, :].clone()
    if mode == "center":
        return pixel_xyz[..., p // 2 :: p, p // 2 :: p, :].clone()
    if mode == "mean":
        blocks = pixel_xyz.reshape(*lead, height // p, p, width // p, p, 3)
        if valid is None:
            return blocks.mean(dim=(-4, -2))
        w = valid.reshape(*lead, height // p, p, width // p, p, 1).to(pixel_xyz.dtype)
        count = w.sum(dim=(-4, -2))
        mean_valid = (blocks * w).sum(dim=(-4, -2)) / count.clamp_min(1)
        return torch.where(count > 0, mean_valid, blocks.mean(dim=(-4, -2)))
    raise ValueError(f"mode must be 'top_left', 'center' or 'mean'; got {mode!r}")


def patch_depth_valid(depths: torch.Tensor, *, patch_size: int = PATCH_SIZE) -> torch.Tensor:
    """``(..., H/p, W/p)`` bool: whether the top-left pixel of each patch has depth (> 0)."""
    return depths[..., ::patch_size, ::patch_size] > 0


# ---------------------------------------------------------------------------------------------
# The inverse: world points to pixels
# ---------------------------------------------------------------------------------------------


def project_points(
    xyz: torch.Tensor, intrinsics: torch.Tensor, poses: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points into views (the inverse of :func:`unproject_depth`).

    Parameters
    ----------
    xyz
        ``(N, 3)`` world points.
    intrinsics
        ``(V, 4, 4)`` intrinsics of the processed views.
    poses
        ``(V, 4, 4)`` camera-to-world poses.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``uv`` ``(V, N, 2)`` continuous pixel coordinates (column u, row v) in the integer-pixel
        convention of the unprojection (pixel ``(v, u)`` sits at ``(u, v)``; the nearest pixel is
        ``round(uv)``), and ``z`` ``(V, N)`` the depth along each camera's optical axis (points
        behind a camera have ``z <= 0``).
    """
    if xyz.ndim != 2 or xyz.shape[-1] != 3:
        raise ValueError(f"xyz must be (N, 3); got {tuple(xyz.shape)}")
    if poses.ndim != 3 or intrinsics.shape[0] != poses.shape[0]:
        raise ValueError(
            f"intrinsics and poses must be (V, 4, 4) with the same V; got "
            f"{tuple(intrinsics.shape)} and {tuple(poses.shape)}"
        )
    check_poses(poses)
    dtype = torch.float64  # inverting a pose in float32 would cost millimetres far from origin
    world_to_cam = torch.linalg.inv(poses.to(dtype))
    homo = torch.cat([xyz.to(dtype), torch.ones_like(xyz[:, :1], dtype=dtype)], dim=-1)
    cam = (world_to_cam @ homo.T).transpose(-1, -2)  # (V, N, 4)
    cam = cam[..., :3] / cam[..., 3:]
    k = intrinsics.to(dtype)
    z = cam[..., 2]
    safe_z = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    u = cam[..., 0] * k[:, None, 0, 0] / safe_z + k[:, None, 0, 2]
    v = cam[..., 1] * k[:, None, 1, 1] / safe_z + k[:, None, 1, 2]
    return torch.stack([u, v], dim=-1).to(xyz.dtype), z.to(xyz.dtype)


def lift_click(
    u: float,
    v: float,
    depth: torch.Tensor,
    intrinsics: torch.Tensor,
    pose: torch.Tensor,
) -> torch.Tensor:
    """Lift a click on a processed image to a world point by reading the depth under it.

    The paper's 2D-click prompt: the pixel nearest to ``(u, v)`` (column, row in the processed
    ``H x W`` frame) is back-projected exactly as :func:`unproject_depth` does, so the result is
    the 3D position of that pixel in the same scene frame as the 3D patches.

    Parameters
    ----------
    u, v
        Column and row of the click in the processed frame.
    depth
        ``(H, W)`` metres of that view.
    intrinsics, pose
        ``(4, 4)`` of that view.

    Returns
    -------
    torch.Tensor
        ``(3,)`` world xyz (float32).

    Raises
    ------
    ValueError
        If the click is outside the image or the pixel has no depth (0).
    """
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W) for one view; got {tuple(depth.shape)}")
    height, width = depth.shape
    col, row = round(float(u)), round(float(v))
    if not (0 <= col < width and 0 <= row < height):
        raise ValueError(
            f"click (u={u}, v={v}) is outside the {width} x {height} image; u is the column in "
            f"[0, {width - 1}] and v the row in [0, {height - 1}]"
        )
    z = float(depth[row, col])
    if not z > 0:
        raise ValueError(
            f"pixel (row {row}, column {col}) has no depth ({z}); click on a pixel with depth or "
            "inpaint the depth map first"
        )
    _check_geometry(depth, intrinsics, pose)
    index_r = torch.tensor([row], device=depth.device)
    index_c = torch.tensor([col], device=depth.device)
    # The same maths as unproject_depth on that one pixel.
    return _unproject_grid(depth, intrinsics, pose, index_r, index_c)[0, 0]


@dataclass(frozen=True)
class PixelLocation:
    """Where a world point appears: view index, pixel column ``u`` and row ``v``, and depth."""

    view: int
    u: int
    v: int
    depth: float


def visible_views(
    xyz: torch.Tensor,
    depths: torch.Tensor,
    intrinsics: torch.Tensor,
    poses: torch.Tensor,
    *,
    occlusion_tolerance: float | None = 0.05,
) -> list[PixelLocation]:
    """Every view in which a world point is inside the image, in front of the camera and (when
    ``occlusion_tolerance`` is set) not hidden: the depth map at its pixel is within the tolerance
    (metres) of the point's depth, or has no reading.

    Parameters
    ----------
    xyz
        ``(3,)`` world point.
    depths
        ``(V, H, W)`` processed depth in metres.
    intrinsics, poses
        ``(V, 4, 4)``.
    """
    if xyz.shape != (3,):
        raise ValueError(f"xyz must be one point of shape (3,); got {tuple(xyz.shape)}")
    if depths.ndim != 3:
        raise ValueError(f"depths must be (V, H, W); got {tuple(depths.shape)}")
    uv, z = project_points(xyz[None], intrinsics, poses)
    height, width = depths.shape[-2:]
    out = []
    for view in range(depths.shape[0]):
        if not float(z[view, 0]) > 0:
            continue
        col, row = round(float(uv[view, 0, 0])), round(float(uv[view, 0, 1]))
        if not (0 <= col < width and 0 <= row < height):
            continue
        measured = float(depths[view, row, col])
        if (
            occlusion_tolerance is not None
            and measured > 0
            and abs(measured - float(z[view, 0])) > occlusion_tolerance
        ):
            continue
        out.append(PixelLocation(view=view, u=col, v=row, depth=float(z[view, 0])))
    return out


def point_to_pixel(
    xyz: torch.Tensor,
    depths: torch.Tensor,
    intrinsics: torch.Tensor,
    poses: torch.Tensor,
    *,
    occlusion_tolerance: float | None = 0.05,
) -> PixelLocation:
    """The view and pixel that see a world point best (closest to the image centre).

    Raises
    ------
    ValueError
        If the point is outside every view (or hidden in all of them).
    """
    found = visible_views(xyz, depths, intrinsics, poses, occlusion_tolerance=occlusion_tolerance)
    if not found:
        raise ValueError(
            f"point {[round(float(c), 3) for c in xyz]} is outside every one of the "
            f"{depths.shape[0]} views (or hidden behind other surfaces in all of them); check that "
            "it is in the same (axis-aligned) frame as the poses, or add views that see it"
        )
    height, width = depths.shape[-2:]
    return min(found, key=lambda p: (p.u - width / 2) ** 2 + (p.v - height / 2) ** 2)
