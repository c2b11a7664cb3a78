"""EMOVA's unit-to-speech decoder: a VITS variant that reads speech units and a style vector.

EMOVA (arXiv 2409.18042) synthesises speech from the reduced unit sequence with "UVITS", VITS
(Kim et al., arXiv 2106.06103) whose text symbols are the 4096 units (unit ``k`` is symbol
``178 + k``), conditioned on a 256-d L2-normalised style vector ``g``. ``g`` conditions the
stochastic duration predictor, the normalising flows and the HiFi-GAN generator; the unit
encoder is not style-conditioned. Durations are predicted again for every reduced unit.

Module and parameter names follow the authors' ``SynthesizerTrn`` (``enc_p``, ``dec``,
``enc_q``, ``flow``, ``dp``, ``emb_g``, ``enc_r``; weight-normalised convolutions keep
``weight_g``/``weight_v``; layer norms keep ``gamma``/``beta``), so the released
``G_322000.pth`` state dict loads with :meth:`UnitVITS.from_pretrained` when a user has it.
Only inference is implemented; training needs monotonic alignment search and data that is not
public.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eightfold.speech.units import NUM_UNITS, U2S_SYMBOL_OFFSET, check_units, is_integer
from eightfold.storage import atomic_dir

logger = logging.getLogger(__name__)

__all__ = [
    "MelStyleEncoder",
    "SynthesisOutput",
    "UnitVITS",
    "UnitVITSConfig",
    "linear_spectrogram",
    "load_state_dict_file",
]

LRELU_SLOPE = 0.1


# --- configuration --------------------------------------------------------------------------


@dataclass(kw_only=True)
class UnitVITSConfig:
    """Hyperparameters of the unit-to-speech decoder.

    The defaults are those of the released decoder (``G_322000.pth``): 22,050 Hz, linear
    spectrogram with ``n_fft = 1024`` and hop 256, a 6-layer 192-d unit encoder, four
    residual-coupling flows, a stochastic duration predictor, HiFi-GAN with upsampling
    ``8*8*2*2 = 256``, 1344 speaker slots (unused at inference) and a 256-d style vector from
    the reference encoder. :meth:`tiny` gives a seconds-fast random configuration for tests.
    """

    num_units: int = NUM_UNITS
    symbol_offset: int = U2S_SYMBOL_OFFSET
    sampling_rate: int = 22050
    filter_length: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    segment_size: int = 8192
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1
    window_size: int = 4
    resblock: str = "1"
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    )
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2])
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4])
    n_speakers: int = 1344
    gin_channels: int = 256
    use_sdp: bool = True
    use_ref_enc: bool = True
    ref_mode: str = "determinant"
    # Fixed in the authors' constructor; exposed so that tiny test models can shrink them.
    flow_layers: int = 4
    n_flows: int = 4
    posterior_layers: int = 16
    style_kernel_size: int = 5
    style_heads: int = 2

    def __post_init__(self) -> None:
        positive = (
            "num_units",
            "sampling_rate",
            "filter_length",
            "hop_length",
            "win_length",
            "inter_channels",
            "hidden_channels",
            "filter_channels",
            "n_heads",
            "n_layers",
            "kernel_size",
            "upsample_initial_channel",
            "flow_layers",
            "n_flows",
            "posterior_layers",
            "style_kernel_size",
            "style_heads",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if self.symbol_offset < 0 or self.n_speakers < 0 or self.gin_channels < 0:
            raise ValueError(
                "symbol_offset, n_speakers and gin_channels must be >= 0; got "
                f"{self.symbol_offset}, {self.n_speakers}, {self.gin_channels}"
            )
        if not 0.0 <= self.p_dropout < 1.0:
            raise ValueError(f"p_dropout must lie in [0, 1); got {self.p_dropout}")
        if self.hidden_channels % self.n_heads:
            raise ValueError(
                f"hidden_channels ({self.hidden_channels}) must be divisible by n_heads "
                f"({self.n_heads})"
            )
        if self.hidden_channels % self.style_heads:
            raise ValueError(
                f"hidden_channels ({self.hidden_channels}) must be divisible by style_heads "
                f"({self.style_heads})"
            )
        if self.inter_channels % 2:
            raise ValueError(
                f"inter_channels must be even (flows split it); got {self.inter_channels}"
            )
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2'; got {self.resblock!r}")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError(
                "resblock_kernel_sizes and resblock_dilation_sizes must have the same length; "
                f"got {len(self.resblock_kernel_sizes)} and {len(self.resblock_dilation_sizes)}"
            )
        need = 3 if self.resblock == "1" else 2
        for dilations in self.resblock_dilation_sizes:
            if len(dilations) < need:
                raise ValueError(
                    f"resblock {self.resblock} needs {need} dilations per kernel; got {dilations}"
                )
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes) or not self.upsample_rates:
            raise ValueError(
                "upsample_rates and upsample_kernel_sizes must be non-empty and equally long; "
                f"got {self.upsample_rates} and {self.upsample_kernel_sizes}"
            )
        if math.prod(self.upsample_rates) != self.hop_length:
            raise ValueError(
                f"the product of upsample_rates {self.upsample_rates} "
                f"({math.prod(self.upsample_rates)}) must equal hop_length ({self.hop_length}): "
                "the generator turns one spectrogram frame into hop_length samples"
            )
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise ValueError(
                f"upsample_initial_channel ({self.upsample_initial_channel}) must be divisible "
                f"by 2**{len(self.upsample_rates)} (it halves at each upsampling)"
            )
        if self.use_ref_enc and self.gin_channels == 0:
            raise ValueError("use_ref_enc needs gin_channels > 0 (the style vector size)")
        if self.ref_mode not in ("determinant", "entropy"):
            raise ValueError(f"ref_mode must be 'determinant' or 'entropy'; got {self.ref_mode!r}")

    @property
    def n_vocab(self) -> int:
        """Rows of the symbol embedding: 178 text symbols + the units (4274 when released)."""
        return self.symbol_offset + self.num_units

    @property
    def spec_channels(self) -> int:
        """Linear-spectrogram bins, ``filter_length // 2 + 1`` (513 when released)."""
        return self.filter_length // 2 + 1

    @classmethod
    def tiny(cls, **overrides: Any) -> UnitVITSConfig:
        """A small random configuration for tests and the demo (about 0.1M parameters).

        Keeps the released sample rate and unit vocabulary; hop 16 (upsampling 4 * 4).
        """
        settings: dict[str, Any] = dict(
            filter_length=64,
            hop_length=16,
            win_length=64,
            segment_size=256,
            inter_channels=16,
            hidden_channels=16,
            filter_channels=32,
            n_heads=2,
            n_layers=1,
            kernel_size=3,
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3, 5]],
            upsample_rates=[4, 4],
            upsample_initial_channel=32,
            upsample_kernel_sizes=[8, 8],
            n_speakers=4,
            gin_channels=8,
            flow_layers=2,
            n_flows=2,
            posterior_layers=2,
        )
        settings.update(overrides)
        return cls(**settings)

    # The authors' config.json has "data", "model" and "train" sections.
    _MODEL_KEYS = (
        "inter_channels",
        "hidden_channels",
        "filter_channels",
        "n_heads",
        "n_layers",
        "kernel_size",
        "p_dropout",
        "resblock",
        "resblock_kernel_sizes",
        "resblock_dilation_sizes",
        "upsample_rates",
        "upsample_initial_channel",
        "upsample_kernel_sizes",
        "gin_channels",
        "use_sdp",
        "use_ref_enc",
        "ref_mode",
    )
    _DATA_KEYS = ("sampling_rate", "filter_length", "hop_length", "win_length", "n_speakers")

    @classmethod
    def from_official_dict(cls, config: Mapping[str, Any]) -> UnitVITSConfig:
        """Read the authors' ``config.json`` layout (``data`` / ``model`` / ``train``).

        Keys this implementation does not use (learning rates, file lists, ...) are ignored;
        the ``eightfold`` section written by :meth:`to_official_dict` restores the extra
        sizes of tiny models.
        """
        if not isinstance(config, Mapping) or "model" not in config or "data" not in config:
            raise ValueError(
                "expected the decoder's config.json with 'data' and 'model' sections; got keys "
                f"{sorted(config) if isinstance(config, Mapping) else type(config).__name__}"
            )
        values: dict[str, Any] = {}
        for key in cls._MODEL_KEYS:
            if key in config["model"]:
                values[key] = config["model"][key]
        for key in cls._DATA_KEYS:
            if key in config["data"]:
                values[key] = config["data"][key]
        cleaners = config["data"].get("text_cleaners")
        if cleaners is not None and list(cleaners) != ["text_split"]:
            raise ValueError(
                f"this decoder reads unit sequences (text_cleaners ['text_split']); the config "
                f"uses {cleaners}, which is a text-to-speech VITS, not EMOVA's unit decoder"
            )
        if "train" in config and "segment_size" in config["train"]:
            values["segment_size"] = config["train"]["segment_size"]
        values.update(config.get("eightfold", {}))
        return cls(**values)

    def to_official_dict(self) -> dict[str, Any]:
        """This configuration in the authors' ``config.json`` layout."""
        everything = asdict(self)
        model = {key: everything.pop(key) for key in self._MODEL_KEYS}
        data = {key: everything.pop(key) for key in self._DATA_KEYS}
        data["text_cleaners"] = ["text_split"]
        data["add_blank"] = False
        train = {"segment_size": everything.pop("segment_size")}
        return {"train": train, "data": data, "model": model, "eightfold": everything}


# --- building blocks ------------------------------------------------------------------------


class _LayerNorm(nn.Module):
    """Layer norm over the channel axis of ``(batch, channels, time)``."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return y.transpose(1, -1)


class _WeightNorm(nn.Module):
    """A convolution with weight normalisation stored as ``weight_g`` and ``weight_v``.

    The layout of ``torch.nn.utils.weight_norm`` (norm over every axis but 0), kept as plain
    parameters so that checkpoints saved by that deprecated API load without it.
    """

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d) -> None:
        super().__init__()
        weight = conv.weight.detach()
        self.weight_g = nn.Parameter(_norm_except_dim0(weight))
        self.weight_v = nn.Parameter(weight.clone())
        self.bias = conv.bias
        self._transpose = isinstance(conv, nn.ConvTranspose1d)
        self._stride = conv.stride
        self._padding: tuple[int, ...] = tuple(conv.padding)  # type: ignore[arg-type]
        self._dilation = conv.dilation
        self._groups = conv.groups

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / _norm_except_dim0(self.weight_v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._transpose:
            return F.conv_transpose1d(
                x,
                self.weight(),
                self.bias,
                self._stride,
                self._padding,
                0,
                self._groups,
                self._dilation,
            )
        return F.conv1d(
            x, self.weight(), self.bias, self._stride, self._padding, self._dilation, self._groups
        )


def _norm_except_dim0(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (w.ndim - 1)))


def _wn_conv(*args: Any, **kwargs: Any) -> _WeightNorm:
    return _WeightNorm(nn.Conv1d(*args, **kwargs))


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Boolean mask ``(batch, max_length)``, true inside each length."""
    if max_length is None:
        max_length = int(lengths.max())
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def generate_path(durations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard monotonic alignment from integer durations.

    Parameters
    ----------
    durations
        Frames per input position, shape ``(batch, 1, t_x)`` (whole numbers as floats).
    mask
        Valid (frame, position) pairs, shape ``(batch, 1, t_y, t_x)``.

    Returns
    -------
    torch.Tensor
        ``(batch, 1, t_y, t_x)``; entry ``(y, x)`` is 1 when frame ``y`` belongs to position
        ``x``, i.e. ``cum[x - 1] <= y < cum[x]``.
    """
    t_y = mask.shape[2]
    end = torch.cumsum(durations, dim=-1)  # (b, 1, t_x)
    start = end - durations
    frames = torch.arange(t_y, device=durations.device, dtype=durations.dtype)[None, None, :, None]
    path = (frames >= start.unsqueeze(2)) & (frames < end.unsqueeze(2))
    return path.to(mask.dtype) * mask


class _RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with windowed relative position embeddings (VITS encoder).

    Relative offsets ``j - i`` within ``[-window_size, window_size]`` get a learnt key and value
    embedding shared by all heads; offsets outside the window get none.
    """

    def __init__(self, channels: int, n_heads: int, p_dropout: float, window_size: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(p_dropout)
        std = self.k_channels**-0.5
        self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window_size + 1, self.k_channels) * std)
        self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window_size + 1, self.k_channels) * std)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        w = self.window_size

        def heads(h: torch.Tensor) -> torch.Tensor:  # (b, c, t) -> (b, heads, t, k)
            return h.view(b, self.n_heads, self.k_channels, t).transpose(2, 3)

        q = heads(self.conv_q(x)) / math.sqrt(self.k_channels)
        k, v = heads(self.conv_k(x)), heads(self.conv_v(x))
        scores = q @ k.transpose(-2, -1)  # (b, h, t, t)

        # Relative logits for the 2w+1 offsets, scattered onto the band |j - i| <= w.
        rel = q @ self.emb_rel_k[0].t()  # (b, h, t, 2w+1)
        rows = torch.arange(t, device=x.device)
        cols = rows[:, None] + torch.arange(2 * w + 1, device=x.device)[None, :]  # in padded coords
        band = torch.zeros(b, self.n_heads, t, t + 2 * w, dtype=x.dtype, device=x.device)
        band.scatter_(-1, cols.expand(b, self.n_heads, t, 2 * w + 1), rel)
        scores = scores + band[..., w : w + t]

        scores = scores.masked_fill(attn_mask == 0, -1e4)
        p = self.drop(F.softmax(scores, dim=-1))
        out = p @ v

        # The same band read back: weight of offset r for query i is p[i, i + r].
        padded = F.pad(p, (w, w))
        rel_weights = padded.gather(-1, cols.expand(b, self.n_heads, t, 2 * w + 1))
        out = out + rel_weights @ self.emb_rel_v[0]
        out = out.transpose(2, 3).reshape(b, c, t)
        return self.conv_o(out)


class _FFN(nn.Module):
    def __init__(
        self, channels: int, filter_channels: int, kernel_size: int, p_dropout: float
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, ((self.kernel_size - 1) // 2, self.kernel_size // 2))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(self._pad(x * x_mask)))
        x = self.conv_2(self._pad(self.drop(x) * x_mask))
        return x * x_mask


class _Encoder(nn.Module):
    """Post-norm transformer encoder with relative attention and convolutional FFNs."""

    def __init__(
        self,
        channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        window_size: int,
    ) -> None:
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList(
            _RelativeSelfAttention(channels, n_heads, p_dropout, window_size)
            for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(_LayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(
            _FFN(channels, filter_channels, kernel_size, p_dropout) for _ in range(n_layers)
        )
        self.norm_layers_2 = nn.ModuleList(_LayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = norm1(x + self.drop(attn(x, attn_mask)))
            x = norm2(x + self.drop(ffn(x, x_mask)))
        return x * x_mask


class _UnitEncoder(nn.Module):
    """Unit embedding + transformer; outputs the prior mean and log-scale per unit."""

    def __init__(self, config: UnitVITSConfig) -> None:
        super().__init__()
        self.hidden_channels = config.hidden_channels
        self.out_channels = config.inter_channels
        self.emb = nn.Embedding(config.n_vocab, config.hidden_channels)
        nn.init.normal_(self.emb.weight, 0.0, config.hidden_channels**-0.5)
        self.encoder = _Encoder(
            config.hidden_channels,
            config.filter_channels,
            config.n_heads,
            config.n_layers,
            config.kernel_size,
            config.p_dropout,
            config.window_size,
        )
        self.proj = nn.Conv1d(config.hidden_channels, 2 * config.inter_channels, 1)

    def forward(
        self, x: torch.Tensor, x_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = (self.emb(x) * math.sqrt(self.hidden_channels)).transpose(1, 2)  # (b, hidden, t)
        x_mask = sequence_mask(x_lengths, h.shape[2]).unsqueeze(1).to(h.dtype)
        h = self.encoder(h * x_mask, x_mask)
        stats = self.proj(h) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        return h, m, logs, x_mask


class _WN(nn.Module):
    """Gated dilated convolution stack (WaveNet-style) with optional global conditioning."""

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        if gin_channels:
            self.cond_layer = _wn_conv(gin_channels, 2 * hidden_channels * n_layers, 1)
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                _wn_conv(
                    hidden_channels,
                    2 * hidden_channels,
                    kernel_size,
                    dilation=dilation,
                    padding=_padding(kernel_size, dilation),
                )
            )
            # The last layer only feeds the skip path.
            out = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(_wn_conv(hidden_channels, out, 1))

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        output = torch.zeros_like(x)
        h = self.hidden_channels
        cond = self.cond_layer(g) if g is not None else None
        for i, (in_layer, res_skip) in enumerate(
            zip(self.in_layers, self.res_skip_layers, strict=True)
        ):
            x_in = in_layer(x)
            if cond is not None:
                x_in = x_in + cond[:, 2 * h * i : 2 * h * (i + 1)]
            acts = torch.tanh(x_in[:, :h]) * torch.sigmoid(x_in[:, h:])
            rs = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + rs[:, :h]) * x_mask
                output = output + rs[:, h:]
            else:
                output = output + rs
        return output * x_mask


class _ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second half of the channels is shifted by a function of
    the first."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int,
    ) -> None:
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = _WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)
        # Zero-initialised so that an untrained flow is the identity.
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)  # type: ignore[arg-type]

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> torch.Tensor:
        x0, x1 = torch.split(x, [self.half_channels, self.half_channels], dim=1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g=g)
        m = self.post(h) * x_mask
        x1 = (x1 - m) * x_mask if reverse else m + x1 * x_mask
        return torch.cat([x0, x1], dim=1)


class _Flip(nn.Module):
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.flip(x, [1])


class _ResidualCouplingBlock(nn.Module):
    def __init__(
        self, channels: int, hidden_channels: int, n_layers: int, n_flows: int, gin_channels: int
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                _ResidualCouplingLayer(channels, hidden_channels, 5, 1, n_layers, gin_channels)
            )
            self.flows.append(_Flip())

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> torch.Tensor:
        flows = reversed(self.flows) if reverse else self.flows
        for flow in flows:
            x = flow(x, x_mask, g=g, reverse=reverse)
        return x


class _PosteriorEncoder(nn.Module):
    """Spectrogram -> latent ``z`` (used in training and for analysis; kept so the released
    weights load completely)."""

    def __init__(self, config: UnitVITSConfig) -> None:
        super().__init__()
        self.out_channels = config.inter_channels
        self.pre = nn.Conv1d(config.spec_channels, config.hidden_channels, 1)
        self.enc = _WN(config.hidden_channels, 5, 1, config.posterior_layers, config.gin_channels)
        self.proj = nn.Conv1d(config.hidden_channels, 2 * config.inter_channels, 1)

    def forward(
        self, spec: torch.Tensor, lengths: torch.Tensor, g: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = sequence_mask(lengths, spec.shape[2]).unsqueeze(1).to(spec.dtype)
        h = self.enc(self.pre(spec) * mask, mask, g=g)
        stats = self.proj(h) * mask
        m, _ = torch.split(stats, self.out_channels, dim=1)
        return m, mask


class _DDSConv(nn.Module):
    """Dilated depth-separable convolutions with layer norm and GELU."""

    def __init__(self, channels: int, kernel_size: int, n_layers: int, p_dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.convs_sep = nn.ModuleList()
        self.convs_1x1 = nn.ModuleList()
        self.norms_1 = nn.ModuleList()
        self.norms_2 = nn.ModuleList()
        for i in range(n_layers):
            dilation = kernel_size**i
            self.convs_sep.append(
                nn.Conv1d(
                    channels,
                    channels,
                    kernel_size,
                    groups=channels,
                    dilation=dilation,
                    padding=_padding(kernel_size, dilation),
                )
            )
            self.convs_1x1.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(_LayerNorm(channels))
            self.norms_2.append(_LayerNorm(channels))

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None
    ) -> torch.Tensor:
        if g is not None:
            x = x + g
        for sep, one, n1, n2 in zip(
            self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2, strict=True
        ):
            y = F.gelu(n1(sep(x * x_mask)))
            y = F.gelu(n2(one(y)))
            x = x + self.drop(y)
        return x * x_mask


class _ElementwiseAffine(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, reverse: bool = False, **kwargs: Any
    ) -> torch.Tensor:
        if reverse:
            return (x - self.m) * torch.exp(-self.logs) * x_mask
        return (self.m + torch.exp(self.logs) * x) * x_mask


def rational_quadratic_spline(
    inputs: torch.Tensor,
    unnormalized_widths: torch.Tensor,
    unnormalized_heights: torch.Tensor,
    unnormalized_derivatives: torch.Tensor,
    *,
    inverse: bool = False,
    tail_bound: float = 5.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monotonic rational-quadratic spline on ``[-B, B]`` with identity tails.

    (Durkan et al., Neural Spline Flows, arXiv 1906.04032.) The inner derivatives come from
    ``unnormalized_derivatives`` (``num_bins - 1`` per element); the two boundary derivatives
    are fixed to 1 so the spline joins the identity tails smoothly.

    Parameters
    ----------
    inputs
        Shape ``(...)``.
    unnormalized_widths, unnormalized_heights
        Shape ``(..., num_bins)``.
    unnormalized_derivatives
        Shape ``(..., num_bins - 1)``.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Outputs and ``log|d out / d in|`` of the direction computed, both shape ``(...)``.
    """
    num_bins = unnormalized_widths.shape[-1]
    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    x = inputs.clamp(-tail_bound, tail_bound)

    # Boundary derivatives of exactly 1: softplus(c) + min_derivative = 1.
    constant = math.log(math.exp(1 - min_derivative) - 1)
    derivs = F.pad(unnormalized_derivatives, (1, 1), value=constant)
    derivatives = min_derivative + F.softplus(derivs)

    def knots(unnormalized: torch.Tensor, minimum: float) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = minimum + (1 - minimum * num_bins) * F.softmax(unnormalized, dim=-1)
        cum = F.pad(torch.cumsum(sizes, dim=-1), (1, 0), value=0.0)
        cum = 2 * tail_bound * cum - tail_bound
        cum = torch.cat(
            [
                torch.full_like(cum[..., :1], -tail_bound),
                cum[..., 1:-1],
                torch.full_like(cum[..., :1], tail_bound),
            ],
            dim=-1,
        )
        return cum, cum[..., 1:] - cum[..., :-1]

    cumwidths, widths = knots(unnormalized_widths, min_bin_width)
    cumheights, heights = knots(unnormalized_heights, min_bin_height)

    # Bin of each input: the last knot is nudged up so that x == B falls in the last bin.
    locations = cumheights if inverse else cumwidths
    locations = torch.cat([locations[..., :-1], locations[..., -1:] + 1e-6], dim=-1)
    idx = (x[..., None] >= locations).sum(dim=-1, keepdim=True) - 1
    idx = idx.clamp(0, num_bins - 1)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, idx)[..., 0]

    in_cumwidths, in_widths = pick(cumwidths), pick(widths)
    in_cumheights, in_heights = pick(cumheights), pick(heights)
    delta = heights / widths
    in_delta = pick(delta)
    in_d0 = pick(derivatives[..., :-1])
    in_d1 = pick(derivatives[..., 1:])
    slope_sum = in_d0 + in_d1 - 2 * in_delta

    if inverse:
        dy = x - in_cumheights
        a = dy * slope_sum + in_heights * (in_delta - in_d0)
        b = in_heights * in_d0 - dy * slope_sum
        c = -in_delta * dy
        discriminant = (b.pow(2) - 4 * a * c).clamp_min(0)
        theta = (2 * c) / (-b - torch.sqrt(discriminant))
        out = theta * in_widths + in_cumwidths
    else:
        theta = (x - in_cumwidths) / in_widths
        tt = theta * (1 - theta)
        numerator = in_heights * (in_delta * theta.pow(2) + in_d0 * tt)
        out = in_cumheights + numerator / (in_delta + slope_sum * tt)
    tt = theta * (1 - theta)
    denominator = in_delta + slope_sum * tt
    derivative_numerator = in_delta.pow(2) * (
        in_d1 * theta.pow(2) + 2 * in_delta * tt + in_d0 * (1 - theta).pow(2)
    )
    logabsdet = torch.log(derivative_numerator) - 2 * torch.log(denominator)
    if inverse:
        logabsdet = -logabsdet
    out = torch.where(inside, out, inputs)
    logabsdet = torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
    return out, logabsdet


class _ConvFlow(nn.Module):
    """Spline coupling flow of the stochastic duration predictor."""

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        n_layers: int,
        num_bins: int = 10,
        tail_bound: float = 5.0,
    ) -> None:
        super().__init__()
        self.filter_channels = filter_channels
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.half_channels = in_channels // 2
        self.pre = nn.Conv1d(self.half_channels, filter_channels, 1)
        self.convs = _DDSConv(filter_channels, kernel_size, n_layers, p_dropout=0.0)
        self.proj = nn.Conv1d(filter_channels, self.half_channels * (num_bins * 3 - 1), 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)  # type: ignore[arg-type]

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> torch.Tensor:
        x0, x1 = torch.split(x, [self.half_channels, self.half_channels], dim=1)
        h = self.proj(self.convs(self.pre(x0), x_mask, g=g)) * x_mask
        b, c, t = x0.shape
        h = h.reshape(b, c, -1, t).permute(0, 1, 3, 2)  # (b, c, t, 3 * bins - 1)
        scale = math.sqrt(self.filter_channels)
        x1, _ = rational_quadratic_spline(
            x1,
            h[..., : self.num_bins] / scale,
            h[..., self.num_bins : 2 * self.num_bins] / scale,
            h[..., 2 * self.num_bins :],
            inverse=reverse,
            tail_bound=self.tail_bound,
        )
        return torch.cat([x0, x1], dim=1) * x_mask


class _StochasticDurationPredictor(nn.Module):
    """Flow-based duration model; at inference it maps noise to log-durations given the units
    and the style."""

    def __init__(
        self, in_channels: int, kernel_size: int, p_dropout: float, n_flows: int, gin_channels: int
    ) -> None:
        super().__init__()
        # The authors' constructor ignores its filter size and uses in_channels throughout.
        ch = in_channels

        def flow_stack() -> nn.ModuleList:
            flows = nn.ModuleList([_ElementwiseAffine(2)])
            for _ in range(n_flows):
                flows.append(_ConvFlow(2, ch, kernel_size, n_layers=3))
                flows.append(_Flip())
            return flows

        self.flows = flow_stack()
        self.post_pre = nn.Conv1d(1, ch, 1)
        self.post_proj = nn.Conv1d(ch, ch, 1)
        self.post_convs = _DDSConv(ch, kernel_size, n_layers=3, p_dropout=p_dropout)
        self.post_flows = nn.ModuleList([_ElementwiseAffine(2)])
        for _ in range(4):
            self.post_flows.append(_ConvFlow(2, ch, kernel_size, n_layers=3))
            self.post_flows.append(_Flip())
        self.pre = nn.Conv1d(in_channels, ch, 1)
        self.proj = nn.Conv1d(ch, ch, 1)
        self.convs = _DDSConv(ch, kernel_size, n_layers=3, p_dropout=p_dropout)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, ch, 1)

    def infer(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None, noise: torch.Tensor
    ) -> torch.Tensor:
        """Log-durations ``(batch, 1, t)`` from noise ``(batch, 2, t)``."""
        x = self.pre(x)
        if g is not None:
            x = x + self.cond(g)
        x = self.proj(self.convs(x, x_mask)) * x_mask
        # Reverse order; the first coupling flow is skipped at inference, as in VITS.
        flows = list(reversed(self.flows))
        flows = [*flows[:-2], flows[-1]]
        z = noise
        for flow in flows:
            z = flow(z, x_mask, g=x, reverse=True)
        return z[:, :1]


class _DurationPredictor(nn.Module):
    """Deterministic duration predictor (used when ``use_sdp`` is false)."""

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float,
        gin_channels: int,
    ) -> None:
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_1 = _LayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(
            filter_channels, filter_channels, kernel_size, padding=kernel_size // 2
        )
        self.norm_2 = _LayerNorm(filter_channels)
        self.proj = nn.Conv1d(filter_channels, 1, 1)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, in_channels, 1)

    def infer(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if g is not None:
            x = x + self.cond(g)
        x = self.drop(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.drop(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        return self.proj(x * x_mask) * x_mask


class _ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            _wn_conv(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d))
            for d in dilation[:3]
        )
        self.convs2 = nn.ModuleList(
            _wn_conv(channels, channels, kernel_size, padding=_padding(kernel_size))
            for _ in dilation[:3]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = x + xt
        return x


class _ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            _wn_conv(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d))
            for d in dilation[:2]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


class _Generator(nn.Module):
    """HiFi-GAN generator: latent frames -> waveform, conditioned on the style vector."""

    def __init__(self, config: UnitVITSConfig) -> None:
        super().__init__()
        c0 = config.upsample_initial_channel
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(config.inter_channels, c0, 7, 1, padding=3)
        block = _ResBlock1 if config.resblock == "1" else _ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = c0
        for i, (u, k) in enumerate(
            zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True)
        ):
            ch = c0 // 2 ** (i + 1)
            self.ups.append(
                _WeightNorm(nn.ConvTranspose1d(c0 // 2**i, ch, k, u, padding=(k - u) // 2))
            )
            for kernel, dilation in zip(
                config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True
            ):
                self.resblocks.append(block(ch, kernel, dilation))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        if config.gin_channels:
            self.cond = nn.Conv1d(config.gin_channels, c0, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


# --- the reference (style) encoder ----------------------------------------------------------


class _Linear(nn.Module):
    """A Linear wrapped as ``.fc`` (the authors' ``LinearNorm`` naming)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class _Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


class _ConvNorm(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Conv1dGLU(nn.Module):
    """Residual gated convolution (GLU)."""

    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.channels = channels
        self.conv1 = _ConvNorm(channels, 2 * channels, kernel_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(self.conv1(x), self.channels, dim=1)
        return x + self.dropout(a * torch.sigmoid(b))


class _StyleAttention(nn.Module):
    """Residual multi-head self-attention of the style encoder.

    The logits are scaled by ``sqrt(d_model)``, not ``sqrt(d_head)``, as in the authors' code.
    """

    def __init__(self, n_head: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.d_k = d_model // n_head
        self.temperature = math.sqrt(d_model)
        self.w_qs = nn.Linear(d_model, n_head * self.d_k)
        self.w_ks = nn.Linear(d_model, n_head * self.d_k)
        self.w_vs = nn.Linear(d_model, n_head * self.d_k)
        self.fc = nn.Linear(n_head * self.d_k, d_model)
        self.attn_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape

        def heads(h: torch.Tensor) -> torch.Tensor:  # (b, t, n*d) -> (b, n, t, d)
            return h.view(b, t, self.n_head, self.d_k).transpose(1, 2)

        q, k, v = heads(self.w_qs(x)), heads(self.w_ks(x)), heads(self.w_vs(x))
        scores = (q @ k.transpose(-2, -1)) / self.temperature
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        out = self.attn_dropout(F.softmax(scores, dim=-1)) @ v
        out = out.transpose(1, 2).reshape(b, t, self.n_head * self.d_k)
        return self.dropout(self.fc(out)) + x


class MelStyleEncoder(nn.Module):
    """Reference encoder: linear spectrogram -> one L2-normalised style vector.

    After Meta-StyleSpeech (Min et al., arXiv 2106.03153): two Linear + Mish layers, two
    residual gated convolutions, multi-head self-attention, a Linear, a masked average over
    time and L2 normalisation. Parameter names match the authors' ``enc_r``.

    Parameters
    ----------
    in_dim
        Spectrogram bins (513 in the released decoder).
    hidden_dim
        Width (the decoder's ``hidden_channels``, 192).
    out_dim
        Style vector size (the decoder's ``gin_channels``, 256).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        kernel_size: int = 5,
        n_head: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.spectral = nn.Sequential(
            _Linear(in_dim, hidden_dim),
            _Mish(),
            nn.Dropout(dropout),
            _Linear(hidden_dim, hidden_dim),
            _Mish(),
            nn.Dropout(dropout),
        )
        self.temporal = nn.Sequential(
            _Conv1dGLU(hidden_dim, kernel_size, dropout),
            _Conv1dGLU(hidden_dim, kernel_size, dropout),
        )
        self.slf_attn = _StyleAttention(n_head, hidden_dim, dropout)
        self.fc = _Linear(hidden_dim, out_dim)

    def forward(self, spec: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Style vectors of spectrograms.

        Parameters
        ----------
        spec
            Linear spectrograms, shape ``(batch, frames, in_dim)``.
        lengths
            Valid frames per item, shape ``(batch,)``; ``None`` when all are valid.

        Returns
        -------
        torch.Tensor
            Unit-norm style vectors, shape ``(batch, out_dim)``.
        """
        if spec.ndim != 3 or spec.shape[-1] != self.in_dim:
            raise ValueError(
                f"spec must have shape (batch, frames, {self.in_dim}); got {tuple(spec.shape)}"
            )
        padding = None
        if lengths is not None:
            padding = ~sequence_mask(lengths, spec.shape[1])
            if bool((lengths < 1).any()):
                raise ValueError(f"every reference needs at least one frame; got {lengths}")
        x = self.spectral(spec)
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)
        if padding is not None:
            x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        x = self.fc(self.slf_attn(x, padding))
        if padding is None:
            pooled = x.mean(dim=1)
        else:
            valid = (~padding).sum(dim=1, keepdim=True).to(x.dtype)
            pooled = x.masked_fill(padding.unsqueeze(-1), 0.0).sum(dim=1) / valid
        return F.normalize(pooled, dim=1)


def linear_spectrogram(
    waveform: torch.Tensor, n_fft: int, hop_length: int, win_length: int
) -> torch.Tensor:
    """Magnitude spectrogram as the decoder's data pipeline computes it.

    Reflect-pads ``(n_fft - hop) / 2`` samples on each side, then a Hann-window STFT without
    centring; magnitude is ``sqrt(re^2 + im^2 + 1e-6)``.

    Parameters
    ----------
    waveform
        Audio in ``[-1, 1]``, shape ``(batch, samples)``.

    Returns
    -------
    torch.Tensor
        Shape ``(batch, n_fft // 2 + 1, frames)``.
    """
    if waveform.ndim != 2:
        raise ValueError(f"waveform must have shape (batch, samples); got {tuple(waveform.shape)}")
    pad = (n_fft - hop_length) // 2
    if waveform.shape[1] <= pad:
        raise ValueError(
            f"the audio has {waveform.shape[1]} samples; at least {pad + 1} are needed for one "
            f"spectrogram frame (n_fft {n_fft}, hop {hop_length})"
        )
    y = F.pad(waveform.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(win_length, dtype=waveform.dtype, device=waveform.device)
    spec = torch.stft(
        y,
        n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-6)


# --- the synthesiser ------------------------------------------------------------------------


@dataclass
class SynthesisOutput:
    """Result of :meth:`UnitVITS.synthesize`.

    Attributes
    ----------
    waveform
        Audio in ``[-1, 1]``, shape ``(batch, samples)``; item ``i`` is valid up to
        ``lengths[i]`` (zero-padded after).
    lengths
        Valid samples per item, shape ``(batch,)``: ``frames * hop_length``.
    durations
        Spectrogram frames given to each unit, shape ``(batch, units)``.
    sample_rate
        Samples per second (22,050 for the released decoder).
    """

    waveform: torch.Tensor
    lengths: torch.Tensor
    durations: torch.Tensor
    sample_rate: int


class UnitVITS(nn.Module):
    """EMOVA's unit-to-speech decoder (VITS on speech units with a style vector).

    Parameters
    ----------
    config
        Sizes; :class:`UnitVITSConfig()` is the released decoder, ``UnitVITSConfig.tiny()`` a
        small random one.

    Notes
    -----
    The released weights (``G_322000.pth`` with its ``config.json``, from the authors' speech
    tokenizer release) are needed for intelligible speech; with random weights the output has
    the right length and sample rate but is noise. Load them with :meth:`from_pretrained`.
    """

    def __init__(self, config: UnitVITSConfig | None = None) -> None:
        super().__init__()
        config = config or UnitVITSConfig()
        if not isinstance(config, UnitVITSConfig):
            raise TypeError(f"config must be a UnitVITSConfig; got {type(config).__name__}")
        self.config = config
        self.enc_p = _UnitEncoder(config)
        self.dec = _Generator(config)
        self.enc_q = _PosteriorEncoder(config)
        self.flow = _ResidualCouplingBlock(
            config.inter_channels,
            config.hidden_channels,
            config.flow_layers,
            config.n_flows,
            config.gin_channels,
        )
        self.dp: _StochasticDurationPredictor | _DurationPredictor
        if config.use_sdp:
            self.dp = _StochasticDurationPredictor(
                config.hidden_channels, 3, 0.5, 4, config.gin_channels
            )
        else:
            self.dp = _DurationPredictor(config.hidden_channels, 256, 3, 0.5, config.gin_channels)
        if config.n_speakers > 1:
            self.emb_g: nn.Parameter | nn.Embedding
            if config.ref_mode == "entropy":
                self.emb_g = nn.Parameter(torch.randn(config.n_speakers, 2 * config.gin_channels))
            else:
                self.emb_g = nn.Embedding(config.n_speakers, config.gin_channels)
        if config.use_ref_enc:
            self.enc_r = MelStyleEncoder(
                config.spec_channels,
                config.hidden_channels,
                config.gin_channels,
                config.style_kernel_size,
                config.style_heads,
                config.p_dropout,
            )

    # -- inputs -----------------------------------------------------------------------------

    def _symbol_batch(
        self,
        units: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor,
        unit_lengths: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.enc_p.emb.weight.device
        num = self.config.num_units
        if isinstance(units, torch.Tensor):
            if units.ndim == 1:
                units = units.unsqueeze(0)
            if units.ndim != 2 or units.is_floating_point():
                raise ValueError(
                    "units must be an integer tensor of shape (batch, units) or (units,); got "
                    f"{units.dtype} {tuple(units.shape)}"
                )
            if unit_lengths is None:
                unit_lengths = torch.full((units.shape[0],), units.shape[1], dtype=torch.long)
            rows = [
                check_units(row[: int(n)], num_units=num, name=f"units[{i}]")
                for i, (row, n) in enumerate(zip(units, unit_lengths, strict=True))
            ]
        else:
            if unit_lengths is not None:
                raise ValueError("unit_lengths is only used with a padded tensor of units")
            seqs = list(units)
            # One flat sequence of ids, or a list of sequences (lists, tuples, arrays, tensors).
            if seqs and is_integer(seqs[0]):
                seqs = [seqs]
            if not seqs:
                raise ValueError("units is empty; expected at least one unit sequence")
            rows = [
                check_units(s, num_units=num, name=f"units[{i}]")  # type: ignore[arg-type]
                for i, s in enumerate(seqs)
            ]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        batch = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = torch.tensor(row, dtype=torch.long) + self.config.symbol_offset
        return batch.to(device), lengths.to(device)

    def _style(self, style: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if style is None:
            return None
        gin = self.config.gin_channels
        if not isinstance(style, torch.Tensor):
            raise TypeError(f"style must be a tensor of {gin} values; got {type(style).__name__}")
        if gin == 0:
            raise ValueError("this decoder has no style conditioning (gin_channels = 0)")
        g = style.to(self.enc_p.emb.weight)
        if g.ndim == 1:
            g = g[None, :, None]
        elif g.ndim == 2:
            g = g[:, :, None]
        if g.ndim != 3 or g.shape[1] != gin or g.shape[2] != 1:
            raise ValueError(
                f"style must have shape ({gin},), (batch, {gin}) or (batch, {gin}, 1); got "
                f"{tuple(style.shape)}"
            )
        if g.shape[0] == 1 and batch > 1:
            g = g.expand(batch, -1, -1)
        if g.shape[0] != batch:
            raise ValueError(f"style has {g.shape[0]} vectors for {batch} unit sequences")
        return g

    # -- inference --------------------------------------------------------------------------

    @torch.no_grad()
    def synthesize(
        self,
        units: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor,
        style: torch.Tensor | None = None,
        *,
        unit_lengths: torch.Tensor | None = None,
        noise_scale: float = 0.667,
        noise_scale_w: float = 0.8,
        length_scale: float = 1.0,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        max_frames: int | None = None,
    ) -> SynthesisOutput:
        """Turn reduced unit sequences into waveforms.

        Parameters
        ----------
        units
            Unit ids in ``[0, num_units)``: one sequence, a list of sequences, or a padded
            integer tensor ``(batch, units)`` with ``unit_lengths``.
        style
            Style vector(s): ``(gin,)``, ``(batch, gin)`` or ``(batch, gin, 1)``, e.g. from
            :class:`~eightfold.speech.styles.StyleRegistry`; ``None`` for no conditioning.
        noise_scale, noise_scale_w
            Prior and duration noise (the authors synthesise with 0.667 and 0.8).
        length_scale
            Speaking-rate factor on the predicted durations (> 1 is slower).
        deterministic
            Zero both noises: the output then depends only on units, style and weights.
        generator
            Random generator for the noise, for reproducible sampling.
        max_frames
            Refuse outputs longer than this many spectrogram frames (a guard against runaway
            durations from untrained weights); ``None`` for no limit.

        Returns
        -------
        SynthesisOutput
        """
        if length_scale <= 0 or noise_scale < 0 or noise_scale_w < 0:
            raise ValueError(
                "length_scale must be > 0 and the noise scales >= 0; got "
                f"length_scale={length_scale}, noise_scale={noise_scale}, "
                f"noise_scale_w={noise_scale_w}"
            )
        if deterministic:
            noise_scale = noise_scale_w = 0.0
        was_training = self.training
        self.eval()  # dropout off: synthesis is inference
        try:
            return self._synthesize(
                units,
                style,
                unit_lengths,
                noise_scale,
                noise_scale_w,
                length_scale,
                generator,
                max_frames,
            )
        finally:
            self.train(was_training)

    def _synthesize(
        self,
        units: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor,
        style: torch.Tensor | None,
        unit_lengths: torch.Tensor | None,
        noise_scale: float,
        noise_scale_w: float,
        length_scale: float,
        generator: torch.Generator | None,
        max_frames: int | None,
    ) -> SynthesisOutput:
        x, x_lengths = self._symbol_batch(units, unit_lengths)
        g = self._style(style, x.shape[0])

        h, m_p, logs_p, x_mask = self.enc_p(x, x_lengths)
        # Noise is drawn even at scale 0 so that a seeded run consumes the random stream as
        # the authors' code does (duration noise first, then prior noise).
        noise = _randn((x.shape[0], 2, x.shape[1]), h, generator) * noise_scale_w
        logw = self.dp.infer(h, x_mask, g, noise)
        w_ceil = torch.ceil(torch.exp(logw) * x_mask * length_scale)
        y_lengths = torch.clamp_min(w_ceil.sum(dim=(1, 2)), 1).long()
        t_y = int(y_lengths.max())
        if max_frames is not None and t_y > max_frames:
            raise ValueError(
                f"the predicted durations give {t_y} frames, more than max_frames={max_frames}; "
                "check that the weights are trained, or raise max_frames"
            )
        y_mask = sequence_mask(y_lengths, t_y).unsqueeze(1).to(x_mask.dtype)
        attn = generate_path(w_ceil, x_mask.unsqueeze(2) * y_mask.unsqueeze(-1))[:, 0]

        m_p = (attn @ m_p.transpose(1, 2)).transpose(1, 2)  # (b, inter, t_y)
        logs_p = (attn @ logs_p.transpose(1, 2)).transpose(1, 2)
        # The authors draw this noise with randn_like on a transposed (non-contiguous) view;
        # filling a tensor of that layout keeps seeded samples identical to theirs (PyTorch
        # fills contiguous and strided tensors with different sequences).
        b, d, t = m_p.shape
        prior_noise = torch.empty((b, t, d), dtype=m_p.dtype, device=m_p.device).transpose(1, 2)
        prior_noise.normal_(generator=generator)
        z_p = m_p + prior_noise * torch.exp(logs_p) * noise_scale
        z = self.flow(z_p, y_mask, g=g, reverse=True) * y_mask

        # One item at a time through the generator: its convolutions would otherwise carry the
        # padding of shorter items (bias + style) into their last samples.
        hop = self.config.hop_length
        lengths = y_lengths * hop
        audio = torch.zeros(z.shape[0], t_y * hop, dtype=z.dtype, device=z.device)
        for i, frames in enumerate(y_lengths.tolist()):
            g_i = g[i : i + 1] if g is not None else None
            audio[i, : frames * hop] = self.dec(z[i : i + 1, :, :frames], g=g_i)[0, 0]
        return SynthesisOutput(
            waveform=audio,
            lengths=lengths,
            durations=w_ceil[:, 0].long(),
            sample_rate=self.config.sampling_rate,
        )

    @torch.no_grad()
    def style_embedding(
        self, spec: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Style vectors of reference spectrograms ``(batch, spec_channels, frames)``.

        Returns
        -------
        torch.Tensor
            ``(batch, gin_channels)``, unit norm.
        """
        if not self.config.use_ref_enc:
            raise ValueError("this decoder has no reference encoder (use_ref_enc is false)")
        return self.enc_r(spec.transpose(1, 2), lengths)

    # -- checkpoints ------------------------------------------------------------------------

    def load_official_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a state dict saved by the authors' code (or by :meth:`save_pretrained`).

        Accepts ``gamma``/``beta`` and ``GAMMA``/``BETA`` layer-norm names, a ``module.``
        prefix, and any common prefix in front of the decoder's keys (``u2s.enc_p...``).

        Raises
        ------
        ValueError
            When keys are missing or unexpected, or shapes differ; every offending key is
            listed (up to 20 of each kind).
        """
        expected = self.state_dict()
        renamed = _normalise_keys(state_dict, expected)
        missing = sorted(set(expected) - set(renamed))
        unexpected = sorted(set(renamed) - set(expected))
        wrong = sorted(
            f"{k}: checkpoint {tuple(renamed[k].shape)} vs model {tuple(expected[k].shape)}"
            for k in set(expected) & set(renamed)
            if tuple(renamed[k].shape) != tuple(expected[k].shape)
        )
        if missing or unexpected or wrong:
            parts = []
            for title, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", wrong),
            ):
                if keys:
                    shown = ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else "")
                    parts.append(f"{len(keys)} {title}: {shown}")
            raise ValueError(
                "the checkpoint does not match this decoder configuration; "
                + "; ".join(parts)
                + ". Check that config.json belongs to these weights."
            )
        self.load_state_dict(renamed, strict=True)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], config: UnitVITSConfig | None = None
    ) -> UnitVITS:
        """Load a decoder from a folder (``config.json`` + weights) or a weights file.

        The weights are ``*.safetensors`` or the authors' ``G_*.pth`` (read with
        ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
        containers). A folder's ``config.json`` is in the authors' layout.

        Raises
        ------
        FileNotFoundError
            When the folder has no config or no weights; the message lists what is needed.
        """
        target = Path(path)
        if not target.exists():
            raise FileNotFoundError(
                f"decoder checkpoint {str(target)!r} does not exist. It must be a folder with "
                "config.json and the weights (G_322000.pth or *.safetensors) of the released "
                "EMOVA speech tokenizer's unit-to-speech decoder."
            )
        if target.is_dir():
            weights = _find_weights(target)
            if config is None:
                config_file = target / "config.json"
                if not config_file.is_file():
                    raise FileNotFoundError(
                        f"no config.json in {str(target)!r}; the decoder's config.json (data / "
                        "model sections) must sit beside the weights"
                    )
                config = UnitVITSConfig.from_official_dict(json.loads(config_file.read_text()))
        else:
            weights = target
            if config is None:
                sibling = target.parent / "config.json"
                if not sibling.is_file():
                    raise FileNotFoundError(
                        f"no config.json beside {str(target)!r}; pass config= or put the "
                        "decoder's config.json in the same folder"
                    )
                config = UnitVITSConfig.from_official_dict(json.loads(sibling.read_text()))
        model = cls(config)
        model.load_official_state_dict(load_state_dict_file(weights))
        model.eval()
        logger.info("loaded the unit-to-speech decoder from %s", weights)
        return model

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` (authors' layout) and ``model.safetensors`` atomically."""
        from safetensors.torch import save_file

        with atomic_dir(folder, kind="model") as tmp:
            (tmp / "config.json").write_text(
                json.dumps(self.config.to_official_dict(), indent=2) + "\n", encoding="utf-8"
            )
            tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(tensors, str(tmp / "model.safetensors"))
        return Path(folder)


def _randn(
    shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def _find_weights(folder: Path) -> Path:
    safes = sorted(folder.glob("*.safetensors"))
    if len(safes) == 1:
        return safes[0]
    if len(safes) > 1:
        raise ValueError(
            f"{str(folder)!r} holds several .safetensors files {[p.name for p in safes]}; pass "
            "the one to load"
        )
    gens = sorted(folder.glob("G_*.pth"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if gens:
        return gens[-1]
    others = sorted(folder.glob("*.pth")) + sorted(folder.glob("*.pt"))
    if len(others) == 1:
        return others[0]
    raise FileNotFoundError(
        f"no decoder weights in {str(folder)!r}: expected model.safetensors or the released "
        "G_322000.pth beside config.json"
    )


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read tensors from ``.safetensors`` or a PyTorch checkpoint (safe loading only).

    A checkpoint dict with a ``model`` or ``state_dict`` entry (as the authors save it) is
    unwrapped.
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"weights file {str(target)!r} does not exist")
    if target.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(target)))
        except SafetensorError as exc:
            raise ValueError(
                f"{str(target)!r} is damaged or not a safetensors file ({exc}); download or "
                "save it again"
            ) from exc
    if target.read_bytes()[:40].startswith(b"version https://git-lfs"):
        raise ValueError(
            f"{str(target)!r} is a git-LFS pointer, not the weights; download the real file "
            "(git lfs pull, or the model hub)"
        )
    try:
        loaded = torch.load(str(target), map_location="cpu", weights_only=True)
    except Exception as exc:  # an unsafe or corrupt pickle; never fall back to full unpickling
        raise ValueError(
            f"could not read {str(target)!r} as a weights-only PyTorch checkpoint ({exc}); "
            "convert it to .safetensors"
        ) from exc
    for key in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ValueError(f"{str(target)!r} does not hold a state dict of tensors")
    return dict(loaded)


def _normalise_keys(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        key = re.sub(r"\.GAMMA$", ".gamma", key)
        key = re.sub(r"\.BETA$", ".beta", key)
        out[key] = value
    # A wrapper's prefix (e.g. "u2s_model."): find it from a key every decoder has.
    anchor = "enc_p.emb.weight"
    if anchor not in out:
        prefixes = [k[: -len(anchor)] for k in out if k.endswith("." + anchor)]
        if len(prefixes) == 1:
            prefix = prefixes[0]
            out = {k[len(prefix) :]: v for k, v in out.items() if k.startswith(prefix)}
    return out
