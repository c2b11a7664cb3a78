"""Loading Hugging Face models and tokenizers, and seeded tiny models for tests.

A model is named by a local folder or a hub id. Offline, an id that is not in the local cache
gives an error that says so and how to fix it, instead of a network traceback.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

logger = logging.getLogger(__name__)

__all__ = [
    "TINY_ARCHITECTURES",
    "LoadedModel",
    "load_causal_lm",
    "load_tokenizer",
    "resolve_model_path",
    "tiny_causal_lm",
    "tiny_config",
]

TINY_ARCHITECTURES = ("llama", "mistral", "qwen2", "phi3")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"} or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ).lower() in {"1", "true", "yes"}


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> str:
    """Check that ``name_or_path`` names a usable model and return it as a string.

    A local folder must hold ``config.json``. A hub id is accepted if it looks like one; when it is
    neither cached nor reachable, loading raises an error that explains how to fix it.

    Raises
    ------
    FileNotFoundError
        If a path-like name does not exist or lacks ``config.json``.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    # Hub ids are 'name' or 'owner/name' and never start with '.', '/' or '~'.
    looks_like_path = text.startswith((".", "/", "~")) or text.strip("/").count("/") > 1
    if path.is_file():
        raise FileNotFoundError(
            f"model {text!r} is a file; expected a model folder holding config.json "
            "(or a hub id such as 'meta-llama/Llama-2-7b-hf')"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"model folder {text!r} has no config.json; expected a folder written by "
                "save_pretrained (config.json plus weights). Pass the folder that holds "
                "config.json."
            )
        return str(path)
    if looks_like_path:
        raise FileNotFoundError(
            f"model folder {text!r} does not exist; pass an existing folder holding config.json "
            "or a hub id of the form 'owner/name'"
        )
    return text


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _hub_error(name: str, exc: Exception) -> OSError:
    if Path(name).is_dir():
        # A local folder that transformers cannot read: the network has nothing to do with it.
        return FileNotFoundError(
            f"could not load the model folder {name!r}: {_first_line(exc)}. "
            "Expected config.json (valid JSON) and the weights (model.safetensors or "
            "pytorch_model.bin) written by save_pretrained; check the folder or save it again."
        )
    hint = (
        "This machine is offline (HF_HUB_OFFLINE=1) and the model is not in the local cache. "
        if _offline()
        else "It could not be downloaded or found in the local cache. "
    )
    if not Path(name).exists():
        hint += f"No local folder {name!r} exists here either. "
    return FileNotFoundError(
        f"could not load model {name!r}: {hint}Fix: download it first where there is a network "
        f"(`huggingface-cli download {name}`) or pass a local folder holding config.json. "
        f"(underlying error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    )


def load_tokenizer(name_or_path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a model folder or hub id."""
    name = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as exc:
        raise _hub_error(name, exc) from exc


@dataclass
class LoadedModel:
    """A causal LM and its tokenizer (``None`` when the folder has no tokenizer files)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase | None


def load_causal_lm(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
    require_tokenizer: bool = False,
) -> LoadedModel:
    """Load a causal language model (and its tokenizer if present).

    Parameters
    ----------
    name_or_path
        A local folder with ``config.json`` or a hub id.
    dtype
        Weight dtype; default keeps the checkpoint's (``"auto"``).
    device
        Where to put the model; default CPU.
    attn_implementation
        Passed to ``from_pretrained`` (``"eager"``, ``"sdpa"``, ...).
    require_tokenizer
        Raise if the model has no tokenizer files instead of returning ``None``.
    """
    name = resolve_model_path(name_or_path)
    kwargs: dict[str, Any] = {"torch_dtype": dtype if dtype is not None else "auto"}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except OSError as exc:
        raise _hub_error(name, exc) from exc
    except SafetensorError as exc:
        raise ValueError(
            f"the weights of model {name!r} are damaged or not a safetensors file ({exc}); "
            "save or download the model again"
        ) from exc
    except ValueError as exc:
        raise ValueError(
            f"model {name!r} is not a causal language model transformers can load: {exc}"
        ) from exc
    if device is not None:
        model = model.to(torch.device(device))  # type: ignore[arg-type]
    model.eval()

    tokenizer: PreTrainedTokenizerBase | None
    try:
        if Path(name).is_dir() and not any((Path(name) / f).is_file() for f in _TOKENIZER_FILES):
            # Some transformers versions build an empty tokenizer from config.json alone.
            raise OSError("the folder holds no tokenizer files")
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, TypeError) as exc:
        if require_tokenizer:
            raise FileNotFoundError(
                f"model {name!r} has no usable tokenizer ({exc}); pass a folder that also holds "
                "the tokenizer files (tokenizer.json or tokenizer.model)"
            ) from exc
        logger.warning("model %s has no usable tokenizer; continuing without one", name)
        tokenizer = None
    logger.info(
        "loaded %s (%s, %.2fM parameters)",
        name,
        model.config.model_type,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    return LoadedModel(model=model, tokenizer=tokenizer)


def tiny_config(architecture: str = "llama", **overrides: Any) -> PretrainedConfig:
    """A small config for tests: every size divisible by 4, grouped-query attention on.

    Parameters
    ----------
    architecture
        One of ``"llama"``, ``"mistral"``, ``"qwen2"``, ``"phi3"``.
    **overrides
        Config fields to change (``num_hidden_layers=4``, ``vocab_size=...``).
    """
    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(
            f"architecture={architecture!r} is not supported for tiny configs; expected one of "
            f"{', '.join(TINY_ARCHITECTURES)}"
        )
    fields: dict[str, Any] = {
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    if architecture == "phi3":
        fields["pad_token_id"] = 0
    fields.update(overrides)
    return AutoConfig.for_model(architecture, **fields)


def tiny_causal_lm(
    architecture: str = "llama", *, seed: int = 0, **overrides: Any
) -> PreTrainedModel:
    """A randomly initialised tiny causal LM, identical for identical ``seed`` and overrides."""
    config = tiny_config(architecture, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    return model
