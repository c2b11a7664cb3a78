"""LLaVA-3D end to end: scene tokens, coordinate tokens and their splicing into any causal LM.

The released model (Zhu et al., arXiv 2409.18125) turns a scene of posed RGB-D views into tokens:
CLIP patch features plus a 3D position embedding (3D patches), voxel pooling, a random cap of
2560 tokens, and the LLaVA projector (``mlp2x_gelu``) to the language model's width. The prompt
holds ``<image>`` where the scene goes (id -200 in ``input_ids``) and ``<boxes>`` where each
click goes (id -300); clicks are encoded straight to the language model's width. This module
builds those pieces around any Hugging Face causal LM; nothing here depends on Llama.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from eightfold.vision3d.geometry import (
    PatchPosition,
    patch_depth_valid,
    patch_positions,
    unproject_depth,
    unproject_patches,
)
from eightfold.vision3d.pooling import (
    MAX_SCENE_TOKENS,
    VOXEL_SIZE,
    PooledScene,
    cap_tokens,
    fps_pool,
    voxel_pool,
)
from eightfold.vision3d.position import PromptEncoder, SpatialAwareModule
from eightfold.vision3d.prompts import (
    BOXES_TOKEN,
    IMAGE_TOKEN,
    IMAGE_TOKEN_INDEX,
    LOC_TOKEN_INDEX,
    VIDEO_TOKEN,
)

logger = logging.getLogger(__name__)

__all__ = [
    "IGNORE_INDEX",
    "LLaVA3D",
    "LLaVA3DConfig",
    "MultimodalInputs",
    "SceneEncoding",
    "build_projector",
    "clip_patch_features",
    "conversation_prompt",
    "encode_scene",
    "splice_embeddings",
    "tokenize_multimodal",
]

IGNORE_INDEX = -100  # label of positions that carry no loss (scene, click and padding tokens)

# The llava_v1 conversation template that the released checkpoint was tuned with.
_LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(kw_only=True)
class LLaVA3DConfig:
    """Settings of the 3D pathway. Defaults are the released model's (preset ``v1_released``).

    Attributes
    ----------
    vision_hidden_size
        Width of the patch features (1024 for CLIP ViT-L/14-336).
    projector_type
        ``"mlp2x_gelu"`` (released), ``"mlp<N>x_gelu"``, ``"linear"`` or ``"identity"``.
    pooling
        ``"voxelize"`` (released) or ``"fps"`` (the paper's alternative).
    voxel_size
        Voxel edge in metres (0.2 released).
    max_scene_tokens
        Cap on voxel tokens per scene (2560 released); ``None`` disables it.
    num_sample_tokens
        Tokens per scene for FPS (1152 in the released config, where it is unused).
    num_frames
        Views per scene (20 released).
    patch_position
        ``"top_left"`` (released), ``"center"`` or ``"mean"``; see
        :func:`~eightfold.vision3d.geometry.patch_positions`.
    mask_invalid_depth
        Drop patches without depth before pooling. The released model keeps them (they sit at the
        camera centre).
    cap_seed
        Seed of the cap's random subset; ``None`` uses PyTorch's global RNG like the released
        code (not repeatable).
    cap_keep_order
        Keep capped tokens in voxel order instead of the released random order.
    unproject
        ``"all_pixels"`` (released): back-project every pixel, then take each patch's pixel.
        ``"patch_pixels"``: back-project only the pixel each patch uses; the same positions up
        to the last float bit, about 200 times less work.
    max_length
        Truncate assembled sequences to this many tokens (4096 released); ``None`` keeps all.
    """

    vision_hidden_size: int = 1024
    projector_type: str = "mlp2x_gelu"
    pooling: Literal["voxelize", "fps"] = "voxelize"
    voxel_size: float = VOXEL_SIZE
    max_scene_tokens: int | None = MAX_SCENE_TOKENS
    num_sample_tokens: int = 1152
    num_frames: int = 20
    patch_position: PatchPosition = "top_left"
    mask_invalid_depth: bool = False
    cap_seed: int | None = 0
    cap_keep_order: bool = False
    unproject: Literal["all_pixels", "patch_pixels"] = "all_pixels"
    max_length: int | None = 4096
    preset: str = field(default="v1_released")

    def __post_init__(self) -> None:
        if self.vision_hidden_size <= 0:
            raise ValueError(f"vision_hidden_size must be positive; got {self.vision_hidden_size}")
        if self.pooling not in ("voxelize", "fps"):
            raise ValueError(f"pooling must be 'voxelize' or 'fps'; got {self.pooling!r}")
        if not self.voxel_size > 0:
            raise ValueError(f"voxel_size must be positive metres; got {self.voxel_size}")
        if self.max_scene_tokens is not None and self.max_scene_tokens <= 0:
            raise ValueError(
                f"max_scene_tokens must be positive or None; got {self.max_scene_tokens}"
            )
        if self.num_sample_tokens <= 0 or self.num_frames <= 0:
            raise ValueError(
                f"num_sample_tokens and num_frames must be positive; got "
                f"{self.num_sample_tokens} and {self.num_frames}"
            )
        if self.patch_position not in ("top_left", "center", "mean"):
            raise ValueError(
                f"patch_position must be 'top_left', 'center' or 'mean'; got "
                f"{self.patch_position!r}"
            )
        if self.unproject not in ("all_pixels", "patch_pixels"):
            raise ValueError(
                f"unproject must be 'all_pixels' or 'patch_pixels'; got {self.unproject!r}"
            )
        if self.max_length is not None and self.max_length <= 0:
            raise ValueError(f"max_length must be positive or None; got {self.max_length}")
        _projector_depth(self.projector_type)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> LLaVA3DConfig:
        """``"v1_released"``: the released code and checkpoint (default settings).
        ``"v3_paper"``: the ICCV version's reported settings (32 views, 3096 tokens by FPS);
        unverified, no public code or weights use them."""
        presets: dict[str, dict[str, Any]] = {
            "v1_released": {},
            "v3_paper": {
                "num_frames": 32,
                "pooling": "fps",
                "num_sample_tokens": 3096,
                "max_scene_tokens": 3096,
            },
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
        return cls(preset=name, **{**presets[name], **overrides})


def _projector_depth(projector_type: str) -> int:
    if projector_type == "linear":
        return 1
    if projector_type == "identity":
        return 0
    match = re.fullmatch(r"mlp(\d+)x_gelu", projector_type)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(
            f"projector_type must be 'linear', 'identity' or 'mlp<N>x_gelu' (e.g. 'mlp2x_gelu', "
            f"the released one); got {projector_type!r}"
        )
    return int(match.group(1))


def build_projector(projector_type: str, in_features: int, out_features: int) -> nn.Module:
    """The LLaVA multimodal projector from patch width to language-model width.

    ``mlp2x_gelu`` is ``Linear(in, out) -> GELU -> Linear(out, out)`` with parameters ``0.*`` and
    ``2.*``, the released checkpoint's ``model.mm_projector.{0,2}`` layout.
    """
    depth = _projector_depth(projector_type)
    if depth == 0:
        if in_features != out_features:
            raise ValueError(
                f"an identity projector needs equal widths; got {in_features} -> {out_features}"
            )
        return nn.Identity()
    if projector_type == "linear":
        return nn.Linear(in_features, out_features)
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    for _ in range(1, depth):
        layers += [nn.GELU(), nn.Linear(out_features, out_features)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------
# Scene tokens
# ---------------------------------------------------------------------------------------------


@dataclass
class SceneEncoding:
    """What :func:`encode_scene` computes for a batch of scenes.

    Attributes
    ----------
    pooled
        The pooled 3D patch features (feature width ``C``), before the cap and projector.
    patch_xyz
        ``(B, V, h, w, 3)`` patch positions.
    pe_features
        ``(B, V*h*w, C)`` 3D patches (CLIP feature + position embedding), (view, row, col) order.
    """

    pooled: PooledScene
    patch_xyz: torch.Tensor
    pe_features: torch.Tensor

    @property
    def num_patches(self) -> int:
        return int(self.pe_features.shape[1])


def encode_scene(
    features: torch.Tensor,
    depths: torch.Tensor,
    poses: torch.Tensor,
    intrinsics: torch.Tensor,
    spatial_module: SpatialAwareModule,
    *,
    config: LLaVA3DConfig | None = None,
) -> SceneEncoding:
    """3D patches and pooling of the released video tower.

    Parameters
    ----------
    features
        ``(B, V, C, h, w)`` channel-first CLIP patch features (``h = H / 14``), as the released
        tower receives them.
    depths
        ``(B, V, H, W)`` processed depth in metres.
    poses, intrinsics
        ``(B, V, 4, 4)`` camera-to-world poses and processed intrinsics.
    spatial_module
        The position embedding of width ``C``.
    config
        Pooling settings (default: released).
    """
    config = config or LLaVA3DConfig(vision_hidden_size=spatial_module.latent_dim)
    if features.ndim != 5:
        raise ValueError(
            f"features must be (B, V, C, h, w) channel-first patch features; got "
            f"{tuple(features.shape)}. Reshape (B*V, h*w, C) CLIP outputs with "
            ".reshape(B, V, h, w, C).permute(0, 1, 4, 2, 3)."
        )
    batch, views, channels, h, w = features.shape
    if depths.shape[:2] != (batch, views):
        raise ValueError(
            f"depths must be (B={batch}, V={views}, H, W) to match features; got "
            f"{tuple(depths.shape)}"
        )
    height, width = depths.shape[-2:]
    if height % h or width % w or height // h != width // w:
        raise ValueError(
            f"depth size {height} x {width} is not a whole multiple of the feature grid {h} x {w}; "
            "use 336 x 336 depth for a 24 x 24 CLIP grid"
        )
    patch = height // h
    if config.unproject == "patch_pixels" and config.patch_position != "mean":
        xyz = unproject_patches(
            depths, intrinsics, poses, patch_size=patch, mode=config.patch_position
        )
    else:
        pixel_xyz = unproject_depth(depths, intrinsics, poses)
        xyz = patch_positions(
            pixel_xyz, patch_size=patch, mode=config.patch_position, valid=depths > 0
        )
    flat = features.permute(0, 1, 3, 4, 2).reshape(batch, views * h * w, channels)
    pe = spatial_module(flat, xyz.reshape(batch, -1, 3))
    valid = None
    if config.mask_invalid_depth:
        valid = patch_depth_valid(depths, patch_size=patch).reshape(batch, -1)
    if config.pooling == "voxelize":
        pooled = voxel_pool(xyz, pe, voxel_size=config.voxel_size, valid=valid)
    else:
        if valid is not None:
            raise NotImplementedError(
                "mask_invalid_depth with FPS pooling is not supported; FPS rarely picks the "
                "camera-centre points more than once. Use pooling='voxelize' to mask."
            )
        pooled = fps_pool(xyz, pe, num_samples=config.num_sample_tokens)
    return SceneEncoding(pooled=pooled, patch_xyz=xyz, pe_features=pe)


def clip_patch_features(
    vision_model: nn.Module, pixel_values: torch.Tensor, *, select_layer: int = -2
) -> torch.Tensor:
    """Patch features of a CLIP vision model as LLaVA uses them.

    Parameters
    ----------
    vision_model
        A ``transformers`` ``CLIPVisionModel`` (any size).
    pixel_values
        ``(N, 3, H, W)`` CLIP-normalised frames.
    select_layer
        Hidden-state index (-2: the penultimate layer, released).

    Returns
    -------
    torch.Tensor
        ``(N, h*w, C)``: the CLS token is dropped.
    """
    out = vision_model(pixel_values, output_hidden_states=True)
    return out.hidden_states[select_layer][:, 1:]


# ---------------------------------------------------------------------------------------------
# Prompts and token ids
# ---------------------------------------------------------------------------------------------


def conversation_prompt(question: str, *, with_scene: bool = True) -> str:
    """The ``llava_v1`` prompt of the released checkpoint for one question.

    ``"<system> USER: <image>\\n<question> ASSISTANT:"``; ``<image>`` marks where the scene tokens
    go and is left out with ``with_scene=False``.
    """
    body = f"{IMAGE_TOKEN}\n{question}" if with_scene else question
    return f"{_LLAVA_V1_SYSTEM} USER: {body} ASSISTANT:"


_PLACEHOLDERS = re.compile(
    f"({re.escape(IMAGE_TOKEN)}|{re.escape(VIDEO_TOKEN)}|{re.escape(BOXES_TOKEN)})"
)


def tokenize_multimodal(prompt: str, tokenizer: Any, *, add_bos: bool = True) -> list[int]:
    """Token ids of a prompt with ``<image>``/``<video>`` as -200 and ``<boxes>`` as -300.

    Each text chunk between placeholders is tokenised on its own (as LLaVA does), and only the
    first chunk keeps the tokenizer's BOS token.
    """
    ids: list[int] = []
    bos = getattr(tokenizer, "bos_token_id", None)
    if add_bos and bos is not None:
        ids.append(int(bos))
    for piece in _PLACEHOLDERS.split(prompt):
        if piece in (IMAGE_TOKEN, VIDEO_TOKEN):
            ids.append(IMAGE_TOKEN_INDEX)
        elif piece == BOXES_TOKEN:
            ids.append(LOC_TOKEN_INDEX)
        elif piece:
            chunk = tokenizer(piece, add_special_tokens=False)["input_ids"]
            ids.extend(int(t) for t in chunk)
    return ids


# ---------------------------------------------------------------------------------------------
# Splicing
# ---------------------------------------------------------------------------------------------


@dataclass
class MultimodalInputs:
    """Language-model inputs with scene and click tokens spliced in.

    Attributes
    ----------
    inputs_embeds
        ``(B, T, D)``.
    attention_mask
        ``(B, T)`` long, 0 on padding.
    position_ids
        ``(B, T)`` long, counting real tokens from 0 (padding gets 0).
    labels
        ``(B, T)`` long with :data:`IGNORE_INDEX` on scene, click and padding positions, or
        ``None`` when no labels were given.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None = None


def _as_rows(input_ids: torch.Tensor | Sequence[Sequence[int]]) -> list[torch.Tensor]:
    if isinstance(input_ids, torch.Tensor):
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (B, T); got {tuple(input_ids.shape)}")
        return list(input_ids)
    return [torch.as_tensor(list(row), dtype=torch.long) for row in input_ids]


def splice_embeddings(
    input_ids: torch.Tensor | Sequence[Sequence[int]],
    embed_tokens: nn.Module,
    *,
    scene_tokens: Sequence[torch.Tensor | Sequence[torch.Tensor] | None] | None = None,
    click_tokens: Sequence[torch.Tensor | None] | None = None,
    labels: torch.Tensor | Sequence[Sequence[int]] | None = None,
    attention_mask: torch.Tensor | None = None,
    max_length: int | None = None,
    padding_side: Literal["right", "left"] = "right",
) -> MultimodalInputs:
    """Replace -200 placeholders by scene tokens and -300 placeholders by click tokens.

    Parameters
    ----------
    input_ids
        ``(B, T)`` ids (or B lists of different lengths) holding :data:`IMAGE_TOKEN_INDEX` and
        :data:`LOC_TOKEN_INDEX` placeholders. With ``attention_mask``, masked positions are
        dropped first (so padded batches can be passed as they are).
    embed_tokens
        The language model's input embedding (``model.get_input_embeddings()``).
    scene_tokens
        Per sample, ``(M, D)`` tokens (or a list of them, one per -200 in order), or ``None``.
    click_tokens
        Per sample, ``(K, D)`` tokens, one per -300 in order, or ``None``.
    labels
        Optional ``(B, T)`` labels aligned with ``input_ids``; placeholders get
        :data:`IGNORE_INDEX` for every token they expand to.
    max_length
        Truncate each spliced sequence to this many tokens (from the right).
    padding_side
        Where padding goes in the batch (``"left"`` for generation).

    Raises
    ------
    ValueError
        If a sample's placeholder count differs from its scene or click token count (the
        released code fails later with an IndexError in that case).
    """
    rows = _as_rows(input_ids)
    batch = len(rows)
    label_rows = _as_rows(labels) if labels is not None else None
    if attention_mask is not None:
        if attention_mask.shape != (batch, rows[0].numel()):
            raise ValueError(
                f"attention_mask must match input_ids {(batch, rows[0].numel())}; got "
                f"{tuple(attention_mask.shape)}"
            )
        keep = [m.bool() for m in attention_mask]
        rows = [r[k] for r, k in zip(rows, keep, strict=True)]
        if label_rows is not None:
            label_rows = [r[k] for r, k in zip(label_rows, keep, strict=True)]
    scenes = list(scene_tokens) if scene_tokens is not None else [None] * batch
    clicks = list(click_tokens) if click_tokens is not None else [None] * batch
    if len(scenes) != batch or len(clicks) != batch:
        raise ValueError(
            f"scene_tokens ({len(scenes)}) and click_tokens ({len(clicks)}) need one entry per "
            f"sample ({batch}); use None for a sample without them"
        )
    weight = next(iter(embed_tokens.parameters()))
    dtype, device = weight.dtype, weight.device

    embeds_out, labels_out = [], []
    for b, ids in enumerate(rows):
        ids = ids.to(device)
        entry = scenes[b]
        scene_list: list[torch.Tensor]
        if entry is None:
            scene_list = []
        elif isinstance(entry, torch.Tensor):
            scene_list = [entry]
        else:
            scene_list = list(entry)
        click = clicks[b]
        n_scene = int((ids == IMAGE_TOKEN_INDEX).sum())
        n_click = int((ids == LOC_TOKEN_INDEX).sum())
        n_click_tokens = 0 if click is None else int(click.shape[0])
        if n_scene != len(scene_list):
            raise ValueError(
                f"sample {b} has {n_scene} scene placeholder(s) (<image>, id {IMAGE_TOKEN_INDEX}) "
                f"but {len(scene_list)} scene token set(s); give one set per placeholder"
            )
        if n_click != n_click_tokens:
            raise ValueError(
                f"sample {b} has {n_click} <boxes> placeholder(s) (id {LOC_TOKEN_INDEX}) but "
                f"{n_click_tokens} click token(s); give exactly one click per <boxes> "
                "(parse_click_prompt(..., mode='strict') keeps them matched)"
            )
        text_ids = ids.clamp_min(0)
        text = embed_tokens(text_ids).to(dtype)
        lab = label_rows[b].to(device) if label_rows is not None else None
        pieces, piece_labels = [], []
        scene_i = click_i = 0
        start = 0
        special = torch.nonzero(ids < 0).flatten().tolist()
        for pos in [*special, ids.numel()]:
            if pos > start:
                pieces.append(text[start:pos])
                if lab is not None:
                    piece_labels.append(lab[start:pos])
            if pos == ids.numel():
                break
            tag = int(ids[pos])
            if tag == IMAGE_TOKEN_INDEX:
                insert = scene_list[scene_i].to(device=device, dtype=dtype)
                scene_i += 1
            elif tag == LOC_TOKEN_INDEX:
                assert click is not None
                insert = click[click_i : click_i + 1].to(device=device, dtype=dtype)
                click_i += 1
            else:
                raise ValueError(
                    f"sample {b} holds the negative token id {tag} at position {pos}; only "
                    f"{IMAGE_TOKEN_INDEX} (scene) and {LOC_TOKEN_INDEX} (click) are placeholders"
                )
            if insert.ndim != 2 or insert.shape[1] != text.shape[1]:
                raise ValueError(
                    f"tokens spliced into sample {b} must be (N, {text.shape[1]}) (the language "
                    f"model's width); got {tuple(insert.shape)}. Project scene features first."
                )
            pieces.append(insert)
            if lab is not None:
                piece_labels.append(
                    torch.full((insert.shape[0],), IGNORE_INDEX, dtype=torch.long, device=device)
                )
            start = pos + 1
        seq = torch.cat(pieces) if pieces else text[:0]
        seq_labels = torch.cat(piece_labels) if piece_labels else None
        if max_length is not None and seq.shape[0] > max_length:
            logger.warning(
                "sample %d has %d tokens after splicing; truncated to max_length=%d",
                b,
                seq.shape[0],
                max_length,
            )
            seq = seq[:max_length]
            seq_labels = seq_labels[:max_length] if seq_labels is not None else None
        embeds_out.append(seq)
        labels_out.append(seq_labels)

    longest = max(e.shape[0] for e in embeds_out)
    width = embeds_out[0].shape[1]
    inputs_embeds = torch.zeros(batch, longest, width, dtype=dtype, device=device)
    mask = torch.zeros(batch, longest, dtype=torch.long, device=device)
    positions = torch.zeros(batch, longest, dtype=torch.long, device=device)
    out_labels = (
        torch.full((batch, longest), IGNORE_INDEX, dtype=torch.long, device=device)
        if label_rows is not None
        else None
    )
    for b, seq in enumerate(embeds_out):
        n = seq.shape[0]
        span = slice(0, n) if padding_side == "right" else slice(longest - n, longest)
        inputs_embeds[b, span] = seq
        mask[b, span] = 1
        positions[b, span] = torch.arange(n, device=device)
        seq_lab = labels_out[b]
        if out_labels is not None and seq_lab is not None:
            out_labels[b, span] = seq_lab
    return MultimodalInputs(
        inputs_embeds=inputs_embeds,
        attention_mask=mask,
        position_ids=positions,
        labels=out_labels,
    )


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class LLaVA3D(nn.Module):
    """LLaVA-3D around any Hugging Face causal language model (arXiv 2409.18125).

    Parameters
    ----------
    language_model
        A ``PreTrainedModel`` with ``get_input_embeddings()`` that accepts ``inputs_embeds``.
    config
        3D pathway settings (released by default).
    vision_tower
        Optional CLIP ``CLIPVisionModel``; without it, pass CLIP patch features yourself.

    Attributes
    ----------
    spatial_module
        3D position embedding of width ``config.vision_hidden_size``.
    mm_projector
        Patch width -> language-model width.
    prompt_encoder
        Click encoder at the language model's width.
    """

    language_model: Any

    def __init__(
        self,
        language_model: nn.Module,
        config: LLaVA3DConfig | None = None,
        *,
        vision_tower: nn.Module | None = None,
        select_layer: int = -2,
    ) -> None:
        super().__init__()
        self.config = config or LLaVA3DConfig()
        hidden = getattr(getattr(language_model, "config", None), "hidden_size", None)
        if hidden is None or not hasattr(language_model, "get_input_embeddings"):
            raise TypeError(
                "language_model must be a Hugging Face causal LM (config.hidden_size and "
                f"get_input_embeddings()); got {type(language_model).__name__}"
            )
        self.language_model = language_model
        self.vision_tower = vision_tower
        self.select_layer = select_layer
        self.spatial_module = SpatialAwareModule(self.config.vision_hidden_size)
        self.mm_projector = build_projector(
            self.config.projector_type, self.config.vision_hidden_size, int(hidden)
        )
        self.prompt_encoder = PromptEncoder(int(hidden))

    @property
    def hidden_size(self) -> int:
        return int(self.language_model.config.hidden_size)

    def patch_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3, H, W)`` frames -> ``(B, V, C, h, w)`` CLIP patch features (frozen tower)."""
        if self.vision_tower is None:
            raise ValueError(
                "this LLaVA3D has no vision_tower; pass CLIP patch features (features=...) or "
                "build it with vision_tower=CLIPVisionModel(...)"
            )
        if pixel_values.ndim != 5:
            raise ValueError(
                f"pixel_values must be (B, V, 3, H, W); got {tuple(pixel_values.shape)}"
            )
        b, v = pixel_values.shape[:2]
        dtype = next(self.vision_tower.parameters()).dtype
        with torch.no_grad():
            feats = clip_patch_features(
                self.vision_tower,
                pixel_values.flatten(0, 1).to(dtype),
                select_layer=self.select_layer,
            )
        side = round(feats.shape[1] ** 0.5)
        return feats.reshape(b, v, side, side, -1).permute(0, 1, 4, 2, 3)

    def encode_scenes(
        self,
        features: torch.Tensor,
        depths: torch.Tensor,
        poses: torch.Tensor,
        intrinsics: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Scene tokens at the language model's width, one ``(M_b, D)`` tensor per scene.

        Parameters
        ----------
        features
            ``(B, V, C, h, w)`` CLIP patch features.
        depths, poses, intrinsics
            ``(B, V, H, W)`` metres, ``(B, V, 4, 4)``, ``(B, V, 4, 4)``.
        generator
            Random source of the token cap (default: a generator seeded with
            ``config.cap_seed``).
        """
        # Geometry stays in float32 (depths, poses); features follow the weights' dtype. The
        # released scripts cast the geometry to bfloat16 too, which moves points by up to ~4 cm.
        dtype = next(self.spatial_module.parameters()).dtype
        encoded = encode_scene(
            features.to(dtype), depths, poses, intrinsics, self.spatial_module, config=self.config
        )
        if generator is None and self.config.cap_seed is not None:
            # One generator per call, so the scenes of a batch get different subsets.
            generator = torch.Generator().manual_seed(self.config.cap_seed)
        tokens = []
        for scene in encoded.pooled.split():
            if self.config.max_scene_tokens is not None:
                scene, _ = cap_tokens(
                    scene,
                    self.config.max_scene_tokens,
                    seed=None,
                    generator=generator,
                    keep_order=self.config.cap_keep_order,
                )
            tokens.append(self.mm_projector(scene))
        return tokens

    def encode_images(self, features: torch.Tensor) -> torch.Tensor:
        """2D path: ``(B, N, C)`` image patch features -> ``(B, N, D)`` with no position."""
        return self.mm_projector(self.spatial_module.encode_2d(features, ddp_trick=self.training))

    def encode_clicks(self, clicks: torch.Tensor) -> torch.Tensor:
        """``(K, 3)`` clicks -> ``(K, D)`` tokens."""
        return self.prompt_encoder(clicks.to(next(self.prompt_encoder.parameters()).dtype))

    def prepare_inputs(
        self,
        input_ids: torch.Tensor | Sequence[Sequence[int]],
        *,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        scene_tokens: Sequence[torch.Tensor | None] | None = None,
        clicks: Sequence[torch.Tensor | None] | None = None,
        padding_side: Literal["right", "left"] = "right",
    ) -> MultimodalInputs:
        """Splice scene tokens and encoded clicks into the language model's input embeddings."""
        click_tokens = None
        if clicks is not None:
            click_tokens = [None if c is None else self.encode_clicks(c) for c in clicks]
        return splice_embeddings(
            input_ids,
            self.language_model.get_input_embeddings(),
            scene_tokens=scene_tokens,
            click_tokens=click_tokens,
            labels=labels,
            attention_mask=attention_mask,
            max_length=self.config.max_length,
            padding_side=padding_side,
        )

    def forward(
        self,
        input_ids: torch.Tensor | Sequence[Sequence[int]],
        *,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        depths: torch.Tensor | None = None,
        poses: torch.Tensor | None = None,
        intrinsics: torch.Tensor | None = None,
        clicks: Sequence[torch.Tensor | None] | None = None,
    ) -> Any:
        """Language-model outputs (loss when ``labels`` are given) for prompts with scenes.

        Give the scene as CLIP ``features`` ``(B, V, C, h, w)`` or ``pixel_values``
        ``(B, V, 3, H, W)`` (with a vision tower), plus ``depths``, ``poses``, ``intrinsics``.
        """
        inputs = self.prepare_inputs(
            input_ids,
            attention_mask=attention_mask,
            labels=labels,
            scene_tokens=self._scene_tokens(features, pixel_values, depths, poses, intrinsics),
            clicks=clicks,
        )
        return self.language_model(
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=inputs.attention_mask,
            position_ids=inputs.position_ids,
            labels=inputs.labels,
        )

    def _scene_tokens(
        self,
        features: torch.Tensor | None,
        pixel_values: torch.Tensor | None,
        depths: torch.Tensor | None,
        poses: torch.Tensor | None,
        intrinsics: torch.Tensor | None,
    ) -> list[torch.Tensor | None] | None:
        if features is None and pixel_values is None:
            return None
        if depths is None or poses is None or intrinsics is None:
            raise ValueError(
                "a scene needs depths, poses and intrinsics besides its features; pass all four"
            )
        if features is None:
            assert pixel_values is not None
            features = self.patch_features(pixel_values)
        return list(self.encode_scenes(features, depths, poses, intrinsics))

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | Sequence[Sequence[int]],
        *,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        depths: torch.Tensor | None = None,
        poses: torch.Tensor | None = None,
        intrinsics: torch.Tensor | None = None,
        clicks: Sequence[torch.Tensor | None] | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Generate continuations; returns only the new token ids ``(B, new_tokens)``.

        Greedy by default (``do_sample=False``), unlike the released evaluation scripts
        (temperature 0.2 sampling), so answers are repeatable.
        """
        inputs = self.prepare_inputs(
            input_ids,
            attention_mask=attention_mask,
            scene_tokens=self._scene_tokens(features, pixel_values, depths, poses, intrinsics),
            clicks=clicks,
            padding_side="left",
        )
        generate_kwargs.setdefault("do_sample", False)
        return self.language_model.generate(
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=inputs.attention_mask,
            **generate_kwargs,
        )
