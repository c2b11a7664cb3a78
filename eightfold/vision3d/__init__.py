"""LLaVA-3D (Zhu et al., arXiv 2409.18125): 3D patches for a 2D multimodal language model.

Posed RGB-D views are preprocessed (:mod:`~eightfold.vision3d.geometry`), every CLIP patch gets
a world position and a learned position embedding (:mod:`~eightfold.vision3d.position`), the 3D
patches are pooled into voxels or by farthest point sampling (:mod:`~eightfold.vision3d.pooling`),
and the resulting scene tokens and ``[x, y, z]`` click tokens (:mod:`~eightfold.vision3d.prompts`)
are spliced into any Hugging Face causal LM (:mod:`~eightfold.vision3d.assembly`). The released
checkpoint loads through :mod:`~eightfold.vision3d.checkpoint`. Defaults follow the released code
(``ZCMax/LLaVA-3D``); the paper's variants are named options.
"""

from __future__ import annotations

from eightfold.vision3d.assembly import (
    IGNORE_INDEX,
    LLaVA3D,
    LLaVA3DConfig,
    MultimodalInputs,
    SceneEncoding,
    build_projector,
    clip_patch_features,
    conversation_prompt,
    encode_scene,
    splice_embeddings,
    tokenize_multimodal,
)
from eightfold.vision3d.checkpoint import (
    CheckpointReport,
    load_llava3d,
    map_released_key,
    read_released_config,
    released_key,
    save_released_checkpoint,
)
from eightfold.vision3d.frames import (
    load_rgbd_scene,
    sample_frame_indices,
    select_frames,
    select_frames_by_score,
    valid_pose_mask,
)
from eightfold.vision3d.geometry import (
    DEPTH_SCALES,
    PixelLocation,
    RGBDScene,
    adjust_intrinsics,
    align_poses,
    lift_click,
    patch_positions,
    point_to_pixel,
    preprocess_depth,
    preprocess_rgb,
    preprocess_scene,
    project_points,
    unproject_depth,
    unproject_patches,
    visible_views,
)
from eightfold.vision3d.pooling import (
    PooledScene,
    cap_tokens,
    farthest_point_sampling,
    fps_pool,
    voxel_pool,
    voxelize,
)
from eightfold.vision3d.position import (
    PositionEmbeddingMLP,
    PromptEncoder,
    SpatialAwareModule,
    patches_3d,
)
from eightfold.vision3d.prompts import (
    BOXES_TOKEN,
    IMAGE_TOKEN_INDEX,
    LOC_TOKEN_INDEX,
    ClickPrompt,
    expand_box_prompt,
    extract_boxes,
    fill_boxes,
    format_boxes,
    parse_click_prompt,
    training_clicks,
)
from eightfold.vision3d.scene import SyntheticScene, render_synthetic_scene

__all__ = [
    "BOXES_TOKEN",
    "DEPTH_SCALES",
    "IGNORE_INDEX",
    "IMAGE_TOKEN_INDEX",
    "LOC_TOKEN_INDEX",
    "CheckpointReport",
    "ClickPrompt",
    "LLaVA3D",
    "LLaVA3DConfig",
    "MultimodalInputs",
    "PixelLocation",
    "PooledScene",
    "PositionEmbeddingMLP",
    "PromptEncoder",
    "RGBDScene",
    "SceneEncoding",
    "SpatialAwareModule",
    "SyntheticScene",
    "adjust_intrinsics",
    "align_poses",
    "build_projector",
    "cap_tokens",
    "clip_patch_features",
    "conversation_prompt",
    "encode_scene",
    "expand_box_prompt",
    "extract_boxes",
    "farthest_point_sampling",
    "fill_boxes",
    "format_boxes",
    "fps_pool",
    "lift_click",
    "load_llava3d",
    "load_rgbd_scene",
    "map_released_key",
    "parse_click_prompt",
    "patch_positions",
    "patches_3d",
    "point_to_pixel",
    "preprocess_depth",
    "preprocess_rgb",
    "preprocess_scene",
    "project_points",
    "read_released_config",
    "released_key",
    "render_synthetic_scene",
    "sample_frame_indices",
    "save_released_checkpoint",
    "select_frames",
    "select_frames_by_score",
    "splice_embeddings",
    "tokenize_multimodal",
    "training_clicks",
    "unproject_depth",
    "unproject_patches",
    "valid_pose_mask",
    "visible_views",
    "voxel_pool",
    "voxelize",
]
