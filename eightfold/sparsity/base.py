"""N:M semi-structured sparsity: patterns, candidate masks, checks, and the shared base class.

Convention (the one sparse tensor cores need): a group is ``M`` consecutive entries along the
*input* dimension of one row of an ``nn.Linear`` weight of shape ``(out_features, in_features)``,
i.e. ``weight.view(-1, M)`` on the contiguous weight. An N:M pattern keeps ``N`` entries of every
group and sets the others to ``+0.0``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from eightfold.progress import progress

logger = logging.getLogger(__name__)

__all__ = [
    "ModuleCheck",
    "NMCheckReport",
    "NMPattern",
    "Sparsifier",
    "SparsityResult",
    "apply_mask",
    "apply_masks_",
    "candidate_masks",
    "check_masks",
    "check_nm",
    "decoder_layers",
    "find_linears",
    "group_view",
    "nm_mask_from_scores",
]


# ---------------------------------------------------------------------------------------------
# Patterns and candidate masks


@dataclass(frozen=True)
class NMPattern:
    """An N:M pattern: ``n`` kept entries in every group of ``m`` consecutive inputs."""

    n: int
    m: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or not isinstance(self.m, int):
            raise TypeError(f"pattern N and M must be integers; got N={self.n!r}, M={self.m!r}")
        if self.n < 1 or self.m < 2 or self.n >= self.m:
            raise ValueError(
                f"pattern {self.n}:{self.m} is not an N:M sparsity pattern; expected "
                "1 <= N < M (for example '2:4', '1:4' or '4:8')"
            )

    @classmethod
    def parse(cls, value: str | NMPattern | Sequence[int]) -> NMPattern:
        """Read ``"2:4"``, ``(2, 4)`` or an :class:`NMPattern`."""
        if isinstance(value, NMPattern):
            return value
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", value)
            if match is None:
                raise ValueError(
                    f"pattern={value!r} is not of the form 'N:M'; pass for example '2:4'"
                )
            return cls(int(match.group(1)), int(match.group(2)))
        if isinstance(value, Sequence) and len(value) == 2:
            return cls(int(value[0]), int(value[1]))
        raise TypeError(
            f"pattern must be a string 'N:M', a pair (N, M) or an NMPattern; got "
            f"{type(value).__name__} {value!r}"
        )

    @property
    def sparsity(self) -> float:
        """The fraction of entries set to zero."""
        return 1.0 - self.n / self.m

    @property
    def num_candidates(self) -> int:
        """How many masks one group can take: C(M, N)."""
        return len(list(itertools.combinations(range(self.m), self.n)))

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def candidate_masks(
    pattern: str | NMPattern, *, dtype: torch.dtype = torch.float32, device: Any = None
) -> torch.Tensor:
    """Every mask of one group, in ``itertools.combinations`` order.

    For 2:4 the rows are 1100, 1010, 1001, 0110, 0101, 0011. Stored MaskLLM logits index these
    rows, so the order is part of the file format.

    Returns
    -------
    torch.Tensor
        ``(C(M, N), M)`` with exactly ``N`` ones per row.
    """
    nm = NMPattern.parse(pattern)
    rows = []
    for kept in itertools.combinations(range(nm.m), nm.n):
        row = [0.0] * nm.m
        for index in kept:
            row[index] = 1.0
        rows.append(row)
    return torch.tensor(rows, dtype=dtype, device=device)


def group_view(weight: torch.Tensor, m: int, name: str = "weight") -> torch.Tensor:
    """View a 2-D weight as ``(out_features * in_features / m, m)`` groups along the input dim.

    Raises
    ------
    ValueError
        If the weight is not 2-D or ``m`` does not divide its input dimension; the message names
        the module.
    """
    if weight.dim() != 2:
        raise ValueError(
            f"module {name!r} has a weight of shape {tuple(weight.shape)}; N:M sparsity needs a "
            "2-D (out_features, in_features) weight. Leave this module out with `targets` "
            "(CLI: --target)."
        )
    if weight.shape[1] % m:
        raise ValueError(
            f"module {name!r} has {weight.shape[1]} input features, which M={m} does not divide; "
            "N:M groups run along the input dimension. Leave this module out with `targets` "
            "(CLI: --target) "
            "or choose an M that divides its input size."
        )
    return weight.contiguous().view(-1, m)


def nm_mask_from_scores(scores: torch.Tensor, pattern: str | NMPattern) -> torch.Tensor:
    """Keep the ``N`` highest scores of every group of ``M`` consecutive inputs.

    Parameters
    ----------
    scores
        ``(out_features, in_features)`` importance of each weight.

    Returns
    -------
    torch.Tensor
        Boolean ``(out_features, in_features)``; ``True`` marks a kept weight.
    """
    nm = NMPattern.parse(pattern)
    groups = group_view(scores, nm.m, "scores")
    kept = torch.topk(groups, nm.n, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, kept, True)
    return mask.view_as(scores)


def apply_mask(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``weight`` with pruned entries set to exactly ``+0.0``.

    ``weight * mask`` would give ``-0.0`` for negative pruned weights, which some sparse kernels
    mishandle; ``torch.where`` writes a positive zero.
    """
    if mask.shape != weight.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(weight.shape)}"
        )
    return torch.where(
        mask.to(device=weight.device, dtype=torch.bool),
        weight,
        torch.zeros((), dtype=weight.dtype, device=weight.device),
    )


@torch.no_grad()
def apply_masks_(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights of every module named in ``masks``, in place."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in modules or not isinstance(
            getattr(modules[name], "weight", None), torch.Tensor
        ):
            raise ValueError(
                f"mask for {name!r} names no module with a weight in this model; masks must be "
                "keyed by module name (as in model.named_modules())"
            )
        weight = modules[name].weight
        weight.copy_(apply_mask(weight, mask))


# ---------------------------------------------------------------------------------------------
# Checks


@dataclass(frozen=True)
class ModuleCheck:
    """The N:M check of one weight.

    ``exact`` counts groups with exactly N non-zeros; ``over`` counts groups with more than N
    (these break the pattern); ``negative_zeros`` counts entries stored as ``-0.0``.
    """

    name: str
    shape: tuple[int, ...]
    groups: int
    exact: int
    over: int
    negative_zeros: int

    @property
    def ok(self) -> bool:
        return self.exact == self.groups and self.negative_zeros == 0

    @property
    def compatible(self) -> bool:
        """At most N non-zeros per group: what sparse kernels accept."""
        return self.over == 0


@dataclass(frozen=True)
class NMCheckReport:
    """Per-module results of :func:`check_nm`."""

    pattern: NMPattern
    modules: tuple[ModuleCheck, ...]

    @property
    def ok(self) -> bool:
        return bool(self.modules) and all(m.ok for m in self.modules)

    @property
    def compatible(self) -> bool:
        return bool(self.modules) and all(m.compatible for m in self.modules)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "module": m.name,
                "shape": "x".join(map(str, m.shape)),
                "groups": m.groups,
                f"exactly {self.pattern.n}": m.exact,
                f"more than {self.pattern.n}": m.over,
                "-0.0": m.negative_zeros,
                "ok": m.ok,
            }
            for m in self.modules
        ]

    def summary(self) -> str:
        bad = [m.name for m in self.modules if not m.ok]
        groups = sum(m.groups for m in self.modules)
        if not bad:
            return (
                f"{self.pattern} check passed: {len(self.modules)} modules, {groups:,} groups, "
                f"every group holds exactly {self.pattern.n} non-zeros"
            )
        return (
            f"{self.pattern} check FAILED in {len(bad)} of {len(self.modules)} modules: "
            + ", ".join(bad[:5])
            + (" ..." if len(bad) > 5 else "")
        )


def _check_one(name: str, weight: torch.Tensor, nm: NMPattern) -> ModuleCheck:
    groups = group_view(weight.detach(), nm.m, name)
    nonzero = (groups != 0).sum(dim=1)
    negative_zeros = int(((weight == 0) & torch.signbit(weight)).sum())
    return ModuleCheck(
        name=name,
        shape=tuple(weight.shape),
        groups=groups.shape[0],
        exact=int((nonzero == nm.n).sum()),
        over=int((nonzero > nm.n).sum()),
        negative_zeros=negative_zeros,
    )


def check_nm(
    model: nn.Module | Mapping[str, torch.Tensor],
    pattern: str | NMPattern = "2:4",
    modules: Sequence[str] | None = None,
) -> NMCheckReport:
    """Check, per module, that every group of ``M`` inputs holds exactly ``N`` non-zeros.

    Parameters
    ----------
    model
        A model (its linears inside decoder layers are checked unless ``modules`` names others)
        or a mapping from names to ``(out, in)`` weights.
    pattern
        The N:M pattern to check.
    modules
        Module names to check.
    """
    nm = NMPattern.parse(pattern)
    if isinstance(model, nn.Module):
        named = dict(model.named_modules())
        names = list(modules) if modules is not None else list(find_linears(model))
        weights = {}
        for name in names:
            if name not in named:
                raise ValueError(f"module {name!r} is not in the model")
            weights[name] = named[name].weight
    else:
        weights = {k: v for k, v in model.items() if modules is None or k in modules}
    checks = tuple(_check_one(name, w, nm) for name, w in weights.items())
    return NMCheckReport(pattern=nm, modules=checks)


def check_masks(masks: Mapping[str, torch.Tensor], pattern: str | NMPattern) -> None:
    """Raise if some mask does not keep exactly ``N`` of every ``M`` entries."""
    nm = NMPattern.parse(pattern)
    for name, mask in masks.items():
        counts = group_view(mask.to(torch.int8), nm.m, name).sum(dim=1)
        bad = int((counts != nm.n).sum())
        if bad:
            raise ValueError(
                f"mask of {name!r} breaks the {nm} pattern in {bad} of {counts.numel()} groups; "
                f"every group of {nm.m} inputs must keep exactly {nm.n}"
            )


# ---------------------------------------------------------------------------------------------
# Finding the layers to prune


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer blocks of a model: its ``ModuleList`` of decoder layers.

    The list whose length equals ``config.num_hidden_layers`` is chosen (else the longest list
    of modules that contain linear layers).

    Raises
    ------
    NotImplementedError
        If the model has no such list.
    """
    expected = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if not any(isinstance(m, nn.Linear) for m in module[0].modules()):
            continue
        if expected is not None and len(module) == expected:
            return name, module
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    if best is None:
        raise NotImplementedError(
            f"{type(model).__name__} has no list of transformer blocks holding linear layers; "
            "N:M sparsification here expects a decoder-only transformer (Llama, Mistral, Qwen2, "
            "Phi-3 and similar)"
        )
    return best


def find_linears(model: nn.Module, targets: Sequence[str] | None = None) -> dict[str, nn.Linear]:
    """The linear layers to sparsify, by module name.

    Parameters
    ----------
    targets
        Regular expressions matched (``re.search``) against full module names. ``None`` selects
        every ``nn.Linear`` inside the decoder layers, which leaves embeddings and the output
        head dense, as in the paper.

    Raises
    ------
    ValueError
        If nothing matches.
    """
    if targets is None:
        prefix, layers = decoder_layers(model)
        found = {
            f"{prefix}.{name}": module
            for name, module in layers.named_modules()
            if isinstance(module, nn.Linear)
        }
    else:
        patterns = []
        for target in targets:
            try:
                patterns.append(re.compile(target))
            except re.error as exc:
                raise ValueError(
                    f"targets entry {target!r} (CLI: --target) is not a regular expression: {exc}"
                ) from exc
        found = {
            name: module
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and any(p.search(name) for p in patterns)
        }
    if not found:
        raise ValueError(
            f"no linear layer of {type(model).__name__} matched targets={targets!r}; "
            "pass regular expressions that match module names such as "
            "'mlp\\.(gate|up|down)_proj' (or targets=None for every linear in the decoder layers)"
        )
    return found


# ---------------------------------------------------------------------------------------------
# Calibration: layer by layer, one layer's activations in memory


class _StopForward(Exception):
    pass


def check_calibration(calibration: Any, num_samples: int | None = None) -> torch.Tensor:
    """Validate calibration token blocks and keep at most ``num_samples`` of them.

    Returns
    -------
    torch.Tensor
        ``(num_samples, seq)`` int64 token ids.
    """
    if calibration is None:
        raise ValueError(
            "calibration=None; this method needs calibration data: a (num_samples, seq) tensor "
            "of token ids, for example pack_blocks(...) over a corpus"
        )
    if not isinstance(calibration, torch.Tensor):
        raise TypeError(
            f"calibration must be a (num_samples, seq) tensor of token ids; got "
            f"{type(calibration).__name__}"
        )
    if calibration.dim() != 2 or calibration.shape[0] == 0 or calibration.shape[1] == 0:
        raise ValueError(
            f"calibration has shape {tuple(calibration.shape)}; expected a non-empty "
            "(num_samples, seq) tensor of token ids"
        )
    if calibration.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"calibration must hold integer token ids; got dtype {calibration.dtype}")
    if num_samples is not None:
        calibration = calibration[:num_samples]
    return calibration.long()


def _layer_output(result: Any) -> torch.Tensor:
    return result[0] if isinstance(result, tuple | list) else result


@torch.no_grad()
def _capture_first_layer_inputs(
    model: nn.Module, layer: nn.Module, calibration: torch.Tensor, batch_size: int
) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """Hidden states and keyword arguments that reach the first decoder layer, per batch."""
    device = next(model.parameters()).device
    captured: list[tuple[torch.Tensor, dict[str, Any]]] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.append((hidden, {k: v for k, v in kwargs.items() if k != "hidden_states"}))
        raise _StopForward

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for start in range(0, calibration.shape[0], batch_size):
            batch = calibration[start : start + batch_size].to(device)
            with contextlib.suppress(_StopForward):
                model(input_ids=batch, use_cache=False)
    finally:
        handle.remove()
    return captured


@dataclass
class SparsityResult:
    """What a sparsifier did.

    ``masks`` maps module names to boolean ``(out_features, in_features)`` masks (``True`` =
    kept).
    """

    method: str
    pattern: NMPattern
    masks: dict[str, torch.Tensor]
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Sparsifier:
    """Base of the N:M sparsifiers.

    A subclass scores each target linear and keeps the ``N`` best of every ``M`` inputs.
    Calibrated methods see the calibration set block by block: the inputs of one decoder layer
    are kept in memory, statistics are gathered with hooks during one pass through that layer,
    its linears are pruned, and (with ``sequential=True``) the pruned layer is run again to give
    the next layer its inputs.

    Parameters
    ----------
    pattern
        ``"2:4"`` (default), ``"1:4"``, ``"4:8"``, ...
    targets
        Regular expressions for module names; ``None`` = every linear in the decoder layers.
    num_samples
        Calibration blocks used (the first ``num_samples`` rows of ``calibration``).
    batch_size
        Calibration blocks per forward pass.
    sequential
        Feed each layer the outputs of the already-pruned layers before it (otherwise the dense
        model's activations).
    """

    pattern: str | NMPattern = "2:4"
    targets: Sequence[str] | None = None
    num_samples: int = 128
    batch_size: int = 8
    sequential: bool = True

    method_name: ClassVar[str] = "base"
    needs_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.pattern = NMPattern.parse(self.pattern)
        if isinstance(self.targets, str):
            self.targets = (self.targets,)
        for name in ("num_samples", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")

    @property
    def nm(self) -> NMPattern:
        assert isinstance(self.pattern, NMPattern)
        return self.pattern

    # Subclass interface ----------------------------------------------------------------------

    def _new_stats(self, linear: nn.Linear) -> Any:
        """A statistics accumulator for one linear (``None`` if the method needs no data)."""
        return None

    def _add_batch(self, stats: Any, inputs: torch.Tensor) -> None:
        """Fold a batch of inputs ``(..., in_features)`` of one linear into its statistics."""

    def _prune(
        self, name: str, weight: torch.Tensor, stats: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(mask, new_weight)``; ``new_weight`` is ``None`` when weights are kept."""
        raise NotImplementedError

    # Driver --------------------------------------------------------------------------------

    def compute_masks(
        self, model: nn.Module, calibration: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The masks this method chooses, leaving ``model`` unchanged."""
        return self._run(model, calibration, write=False).masks

    def apply_(self, model: nn.Module, calibration: torch.Tensor | None = None) -> SparsityResult:
        """Sparsify ``model`` in place (and update weights if the method does).

        Parameters
        ----------
        model
            A Hugging Face causal LM.
        calibration
            ``(num_samples, seq)`` token ids; unused by magnitude pruning.
        """
        return self._run(model, calibration, write=True)

    @torch.no_grad()
    def _run(
        self, model: nn.Module, calibration: torch.Tensor | None, *, write: bool
    ) -> SparsityResult:
        t0 = time.perf_counter()
        linears = find_linears(model, self.targets)
        for name, linear in linears.items():
            group_view(linear.weight, self.nm.m, name)
        masks: dict[str, torch.Tensor] = {}
        if not self.needs_calibration:
            with progress(f"{self.method_name} {self.nm}", total=len(linears)) as update:
                for name, linear in linears.items():
                    mask, new_weight = self._prune(name, linear.weight.detach(), None)
                    masks[name] = mask
                    if write:
                        linear.weight.copy_(
                            apply_mask(
                                new_weight if new_weight is not None else linear.weight, mask
                            )
                        )
                    update(1)
        else:
            data = check_calibration(calibration, self.num_samples)
            masks = self._run_layerwise(model, linears, data, write=write)
        logger.info("%s %s: %d modules pruned", self.method_name, self.nm, len(masks))
        return SparsityResult(
            method=self.method_name, pattern=self.nm, masks=masks, seconds=time.perf_counter() - t0
        )

    def _run_layerwise(
        self,
        model: nn.Module,
        linears: dict[str, nn.Linear],
        calibration: torch.Tensor,
        *,
        write: bool,
    ) -> dict[str, torch.Tensor]:
        prefix, layers = decoder_layers(model)
        by_layer: dict[int, dict[str, nn.Linear]] = {}
        for name, linear in linears.items():
            match = re.match(re.escape(prefix) + r"\.(\d+)\.", name + ".")
            if match is None:
                raise NotImplementedError(
                    f"module {name!r} is outside the decoder layers ({prefix}.*); calibrated "
                    f"methods prune block by block. Leave it out with `targets` (CLI: --target)."
                )
            by_layer.setdefault(int(match.group(1)), {})[name] = linear

        was_training = model.training
        model.eval()
        masks: dict[str, torch.Tensor] = {}
        try:
            inputs = _capture_first_layer_inputs(model, layers[0], calibration, self.batch_size)
            with progress(f"{self.method_name} {self.nm}", total=len(layers)) as update:
                for index, layer in enumerate(layers):
                    inputs = self._prune_layer(
                        layer, by_layer.get(index, {}), inputs, masks, write=write
                    )
                    update(1)
                    logger.debug("layer %d pruned", index)
        finally:
            model.train(was_training)
        return masks

    def _prune_layer(
        self,
        layer: nn.Module,
        linears: dict[str, nn.Linear],
        inputs: list[tuple[torch.Tensor, dict[str, Any]]],
        masks: dict[str, torch.Tensor],
        *,
        write: bool,
    ) -> list[tuple[torch.Tensor, dict[str, Any]]]:
        # 1. One pass through the dense layer gathers every linear's statistics.
        stats = {name: self._new_stats(linear) for name, linear in linears.items()}
        handles = []
        for name, linear in linears.items():

            def hook(
                module: nn.Module, args: tuple[Any, ...], output: Any, name: str = name
            ) -> None:
                self._add_batch(stats[name], args[0].detach())

            handles.append(linear.register_forward_hook(hook))
        try:
            dense_out = [_layer_output(layer(h, **kw)) for h, kw in inputs]
        finally:
            for handle in handles:
                handle.remove()
        if not linears:
            return list(zip(dense_out, (kw for _, kw in inputs), strict=True))

        # 2. Prune; keep the originals when the model must come back unchanged.
        originals = {name: lin.weight.detach().clone() for name, lin in linears.items()}
        for name, linear in linears.items():
            mask, new_weight = self._prune(name, linear.weight.detach(), stats[name])
            stats[name] = None  # free a Hessian as soon as it is used
            masks[name] = mask
            linear.weight.copy_(
                apply_mask(new_weight if new_weight is not None else linear.weight, mask)
            )

        # 3. Next layer's inputs: from the pruned layer (sequential) or the dense one.
        outputs = (
            [_layer_output(layer(h, **kw)) for h, kw in inputs] if self.sequential else dense_out
        )
        if not write:
            for name, linear in linears.items():
                linear.weight.copy_(originals[name])
        return list(zip(outputs, (kw for _, kw in inputs), strict=True))
