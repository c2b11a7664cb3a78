"""Speaking styles: condition strings to style vectors, and the reference encoder behind them.

EMOVA (arXiv 2409.18042) controls the voice of its unit-to-speech decoder with one fixed-size
vector per style condition (``gender-female_emotion-happy_speed-normal_pitch-high``). The
released table holds 126 conditions, each the centroid (mean of L2-normalised reference-encoder
embeddings) of recordings in that style, stored as one 256-value ``.npy`` file per condition and
listed in ``condition2style_centroid.txt`` (header ``condition|style_centroid_file``).

:class:`StyleRegistry` loads such a folder (or builds one in memory) and looks styles up with
errors that list the known conditions. :class:`ReferenceEncoder` computes embeddings and
centroids from audio with the decoder's own style encoder, so users can make new styles.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eightfold.speech.decoder import MelStyleEncoder, UnitVITS, linear_spectrogram
from eightfold.speech.prompts import StyleCondition, advertised_conditions
from eightfold.storage import atomic_dir

logger = logging.getLogger(__name__)

__all__ = [
    "CENTROID_INDEX",
    "ReferenceEncoder",
    "StyleRegistry",
    "load_audio",
    "resample",
]

#: Name of the index file of a style folder.
CENTROID_INDEX = "condition2style_centroid.txt"
_INDEX_HEADER = "condition|style_centroid_file"
_LFS_MAGIC = b"version https://git-lfs"


class StyleRegistry(Mapping[str, torch.Tensor]):
    """Condition string -> style vector of a fixed size.

    Parameters
    ----------
    styles
        Mapping from condition strings to vectors of ``dim`` values (arrays or tensors).
    dim
        Expected size (256 for the released decoder); inferred from the first vector if
        ``None``.

    Examples
    --------
    >>> reg = StyleRegistry({"gender-female_emotion-happy_speed-normal_pitch-high":
    ...                      torch.ones(4)})
    >>> reg.style("female", emotion="happy", pitch="high").shape
    torch.Size([4])
    """

    def __init__(self, styles: Mapping[str, Any], *, dim: int | None = None) -> None:
        if not isinstance(styles, Mapping) or not styles:
            raise ValueError("styles must be a non-empty mapping from condition strings to vectors")
        vectors: dict[str, torch.Tensor] = {}
        for condition, value in styles.items():
            StyleCondition.parse(condition)  # validates the form
            vector = torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(-1)
            if dim is None:
                dim = int(vector.numel())
            if vector.numel() != dim:
                raise ValueError(
                    f"style {condition!r} has {vector.numel()} values; every style must have "
                    f"{dim} (the decoder's gin_channels)"
                )
            if not bool(torch.isfinite(vector).all()):
                raise ValueError(f"style {condition!r} holds NaN or infinite values")
            vectors[condition] = vector
        self._styles = vectors
        self.dim = int(dim)  # type: ignore[arg-type]

    def __getitem__(self, condition: str) -> torch.Tensor:
        if condition not in self._styles:
            try:
                StyleCondition.parse(condition)
                problem = "is not in this style table"
            except ValueError as exc:
                problem = f"is malformed ({exc})"
            known = sorted(self._styles)
            shown = ", ".join(known[:30]) + (
                f", ... ({len(known)} in all)" if len(known) > 30 else ""
            )
            raise KeyError(f"style {condition!r} {problem}. Known styles: {shown}")
        return self._styles[condition].clone()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._styles))

    def __len__(self) -> int:
        return len(self._styles)

    def get_style(self, condition: str | StyleCondition) -> torch.Tensor:
        """The vector of a condition, shape ``(dim,)``; raises ValueError listing known ones."""
        try:
            return self[str(condition)]
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None

    def style(
        self,
        gender: str = "female",
        *,
        emotion: str = "neutral",
        speed: str = "normal",
        pitch: str = "normal",
    ) -> torch.Tensor:
        """The vector of a style given by its parts (validated against the label sets)."""
        return self.get_style(
            StyleCondition(gender=gender, emotion=emotion, speed=speed, pitch=pitch)
        )

    def advertised(self) -> list[str]:
        """The advertised 24 styles (4 emotions x 3 pitches x 2 voices) present here."""
        return [c for c in advertised_conditions() if c in self._styles]

    # -- files ------------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> StyleRegistry:
        """Load a style folder in the authors' layout.

        ``condition2style_centroid.txt`` starts with ``condition|style_centroid_file``; each
        further line is ``condition|path/to/vector.npy``. Paths are resolved relative to the
        folder, then by file name inside it (the authors' index holds repository-relative
        paths).

        Raises
        ------
        FileNotFoundError
            When the index or a listed file is absent.
        ValueError
            On a malformed index, a git-LFS pointer instead of the data (the GitHub copy of the
            released centroids), or a file that is not a float vector.
        """
        root = Path(folder)
        index = root / CENTROID_INDEX if root.is_dir() else root
        if not index.is_file():
            raise FileNotFoundError(
                f"no style index at {str(index)!r}; a style folder holds {CENTROID_INDEX} and "
                "one .npy vector per condition (the released centroids come with the EMOVA "
                "speech tokenizer weights)"
            )
        base = index.parent
        lines = [line.rstrip("\r\n") for line in index.read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line.strip()]
        if not lines or lines[0].strip() != _INDEX_HEADER:
            raise ValueError(
                f"{str(index)!r} must start with the header {_INDEX_HEADER!r}; got "
                f"{lines[0] if lines else '(empty file)'!r}"
            )
        styles = {}
        for number, line in enumerate(lines[1:], start=2):
            if line.count("|") != 1:
                raise ValueError(
                    f"{str(index)!r} line {number}: expected 'condition|file'; got {line!r}"
                )
            condition, name = (part.strip() for part in line.split("|"))
            styles[condition] = _load_vector(_resolve(base, name))
        logger.info("loaded %d styles from %s", len(styles), base)
        return cls(styles)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the registry in the authors' layout (index + one ``.npy`` per style),
        atomically."""
        with atomic_dir(folder, kind="speech styles") as tmp:
            rows = [_INDEX_HEADER]
            for condition in self:
                name = f"{condition}_centroid_style_embedding.npy"
                buffer = io.BytesIO()
                np.save(
                    buffer, self._styles[condition].numpy().astype(np.float32), allow_pickle=False
                )
                (tmp / name).write_bytes(buffer.getvalue())
                rows.append(f"{condition}|{name}")
            (tmp / CENTROID_INDEX).write_text("\n".join(rows) + "\n", encoding="utf-8")
        return Path(folder)

    @classmethod
    def random(cls, conditions: Sequence[str], dim: int, *, seed: int = 0) -> StyleRegistry:
        """Unit-norm random styles for tests and demos (no meaning; not the released ones)."""
        generator = torch.Generator().manual_seed(seed)
        vectors = torch.randn(len(conditions), dim, generator=generator)
        vectors = vectors / vectors.norm(dim=1, keepdim=True)
        return cls(dict(zip(conditions, vectors, strict=True)))


def _resolve(base: Path, name: str) -> Path:
    candidate = Path(name)
    for path in (candidate if candidate.is_absolute() else base / candidate, base / candidate.name):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"style vector {name!r} listed in {CENTROID_INDEX} is not in {str(base)!r}"
    )


def _load_vector(path: Path) -> np.ndarray:
    head = path.read_bytes()[:64]
    if head.startswith(_LFS_MAGIC):
        raise ValueError(
            f"{str(path)!r} is a git-LFS pointer, not a style vector: the GitHub repository "
            "stores only pointers. Use the centroids shipped with the speech tokenizer weights "
            "(or run git lfs pull)."
        )
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} is not a plain .npy array: {exc}") from exc
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{str(path)!r} holds {array.dtype}; expected float values")
    return array.reshape(-1)


# --- audio ----------------------------------------------------------------------------------


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono audio with a polyphase filter (``scipy.signal.resample_poly``).

    Raises
    ------
    ValueError
        For non-positive rates or a ratio whose reduced form needs factors above 1000 (too
        costly for a polyphase filter; resample with a dedicated tool first).
    """
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive; got {orig_rate} and {target_rate}")
    if orig_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    ratio = Fraction(target_rate, orig_rate)
    if ratio.numerator > 1000 or ratio.denominator > 1000:
        raise ValueError(
            f"cannot resample {orig_rate} Hz to {target_rate} Hz cleanly (ratio {ratio}); "
            f"convert the file to {target_rate} Hz first (e.g. with sox or ffmpeg)"
        )
    from scipy.signal import resample_poly

    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def load_audio(path: str | os.PathLike[str], sample_rate: int) -> np.ndarray:
    """Read an audio file as mono float32 at ``sample_rate`` (resampled if needed).

    Multi-channel audio is averaged to mono; other sample rates are resampled with
    :func:`resample` (a WARNING says so).
    """
    import soundfile

    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"audio file {str(target)!r} does not exist")
    try:
        audio, rate = soundfile.read(str(target), dtype="float32", always_2d=True)
    except RuntimeError as exc:  # soundfile's error for unreadable formats
        raise ValueError(f"could not read {str(target)!r} as audio: {exc}") from exc
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        logger.warning("%s is %d Hz; resampling to %d Hz", target.name, rate, sample_rate)
        mono = resample(mono, rate, sample_rate)
    return mono


class ReferenceEncoder:
    """Style vectors from reference audio, with the decoder's style encoder (``enc_r``).

    Parameters
    ----------
    style_encoder
        A :class:`~eightfold.speech.decoder.MelStyleEncoder` (the decoder's ``enc_r``).
    sampling_rate, filter_length, hop_length, win_length
        Spectrogram settings of the decoder (22,050 Hz, 1024, 256, 1024 when released).
    """

    def __init__(
        self,
        style_encoder: MelStyleEncoder,
        *,
        sampling_rate: int,
        filter_length: int,
        hop_length: int,
        win_length: int,
    ) -> None:
        if filter_length // 2 + 1 != style_encoder.in_dim:
            raise ValueError(
                f"filter_length {filter_length} gives {filter_length // 2 + 1} bins but the "
                f"style encoder reads {style_encoder.in_dim}"
            )
        self.style_encoder = style_encoder.eval()
        self.sampling_rate = sampling_rate
        self.filter_length = filter_length
        self.hop_length = hop_length
        self.win_length = win_length

    @classmethod
    def from_decoder(cls, decoder: UnitVITS) -> ReferenceEncoder:
        """The reference encoder of a decoder (shares its weights)."""
        if not decoder.config.use_ref_enc:
            raise ValueError("the decoder has no reference encoder (use_ref_enc is false)")
        c = decoder.config
        return cls(
            decoder.enc_r,
            sampling_rate=c.sampling_rate,
            filter_length=c.filter_length,
            hop_length=c.hop_length,
            win_length=c.win_length,
        )

    @property
    def dim(self) -> int:
        return self.style_encoder.out_dim

    def _waveform(self, audio: Any, sample_rate: int | None) -> torch.Tensor:
        if isinstance(audio, str | os.PathLike):
            return torch.from_numpy(load_audio(audio, self.sampling_rate))
        if sample_rate is None:
            raise ValueError(
                "sample_rate is required for in-memory audio (arrays and tensors); pass the "
                "rate the audio was recorded at"
            )
        array = (
            audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        )
        if array.ndim != 1:
            raise ValueError(f"audio must be mono with shape (samples,); got {array.shape}")
        if sample_rate != self.sampling_rate:
            logger.warning(
                "reference audio is %d Hz; resampling to %d Hz", sample_rate, self.sampling_rate
            )
            array = resample(array, sample_rate, self.sampling_rate)
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    @torch.no_grad()
    def embed(self, audio: Any, sample_rate: int | None = None) -> torch.Tensor:
        """L2-normalised style vector of one recording.

        Parameters
        ----------
        audio
            A file path, or mono samples ``(samples,)`` (array or tensor) in ``[-1, 1]``.
        sample_rate
            Rate of in-memory audio; resampled to the decoder's rate when different.

        Returns
        -------
        torch.Tensor
            Shape ``(dim,)``.
        """
        wave = self._waveform(audio, sample_rate)
        if float(wave.abs().max()) > 1.0 + 1e-6:
            raise ValueError(
                "audio samples must lie in [-1, 1] (float PCM); got a peak of "
                f"{float(wave.abs().max()):.3g}. Scale integer PCM by 1/32768."
            )
        param = next(self.style_encoder.parameters())
        spec = linear_spectrogram(
            wave[None].to(param), self.filter_length, self.hop_length, self.win_length
        )
        return self.style_encoder(spec.transpose(1, 2))[0]

    def centroids(
        self, references: Mapping[str, Sequence[Any]], sample_rate: int | None = None
    ) -> StyleRegistry:
        """Style table from reference recordings: per condition, the mean of the
        L2-normalised embeddings (not renormalised, as in the released centroids).

        Parameters
        ----------
        references
            Condition string -> recordings (paths or arrays).
        sample_rate
            Rate of in-memory recordings.
        """
        styles = {}
        for condition, clips in references.items():
            StyleCondition.parse(condition)
            clips = list(clips)
            if not clips:
                raise ValueError(f"condition {condition!r} has no reference recordings")
            vectors = torch.stack([self.embed(clip, sample_rate) for clip in clips])
            styles[condition] = vectors.mean(dim=0)
            logger.debug("style %s from %d clips", condition, len(clips))
        return StyleRegistry(styles, dim=self.dim)
