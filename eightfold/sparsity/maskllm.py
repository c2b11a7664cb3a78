"""MaskLLM (Fang et al., 2024, arXiv 2409.17481): learnable N:M masks with frozen weights.

Every group of ``M`` consecutive inputs of a target linear gets ``C(M, N)`` fp32 logits, one per
candidate mask (6 for 2:4). A training step samples a soft mask per group with Gumbel-softmax
from ``kappa * logits`` at temperature ``tau``, multiplies it into the frozen weight and
back-propagates the language-model loss to the logits only. ``kappa`` rises and ``tau`` falls
linearly over training; a regulariser rewards masks that keep large weights. The final mask of a
group is the candidate with the largest logit.

Defaults follow the authors' training scripts (which differ from their code's argument defaults):
``kappa`` 100 -> 500, ``tau`` 4 -> 0.05, regulariser weight 1e-5 decayed linearly to 0 and
*subtracted* from the loss as a raw sum, AdamW on the logits with lr 5e-4 -> 5e-5 (cosine), weight
decay 0.1, betas (0.9, 0.95), eps 1e-5, gradient clipping 1.0, logits initialised N(0, 0.01) and
shifted towards a prior mask with strength 3. The default prior is SparseGPT's mask without its
weight update, computed from one pass over the dense model.

Training runs under Hugging Face accelerate: one process as is, or many with
``accelerate launch`` (DDP; FSDP with ``use_orig_params=True`` because only the logits train).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from eightfold.progress import progress
from eightfold.sparsity.base import (
    NMPattern,
    Sparsifier,
    SparsityResult,
    apply_mask,
    candidate_masks,
    check_calibration,
    find_linears,
    group_view,
)
from eightfold.storage import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = [
    "MaskLLM",
    "MaskedLinear",
    "cosine_learning_rate",
    "default_accelerator",
    "gumbel_softmax_sample",
    "hard_masks_from_logits",
    "linear_schedule",
    "prior_logits",
]

PRIORS = ("sparsegpt", "magnitude", "wanda", "none")


# ---------------------------------------------------------------------------------------------
# Pure math


def linear_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Linear interpolation from ``start`` at step 0 to ``end`` at step ``total_steps - 1``."""
    frac = step / (total_steps - 1) if total_steps > 1 else 1.0
    return start + (end - start) * min(max(frac, 0.0), 1.0)


def cosine_learning_rate(step: int, total_steps: int, peak: float, final: float) -> float:
    """Cosine decay from ``peak`` at step 0 to ``final`` at step ``total_steps - 1``."""
    frac = step / (total_steps - 1) if total_steps > 1 else 1.0
    frac = min(max(frac, 0.0), 1.0)
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * frac))


def gumbel_softmax_sample(
    logits: torch.Tensor,
    tau: float,
    *,
    generator: torch.Generator | None = None,
    hard: bool = False,
) -> torch.Tensor:
    """One Gumbel-softmax sample per row, computed in fp32.

    Parameters
    ----------
    logits
        ``(groups, candidates)`` unnormalised log-probabilities (already scaled by ``kappa``).
    tau
        Temperature; small values give nearly one-hot samples.
    generator
        Source of the Gumbel noise (for reproducible, resumable runs).
    hard
        Return the one-hot argmax with the soft sample's gradient (straight-through).

    Returns
    -------
    torch.Tensor
        ``(groups, candidates)`` rows on the probability simplex. ``argmax`` of a row is
        distributed as ``softmax(logits)`` whatever ``tau`` is.
    """
    if tau <= 0:
        raise ValueError(f"tau={tau}; the Gumbel-softmax temperature must be positive")
    logits = logits.float()
    uniform = torch.rand(
        logits.shape, generator=generator, device=logits.device, dtype=torch.float32
    )
    # Clamp away from 0 and 1 so that -log(-log(u)) stays finite.
    tiny = torch.finfo(torch.float32).tiny
    uniform = uniform.clamp(min=tiny, max=1.0 - 1e-7)
    gumbels = -torch.log(-torch.log(uniform))
    soft = torch.softmax((logits + gumbels) / tau, dim=-1)
    if not hard:
        return soft
    index = soft.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft


def prior_logits(
    prior_mask: torch.Tensor | None,
    pattern: str | NMPattern,
    *,
    num_groups: int | None = None,
    strength: float = 3.0,
    init_std: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Initial logits: ``N(0, init_std)`` shifted towards a prior mask.

    Each logit gets ``(overlap - N/2) * std(logits) * strength``, where ``overlap`` counts the
    kept positions that the candidate shares with the prior. For 2:4 the prior's own candidate
    gains ``+strength`` standard deviations and its complement loses as much. With the default
    strength 3 the noise still moves the argmax off the prior in about 5 % of groups.

    Parameters
    ----------
    prior_mask
        Boolean ``(out_features, in_features)`` mask, or ``None`` for no prior (then
        ``num_groups`` gives the size).

    Returns
    -------
    torch.Tensor
        ``(groups, C(M, N))`` fp32 logits.
    """
    nm = NMPattern.parse(pattern)
    cands = candidate_masks(nm)
    if prior_mask is not None:
        groups = group_view(prior_mask.float(), nm.m, "prior mask").cpu()
        num_groups = groups.shape[0]
    elif num_groups is None:
        raise ValueError("prior_logits needs a prior_mask or num_groups")
    logits = torch.randn(num_groups, cands.shape[0], generator=generator) * init_std
    if prior_mask is not None and strength != 0:
        overlap = groups @ cands.T  # (groups, candidates): kept positions shared with the prior
        logits += (overlap - nm.n / 2) * logits.std() * strength
    return logits


def hard_masks_from_logits(
    logits: torch.Tensor, pattern: str | NMPattern, shape: Sequence[int]
) -> torch.Tensor:
    """The candidate with the largest logit in every group, as a boolean mask of ``shape``."""
    nm = NMPattern.parse(pattern)
    cands = candidate_masks(nm, device=logits.device).bool()
    return cands[logits.argmax(dim=-1)].reshape(tuple(shape))


# ---------------------------------------------------------------------------------------------
# The masked linear


class MaskedLinear(nn.Module):
    """A frozen ``nn.Linear`` whose weight is multiplied by a learnable N:M mask.

    In training mode the mask is a Gumbel-softmax sample from ``kappa * logits`` at temperature
    ``tau`` (set by the trainer every step); in eval mode it is the argmax candidate of each
    group. Logits, noise and the mask stay fp32 whatever the weight's dtype, since half-precision
    logits overflow when ``kappa`` is large.

    Parameters
    ----------
    linear
        The layer to mask; its parameters are frozen (``requires_grad=False``) and never changed.
    logits
        ``(out_features * in_features / M, C(M, N))`` initial logits.
    pattern
        The N:M pattern.
    """

    def __init__(self, linear: nn.Linear, logits: torch.Tensor, pattern: NMPattern) -> None:
        super().__init__()
        self.linear = linear
        self.pattern = pattern
        self.logits = nn.Parameter(logits.detach().float().to(linear.weight.device).clone())
        self.candidates: torch.Tensor
        self.register_buffer(
            "candidates", candidate_masks(pattern, device=linear.weight.device), persistent=False
        )
        for param in linear.parameters():
            param.requires_grad_(False)
        self.tau = 4.0
        self.kappa = 100.0
        self.hard = False
        self.generator: torch.Generator | None = None
        # Sum of squared surviving weights under the last sampled mask (for the regulariser).
        self.sparse_weight_norm: torch.Tensor = torch.zeros(())

    def mask(self) -> torch.Tensor:
        """The current mask, ``(out_features, in_features)`` fp32 (soft in training mode)."""
        with torch.autocast(device_type=self.logits.device.type, enabled=False):
            if self.training:
                y = gumbel_softmax_sample(
                    self.logits * self.kappa, self.tau, generator=self.generator, hard=self.hard
                )
            else:
                y = F.one_hot(self.logits.argmax(dim=-1), self.candidates.shape[0]).float()
            return (y @ self.candidates).view(self.linear.weight.shape)

    def hard_mask(self) -> torch.Tensor:
        """Boolean ``(out_features, in_features)`` argmax mask."""
        return hard_masks_from_logits(self.logits.detach(), self.pattern, self.linear.weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask()
        weight = self.linear.weight
        if self.training:
            # The weight is detached, so this term's gradient reaches only the logits.
            self.sparse_weight_norm = (weight.detach().float() * mask).pow(2).sum()
        return F.linear(x, weight * mask.to(weight.dtype), self.linear.bias)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


# ---------------------------------------------------------------------------------------------
# The method


@dataclass(kw_only=True)
class MaskLLM(Sparsifier):
    """Learn an N:M mask for each target linear with the weights frozen (MaskLLM).

    ``apply_(model, calibration)`` trains the logits on ``calibration`` (token blocks) and prunes
    the model with the argmax masks; weights that survive are bit-identical to the originals.

    Parameters
    ----------
    steps
        Training steps (the paper: 2,000 steps of 256 sequences of 4,096 tokens).
    batch_size
        Sequences per step, over all processes (must divide by the number of processes).
    learning_rate, min_learning_rate
        Cosine schedule of AdamW on the logits.
    weight_decay, betas, eps, grad_clip
        AdamW and clipping settings (``grad_clip=None`` disables clipping).
    scale_range
        ``kappa`` at the first and last step: the logits' multiplier.
    temperature_range
        ``tau`` at the first and last step: the Gumbel-softmax temperature.
    weight_reg
        Weight of the sparse-weight regulariser, decayed linearly to 0. It multiplies a raw sum
        over all masked weights, so its effect grows with model size; at small scale it is
        negligible unless raised.
    prior
        ``"sparsegpt"`` (SparseGPT mask without weight update, the authors' choice),
        ``"magnitude"``, ``"wanda"``, ``"none"``, a mapping from module names to boolean masks,
        or a path: a folder written by :func:`~eightfold.sparsity.save_sparse`, a mask file
        (``mask_compressed.npz``) or a MaskLLM checkpoint folder (its logits are loaded as they
        are). A saved mask or checkpoint is how a mask is transferred to new data.
    prior_strength
        How far the prior shifts the initial logits, in standard deviations (3).
    num_samples
        Calibration blocks used to compute the prior.
    init_std
        Standard deviation of the initial logits (0.01).
    hard
        Straight-through hard sampling instead of the soft relaxation (off, as in the scripts).
    seed
        Seeds the initial logits, the batch order and the Gumbel noise.
    checkpoint_dir, checkpoint_every, resume
        Where and how often to save the logits and optimizer state; an existing checkpoint there
        is resumed unless ``resume=False``.
    eval_blocks, eval_every
        Held-out ``(num_blocks, seq)`` tokens scored under the hard mask every ``eval_every``
        steps (and at the end); the perplexities go to the history.
    max_candidates
        Refuse patterns with more candidates per group (8:16 has 12,870 logits per group).
    accelerator
        An ``accelerate.Accelerator`` to train with (default: a new one from the environment).
    callback
        Called with each history entry (a dict) as training goes.

    Examples
    --------
    >>> import torch
    >>> from eightfold.models import tiny_causal_lm
    >>> model = tiny_causal_lm()
    >>> data = torch.randint(0, 256, (16, 32))
    >>> result = MaskLLM(steps=2, batch_size=4, prior="magnitude").apply_(model, data)
    >>> sorted(result.masks)[0]
    'model.layers.0.mlp.down_proj'
    """

    steps: int = 2000
    batch_size: int = 8
    learning_rate: float = 5e-4
    min_learning_rate: float = 5e-5
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-5
    grad_clip: float | None = 1.0
    scale_range: tuple[float, float] = (100.0, 500.0)
    temperature_range: tuple[float, float] = (4.0, 0.05)
    weight_reg: float = 1e-5
    prior: str | os.PathLike[str] | Mapping[str, torch.Tensor] = "sparsegpt"
    prior_strength: float = 3.0
    init_std: float = 0.01
    hard: bool = False
    seed: int = 0
    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int = 100
    resume: bool = True
    eval_blocks: torch.Tensor | None = None
    eval_every: int = 0
    max_candidates: int = 70
    accelerator: Any = None
    callback: Callable[[dict[str, float]], None] | None = None

    method_name: ClassVar[str] = "maskllm"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(
                f"eval_every={self.eval_every!r}; expected 0 (off) or a positive integer"
            )
        if not 0 < self.min_learning_rate <= self.learning_rate:
            raise ValueError(
                f"learning_rate={self.learning_rate}, min_learning_rate="
                f"{self.min_learning_rate}; expected 0 < min_learning_rate <= learning_rate"
            )
        for name in ("scale_range", "temperature_range", "betas"):
            value = getattr(self, name)
            if len(value) != 2:
                raise ValueError(f"{name}={value!r}; expected a pair (start, end)")
            setattr(self, name, (float(value[0]), float(value[1])))
        if min(self.scale_range) <= 0 or min(self.temperature_range) <= 0:
            raise ValueError(
                f"scale_range={self.scale_range}, temperature_range={self.temperature_range}; "
                "both must stay positive (the scripts use (100, 500) and (4, 0.05))"
            )
        if self.weight_reg < 0 or self.weight_decay < 0 or self.init_std <= 0:
            raise ValueError(
                f"weight_reg={self.weight_reg}, weight_decay={self.weight_decay}, init_std="
                f"{self.init_std}; expected weight_reg >= 0, weight_decay >= 0, init_std > 0"
            )
        if self.prior_strength < 0:
            raise ValueError(
                f"prior_strength={self.prior_strength}; expected >= 0 (3 in the "
                "paper's scripts, 0 = ignore the prior)"
            )
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip={self.grad_clip}; expected a positive number or None")
        if (
            isinstance(self.prior, str)
            and self.prior not in PRIORS
            and not Path(self.prior).exists()
        ):
            raise ValueError(
                f"prior={self.prior!r} is neither one of {', '.join(PRIORS)} nor an existing "
                "mask file or folder; pass one of those names or the path of a saved mask"
            )
        if self.nm.num_candidates > self.max_candidates:
            raise ValueError(
                f"pattern {self.nm} has {self.nm.num_candidates:,} candidate masks per group; "
                f"MaskLLM stores one logit per candidate, so memory grows with C(M, N). Use a "
                f"smaller M or raise max_candidates (now {self.max_candidates}) to force it."
            )

    # Settings that must match for a checkpoint to be resumed.
    def _settings(self, modules: Sequence[str]) -> dict[str, Any]:
        keys = (
            "steps",
            "batch_size",
            "learning_rate",
            "min_learning_rate",
            "weight_decay",
            "betas",
            "eps",
            "grad_clip",
            "scale_range",
            "temperature_range",
            "weight_reg",
            "hard",
            "seed",
        )
        settings = {k: getattr(self, k) for k in keys}
        settings = json.loads(json.dumps(settings))
        settings["pattern"] = str(self.nm)
        settings["modules"] = list(modules)
        return settings

    # -----------------------------------------------------------------------------------------

    def _run(
        self, model: nn.Module, calibration: torch.Tensor | None, *, write: bool
    ) -> SparsityResult:
        t0 = time.perf_counter()
        data = check_calibration(calibration)
        linears = find_linears(model, self.targets)
        for name, linear in linears.items():
            group_view(linear.weight, self.nm.m, name)
        history, masks, info = self._train(model, linears, data)
        if write:
            with torch.no_grad():
                for name, linear in linears.items():
                    linear.weight.copy_(apply_mask(linear.weight, masks[name]))
        return SparsityResult(
            method=self.method_name,
            pattern=self.nm,
            masks=masks,
            seconds=time.perf_counter() - t0,
            history=history,
            info=info,
        )

    def _initial_logits(
        self, model: nn.Module, linears: dict[str, nn.Linear], data: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        from eightfold.sparsity.export import load_logits, load_masks

        prior_masks: Mapping[str, torch.Tensor] | None = None
        if isinstance(self.prior, Mapping):
            prior_masks = self.prior
        elif self.prior == "none":
            prior_masks = None
        elif self.prior in ("sparsegpt", "magnitude", "wanda"):
            prior_masks = _prior_method(self).compute_masks(model, data)
        else:
            path = Path(self.prior)
            logits = load_logits(path)
            if logits is not None:
                _check_names("checkpoint logits", logits, linears)
                for name, linear in linears.items():
                    expected = (linear.weight.numel() // self.nm.m, self.nm.num_candidates)
                    if tuple(logits[name].shape) != expected:
                        raise ValueError(
                            f"the logits of {name!r} in {str(path)!r} have shape "
                            f"{tuple(logits[name].shape)}; pattern {self.nm} on this weight "
                            f"needs {expected}. Use the pattern the checkpoint was trained with."
                        )
                logger.info("MaskLLM: starting from the logits in %s", path)
                return {name: logits[name].float() for name in linears}
            prior_masks = load_masks(
                path, {name: tuple(linear.weight.shape) for name, linear in linears.items()}
            )
        if prior_masks is not None:
            _check_names("prior", prior_masks, linears)

        gen = torch.Generator().manual_seed(self.seed)
        out = {}
        for name, linear in linears.items():
            prior = None if prior_masks is None else prior_masks[name].bool().cpu()
            if prior is not None and prior.shape != linear.weight.shape:
                raise ValueError(
                    f"prior mask of {name!r} has shape {tuple(prior.shape)}; the weight has "
                    f"{tuple(linear.weight.shape)}"
                )
            out[name] = prior_logits(
                prior,
                self.nm,
                num_groups=linear.weight.numel() // self.nm.m,
                strength=self.prior_strength,
                init_std=self.init_std,
                generator=gen,
            )
        return out

    def _train(
        self, model: nn.Module, linears: dict[str, nn.Linear], data: torch.Tensor
    ) -> tuple[list[dict[str, float]], dict[str, torch.Tensor], dict[str, Any]]:
        accelerator = self.accelerator if self.accelerator is not None else default_accelerator()
        world = accelerator.num_processes
        if self.batch_size % world:
            raise ValueError(
                f"batch_size={self.batch_size} does not divide among {world} processes; pass a "
                f"multiple of {world}"
            )
        names = list(linears)
        logger.info(
            "MaskLLM %s: %d modules, %d steps of %d sequences on %d process(es)",
            self.nm,
            len(names),
            self.steps,
            self.batch_size,
            world,
        )
        settings = self._settings(names)
        ckpt = Path(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        resume_state = _read_checkpoint_state(ckpt) if (ckpt is not None and self.resume) else None
        if resume_state is not None:
            _check_resumable(resume_state["settings"], settings, ckpt)

        # Initial logits (the prior needs the dense model, so this comes before wrapping).
        if resume_state is None:
            logits = self._initial_logits(model, linears, data)
        else:
            from eightfold.sparsity.export import load_logits

            loaded = load_logits(ckpt)  # type: ignore[arg-type]
            assert loaded is not None
            logits = {name: loaded[name] for name in names}

        requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        was_training = model.training
        for param in model.parameters():
            param.requires_grad_(False)
        wrapped = {
            name: MaskedLinear(linear, logits[name], self.nm) for name, linear in linears.items()
        }
        for name, module in wrapped.items():
            _set_module(model, name, module)
        initial = {name: m.hard_mask() for name, m in wrapped.items()}

        history: list[dict[str, float]] = []
        info: dict[str, Any] = {"processes": world}
        try:
            params = [m.logits for m in wrapped.values()]
            optimizer = torch.optim.AdamW(
                params,
                lr=self.learning_rate,
                betas=self.betas,
                eps=self.eps,
                weight_decay=self.weight_decay,
            )
            start = 0
            if resume_state is not None:
                optimizer.load_state_dict(
                    torch.load(ckpt / "optimizer.pt", weights_only=True)  # type: ignore[operator]
                )
                start = int(resume_state["step"])
                history = list(resume_state.get("history", []))
                logger.info("MaskLLM: resuming from step %d of %d (%s)", start, self.steps, ckpt)
            prepared, optimizer = accelerator.prepare(model, optimizer)
            device = accelerator.device
            gen = torch.Generator(device=device)
            for module in wrapped.values():
                module.generator = gen
                module.hard = self.hard
            history, steps_run = self._loop(
                prepared, accelerator, optimizer, wrapped, data, gen, start, history, ckpt, settings
            )
            masks = {name: m.hard_mask().cpu() for name, m in wrapped.items()}
            groups = sum(m.numel() for m in masks.values()) // self.nm.m
            changed = sum(
                int(
                    (masks[n].view(-1, self.nm.m) != initial[n].cpu().view(-1, self.nm.m))
                    .any(dim=1)
                    .sum()
                )
                for n in names
            )
            info.update(
                steps_run=steps_run, groups=groups, changed_from_initial=changed / max(groups, 1)
            )
        finally:
            for name, module in wrapped.items():
                _set_module(model, name, module.linear)
            for name, param in model.named_parameters():
                param.requires_grad_(requires_grad.get(name, param.requires_grad))
            model.train(was_training)
            if self.accelerator is None:
                # Drop the references our own accelerator keeps to the model and optimizer.
                accelerator.free_memory()
        return history, masks, info

    def _loop(
        self,
        model: nn.Module,
        accelerator: Any,
        optimizer: Any,
        wrapped: dict[str, MaskedLinear],
        data: torch.Tensor,
        gen: torch.Generator,
        start: int,
        history: list[dict[str, float]],
        ckpt: Path | None,
        settings: dict[str, Any],
    ) -> tuple[list[dict[str, float]], int]:
        world, rank = accelerator.num_processes, accelerator.process_index
        local_batch = self.batch_size // world
        device = accelerator.device
        modules = list(wrapped.values())
        previous = [m.logits.detach().argmax(dim=-1) for m in modules]
        total_groups = sum(p.numel() for p in previous)
        model.train()
        t_start = time.perf_counter()
        with progress("maskllm", total=self.steps) as update:
            update(start)
            for step in range(start, self.steps):
                tau = linear_schedule(step, self.steps, *self.temperature_range)
                kappa = linear_schedule(step, self.steps, *self.scale_range)
                lam = self.weight_reg * (1.0 - (step / (self.steps - 1) if self.steps > 1 else 1.0))
                lr = cosine_learning_rate(
                    step, self.steps, self.learning_rate, self.min_learning_rate
                )
                for module in modules:
                    module.tau, module.kappa = tau, kappa
                for group in optimizer.param_groups:
                    group["lr"] = lr

                # The batch depends only on (seed, step); each process takes its share.
                order = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
                idx = torch.randint(0, data.shape[0], (self.batch_size,), generator=order)
                batch = data[idx[rank * local_batch : (rank + 1) * local_batch]].to(device)
                gen.manual_seed((self.seed * 1_000_003 + step) * 1_009 + rank)

                out = model(input_ids=batch, labels=batch, use_cache=False)
                reg = torch.stack([m.sparse_weight_norm for m in modules]).sum()
                loss = out.loss.float() - lam * reg
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                if self.grad_clip is not None:
                    accelerator.clip_grad_norm_([m.logits for m in modules], self.grad_clip)
                optimizer.step()

                with torch.no_grad():
                    current = [m.logits.argmax(dim=-1) for m in modules]
                    changed = sum(
                        int((c != p).sum()) for c, p in zip(current, previous, strict=True)
                    )
                    previous = current
                entry = {
                    "step": step + 1,
                    "loss": float(out.loss.detach()),
                    "reg": float(reg.detach()),
                    "reg_weight": lam,
                    "tau": tau,
                    "kappa": kappa,
                    "lr": lr,
                    "changed": changed / total_groups,
                    "seconds": time.perf_counter() - t_start,
                }
                last = step + 1 == self.steps
                if self.eval_blocks is not None and (
                    last or (self.eval_every and (step + 1) % self.eval_every == 0)
                ):
                    from eightfold.evaluation.perplexity import perplexity

                    entry["eval_perplexity"] = perplexity(
                        accelerator.unwrap_model(model), self.eval_blocks
                    ).perplexity
                    model.train()
                history.append(entry)
                if self.callback is not None:
                    self.callback(entry)
                update(1, loss=entry["loss"], tau=tau, changed=entry["changed"])
                if ckpt is not None and ((step + 1) % self.checkpoint_every == 0 or last):
                    self._save_checkpoint(
                        ckpt, accelerator, optimizer, wrapped, step + 1, history, settings
                    )
        return history, self.steps - start

    def _save_checkpoint(
        self,
        folder: Path,
        accelerator: Any,
        optimizer: Any,
        wrapped: dict[str, MaskedLinear],
        step: int,
        history: list[dict[str, float]],
        settings: dict[str, Any],
    ) -> None:
        from safetensors.torch import save_file

        if accelerator.is_main_process:
            with atomic_dir(folder, kind="checkpoint") as tmp:
                save_file(
                    {name: m.logits.detach().cpu().contiguous() for name, m in wrapped.items()},
                    str(tmp / "logits.safetensors"),
                    metadata={"format": "maskllm-logits", "pattern": str(self.nm)},
                )
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                atomic_write_json(
                    tmp / "state.json", {"step": step, "settings": settings, "history": history}
                )
            logger.debug("MaskLLM checkpoint at step %d written to %s", step, folder)
        accelerator.wait_for_everyone()


def default_accelerator() -> Any:
    """An ``accelerate.Accelerator`` for this environment.

    Processes started by ``torchrun`` on a machine without CUDA get ``cpu=True``, which makes
    accelerate join them with the gloo backend (without it each process trains alone).
    """
    from accelerate import Accelerator

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(cpu=distributed and not torch.cuda.is_available())


def _prior_method(config: MaskLLM) -> Sparsifier:
    from eightfold.sparsity.magnitude import Magnitude
    from eightfold.sparsity.sparsegpt import SparseGPT
    from eightfold.sparsity.wanda import Wanda

    nm, targets, samples = config.nm, config.targets, config.num_samples
    if config.prior == "magnitude":
        return Magnitude(pattern=nm, targets=targets, num_samples=samples)
    if config.prior == "wanda":
        return Wanda(pattern=nm, targets=targets, num_samples=samples)
    # The authors' prior: SparseGPT's saliency without the weight update, every Hessian taken
    # from one pass over the dense model.
    return SparseGPT(
        pattern=nm, targets=targets, num_samples=samples, update_weights=False, sequential=False
    )


def _check_names(what: str, given: Mapping[str, Any], linears: Mapping[str, Any]) -> None:
    missing = [name for name in linears if name not in given]
    if missing:
        raise ValueError(
            f"the {what} has no entry for {len(missing)} target module(s), e.g. {missing[:3]}; "
            f"it holds {len(given)} entries such as {sorted(given)[:3]}. Use the same model and "
            "targets it was made for."
        )


def _read_checkpoint_state(folder: Path) -> dict[str, Any] | None:
    state_file = folder / "state.json"
    if not state_file.is_file():
        return None
    state: dict[str, Any] = json.loads(state_file.read_text(encoding="utf-8"))
    return state


def _check_resumable(saved: dict[str, Any], current: dict[str, Any], folder: Path | None) -> None:
    if saved.get("pattern") != current["pattern"]:
        raise ValueError(
            f"the checkpoint in {folder} was trained with pattern {saved.get('pattern')}, but "
            f"this run asks for {current['pattern']}; use another checkpoint_dir (CLI: "
            "--checkpoint-dir) or resume=False (CLI: --fresh) to start over"
        )
    if saved.get("modules") != current["modules"]:
        raise ValueError(
            f"the checkpoint in {folder} masks other modules than this run "
            f"({len(saved.get('modules', []))} vs {len(current['modules'])}); use the same model "
            "and targets, or resume=False"
        )
    changed = sorted(k for k in current if saved.get(k) != current[k])
    if changed:
        raise ValueError(
            f"the checkpoint in {folder} was trained with other settings ({', '.join(changed)} "
            "differ); resume with the same settings, or pass resume=False (CLI: --fresh)"
        )
