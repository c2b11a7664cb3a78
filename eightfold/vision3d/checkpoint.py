"""Loading the released LLaVA-3D checkpoint (``ChaimZhu/LLaVA-3D-7B``) from a local folder.

The released folder holds a LLaVA-style ``config.json`` (``model_type: llava_llama``) and
safetensors shards whose keys follow the released module tree. :func:`load_llava3d` builds a
:class:`~eightfold.vision3d.assembly.LLaVA3D` around a plain ``LlamaForCausalLM``, maps every key
onto it and reports what was missing or unexpected. Nothing is downloaded: fetch the folder
first where there is a network (``huggingface-cli download ChaimZhu/LLaVA-3D-7B``). Only
safetensors files are read; pickled ``.bin`` weights are refused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eightfold.storage import atomic_dir, atomic_write_json
from eightfold.vision3d.assembly import LLaVA3D, LLaVA3DConfig

logger = logging.getLogger(__name__)

__all__ = [
    "KEY_PREFIXES",
    "CheckpointReport",
    "llava3d_config_from_dict",
    "load_llava3d",
    "map_released_key",
    "read_released_config",
    "released_key",
    "save_released_checkpoint",
]

# Released key prefix -> prefix in LLaVA3D, most specific first.
KEY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.video_tower.video_tower.", "spatial_module."),
    ("model.video_tower.prompt_encoder.", "prompt_encoder."),
    ("model.mm_projector.", "mm_projector."),
    ("model.vision_tower.vision_tower.", "vision_tower."),
    ("lm_head.", "language_model.lm_head."),
    ("model.", "language_model.model."),
)

# Fields of the released config.json that belong to the multimodal wrapper, not the LLM.
_MM_FIELDS = (
    "mm_",
    "num_frames",
    "num_sample_tokens",
    "tune_",
    "freeze_",
    "image_aspect_ratio",
    "tokenizer_",
    "unfreeze_",
    "use_mm_",
    "mm_video_tower",
    "video_tower",
    "prompt_encoder",
)


def map_released_key(key: str) -> str | None:
    """The ``LLaVA3D`` parameter name of a released checkpoint key (``None`` if it has none)."""
    for old, new in KEY_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def released_key(name: str) -> str | None:
    """The released checkpoint key of an ``LLaVA3D`` parameter name (inverse of
    :func:`map_released_key`)."""
    for old, new in reversed(KEY_PREFIXES):
        if name.startswith(new):
            return old + name[len(new) :]
    return None


@dataclass
class CheckpointReport:
    """What loading a checkpoint did.

    Attributes
    ----------
    loaded
        Model parameters filled from the checkpoint.
    missing
        Model parameters the checkpoint did not provide (left as initialised).
    unexpected
        Checkpoint keys with no place in the model (released names).
    mismatched
        ``(key, checkpoint shape, model shape)`` of keys whose shapes disagree (not loaded).
    config
        The released config fields that were read.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every model parameter was loaded and nothing was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (
            f"{len(self.loaded)} loaded, {len(self.missing)} missing, {len(self.unexpected)} "
            f"unexpected, {len(self.mismatched)} with mismatched shapes"
        )


def read_released_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of a released LLaVA-3D folder as a dict."""
    root = Path(folder)
    path = root / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(root)!r} has no config.json; pass the folder of the released checkpoint "
            "(e.g. downloaded with `huggingface-cli download ChaimZhu/LLaVA-3D-7B`)"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def llava3d_config_from_dict(config: dict[str, Any], **overrides: Any) -> LLaVA3DConfig:
    """The pathway settings recorded in a released config (projector, widths, views, length)."""
    fields: dict[str, Any] = {}
    if "mm_hidden_size" in config:
        fields["vision_hidden_size"] = int(config["mm_hidden_size"])
    if "mm_projector_type" in config:
        fields["projector_type"] = str(config["mm_projector_type"])
    if "num_frames" in config:
        fields["num_frames"] = int(config["num_frames"])
    if "num_sample_tokens" in config:
        fields["num_sample_tokens"] = int(config["num_sample_tokens"])
    if config.get("tokenizer_model_max_length"):
        fields["max_length"] = int(config["tokenizer_model_max_length"])
    return LLaVA3DConfig(**{**fields, **overrides})


def _language_config(config: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    model_type = config.get("model_type", "llava_llama")
    if model_type not in ("llava_llama", "llama"):
        raise NotImplementedError(
            f"model_type {model_type!r} is not supported; the released LLaVA-3D checkpoint is "
            "'llava_llama' (a Llama language model)"
        )
    llm = {
        k: v
        for k, v in config.items()
        if not k.startswith(_MM_FIELDS)
        and k not in ("architectures", "model_type", "_name_or_path")
    }
    return LlamaConfig(**llm)


def _shards(root: Path) -> list[Path]:
    index = root / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = sorted({root / name for name in weight_map.values()})
    else:
        files = sorted(root.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in root.glob("*.bin"))
        hint = (
            f" It holds pickled weights ({', '.join(pickled[:3])}); they are not loaded because "
            "unpickling can run code. Convert them to safetensors where you trust them."
            if pickled
            else ""
        )
        raise FileNotFoundError(f"{str(root)!r} has no .safetensors weights.{hint}")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"shard {f.name} named in the index is missing from {root}")
        with open(f, "rb") as handle:
            if handle.read(24).startswith(b"version https://git-lfs"):
                raise ValueError(
                    f"{f} is a Git LFS pointer, not weights: the checkpoint was cloned without "
                    "git-lfs. Run `git lfs pull` in its folder or download it with "
                    "huggingface-cli."
                )
    return files


def load_llava3d(
    folder: str | os.PathLike[str],
    *,
    config: LLaVA3DConfig | None = None,
    dtype: torch.dtype | None = None,
    vision_tower: torch.nn.Module | None = None,
    strict: bool = False,
) -> tuple[LLaVA3D, CheckpointReport]:
    """Build LLaVA-3D from a released checkpoint folder and load its weights.

    Parameters
    ----------
    folder
        Local folder with ``config.json`` and ``*.safetensors`` (with or without
        ``model.safetensors.index.json``).
    config
        Pathway settings; default read from ``config.json`` (:func:`llava3d_config_from_dict`).
    dtype
        Weight dtype; default the checkpoint's ``torch_dtype`` (bfloat16 for the 7B: about 14 GB
        of memory).
    vision_tower
        A CLIP ViT-L/14-336 ``CLIPVisionModel`` to attach. The released shards normally do not
        hold CLIP's weights (LLaVA loads them by name); if they do, they are loaded into it.
    strict
        Raise when anything is missing, unexpected or mismatched instead of reporting it.

    Returns
    -------
    (LLaVA3D, CheckpointReport)
    """
    from safetensors import SafetensorError, safe_open
    from transformers import AutoModelForCausalLM

    root = Path(folder)
    raw = read_released_config(root)
    llm_config = _language_config(raw)
    files = _shards(root)
    if dtype is None:
        dtype_name = str(raw.get("torch_dtype", "float32")).replace("torch.", "")
        dtype = getattr(torch, dtype_name, torch.float32)
        if not isinstance(dtype, torch.dtype):
            dtype = torch.float32
    language_model = AutoModelForCausalLM.from_config(llm_config, dtype=dtype)
    model = LLaVA3D(
        language_model, config or llava3d_config_from_dict(raw), vision_tower=vision_tower
    ).to(dtype)
    model.eval()

    own = model.state_dict()
    report = CheckpointReport(config=raw)
    seen: set[str] = set()
    for shard in files:
        try:
            handle_cm = safe_open(str(shard), framework="pt")
        except SafetensorError as exc:
            raise ValueError(
                f"checkpoint file {str(shard)!r} is damaged or not a safetensors file ({exc}); "
                "download it again"
            ) from exc
        with handle_cm as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                name = map_released_key(key)
                if name is None or name not in own:
                    report.unexpected.append(key)
                    continue
                tensor = handle.get_tensor(key)
                if tuple(tensor.shape) != tuple(own[name].shape):
                    report.mismatched.append((key, tuple(tensor.shape), tuple(own[name].shape)))
                    continue
                with torch.no_grad():
                    own[name].copy_(tensor.to(own[name].dtype))
                seen.add(name)
                report.loaded.append(name)
    tied = getattr(llm_config, "tie_word_embeddings", False)
    report.missing = [
        n
        for n in own
        if n not in seen
        and not (
            tied
            and n == "language_model.lm_head.weight"
            and "language_model.model.embed_tokens.weight" in seen
        )
    ]
    logger.info("loaded LLaVA-3D from %s: %s", root, report.summary())
    if report.missing:
        logger.warning(
            "%d parameters missing from the checkpoint, e.g. %s",
            len(report.missing),
            report.missing[:3],
        )
    if strict and not report.ok:
        raise ValueError(
            f"checkpoint {str(root)!r} does not match the model: {report.summary()}; first "
            f"missing {report.missing[:3]}, unexpected {report.unexpected[:3]}, mismatched "
            f"{report.mismatched[:3]}. Pass strict=False to load what matches."
        )
    return model, report


def save_released_checkpoint(
    model: LLaVA3D,
    folder: str | os.PathLike[str],
    *,
    config: dict[str, Any] | None = None,
    num_shards: int = 1,
    skip: Iterable[str] = (),
) -> Path:
    """Write a model's weights under the released key names (safetensors shards + index).

    Used to build small checkpoints with the released layout (tests, format conversion). The
    folder is written atomically.

    Parameters
    ----------
    config
        ``config.json`` content; default the language model's config plus the pathway fields
        with ``model_type: llava_llama``.
    num_shards
        How many shard files to split the weights into.
    skip
        Parameter names (of ``LLaVA3D``) to leave out.
    """
    from safetensors.torch import save_file

    if num_shards <= 0:
        raise ValueError(f"num_shards must be positive; got {num_shards}")
    skipped = set(skip)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = released_key(name)
        if key is None or name in skipped:
            continue
        tensors[key] = tensor.detach().contiguous().clone()
    if config is None:
        config = dict(model.language_model.config.to_dict())
        config.update(
            model_type="llava_llama",
            architectures=["LlavaLlamaForCausalLM"],
            mm_hidden_size=model.config.vision_hidden_size,
            mm_projector_type=model.config.projector_type,
            mm_vision_select_layer=model.select_layer,
            mm_vision_tower="openai/clip-vit-large-patch14-336",
            mm_video_tower="SpatialAwareModule",
            num_frames=model.config.num_frames,
            num_sample_tokens=model.config.num_sample_tokens,
            tokenizer_model_max_length=model.config.max_length,
        )
    keys = sorted(tensors)
    per = -(-len(keys) // num_shards)
    weight_map = {}
    with atomic_dir(folder, kind="model") as tmp:
        for i in range(num_shards):
            part = keys[i * per : (i + 1) * per]
            if not part:
                continue
            name = f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
            save_file({k: tensors[k] for k in part}, str(tmp / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, name))
        atomic_write_json(tmp / "config.json", config)
        atomic_write_json(
            tmp / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map}
        )
    return Path(folder)
