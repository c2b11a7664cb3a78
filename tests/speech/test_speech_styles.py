"""Style registry files and the reference encoder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from eightfold.speech import (
    ReferenceEncoder,
    StyleRegistry,
    UnitVITS,
    UnitVITSConfig,
    advertised_conditions,
    all_conditions,
    load_audio,
    resample,
)

HAPPY = "gender-female_emotion-happy_speed-normal_pitch-high"
SAD = "gender-male_emotion-sad_speed-slow_pitch-low"


def test_lookup_and_errors() -> None:
    reg = StyleRegistry({HAPPY: np.ones(4, dtype=np.float32), SAD: torch.zeros(4)})
    assert reg.dim == 4 and len(reg) == 2 and list(reg) == sorted([HAPPY, SAD])
    assert torch.equal(reg.style("female", emotion="happy", pitch="high"), torch.ones(4))
    with pytest.raises(
        ValueError, match="not in this style table. Known styles: gender-female_emotion-happy"
    ):
        reg.get_style("gender-female_emotion-angry_speed-normal_pitch-high")
    with pytest.raises(ValueError, match="malformed"):
        reg.get_style("happy")
    with pytest.raises(ValueError, match="emotion must be one of"):
        reg.style("female", emotion="excited")
    with pytest.raises(ValueError, match="has 3 values"):
        StyleRegistry({HAPPY: np.ones(4), SAD: np.ones(3)})
    with pytest.raises(ValueError, match="not of the form"):
        StyleRegistry({"female-happy": np.ones(4)})
    with pytest.raises(ValueError, match="NaN"):
        StyleRegistry({HAPPY: np.array([np.nan, 1.0])})


def test_folder_round_trip_in_the_authors_layout(tmp_path: Path) -> None:
    reg = StyleRegistry.random(all_conditions(), 256, seed=1)
    assert len(reg) == 126 and len(reg.advertised()) == 24
    folder = reg.save(tmp_path / "styles")
    index = (folder / "condition2style_centroid.txt").read_text().splitlines()
    assert index[0] == "condition|style_centroid_file" and len(index) == 127
    # one float32 vector of 256 values per condition: 128-byte header + 1024 bytes of data
    one = folder / f"{HAPPY}_centroid_style_embedding.npy"
    assert one.stat().st_size == 1152
    loaded = StyleRegistry.from_folder(folder)
    for condition in advertised_conditions():
        assert torch.equal(loaded[condition], reg[condition])


def test_index_with_repository_paths_and_lfs_pointers(tmp_path: Path) -> None:
    (tmp_path / "vec.npy").write_bytes(_npy(np.arange(8, dtype=np.float32)))
    (tmp_path / "condition2style_centroid.txt").write_text(
        "condition|style_centroid_file\n"
        f"{HAPPY}|./speech_tokenization/condition_style_centroid/vec.npy\n"
    )
    assert StyleRegistry.from_folder(tmp_path)[HAPPY].tolist() == list(range(8))
    (tmp_path / "vec.npy").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1152\n"
    )
    with pytest.raises(ValueError, match="git-LFS pointer"):
        StyleRegistry.from_folder(tmp_path)
    (tmp_path / "condition2style_centroid.txt").write_text("wrong header\n")
    with pytest.raises(ValueError, match="must start with the header"):
        StyleRegistry.from_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no style index"):
        StyleRegistry.from_folder(tmp_path / "missing")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _encoder() -> ReferenceEncoder:
    torch.manual_seed(0)
    return ReferenceEncoder.from_decoder(UnitVITS(UnitVITSConfig.tiny()))


def _tone(rate: int, seconds: float = 0.25, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_embeddings_are_unit_norm_and_centroids_are_means() -> None:
    encoder = _encoder()
    a = encoder.embed(_tone(22050, freq=220), 22050)
    b = encoder.embed(_tone(22050, freq=660), 22050)
    assert a.shape == (8,)
    assert float(a.norm()) == pytest.approx(1.0, abs=1e-5)
    reg = encoder.centroids({HAPPY: [_tone(22050, freq=220), _tone(22050, freq=660)]}, 22050)
    torch.testing.assert_close(reg[HAPPY], (a + b) / 2)
    with pytest.raises(ValueError, match="no reference recordings"):
        encoder.centroids({HAPPY: []}, 22050)


def test_other_sample_rates_are_resampled(tmp_path: Path, caplog) -> None:
    encoder = _encoder()
    native = encoder.embed(_tone(22050), 22050)
    from_16k = encoder.embed(_tone(16000), 16000)
    assert "resampling" in caplog.text
    assert float(native @ from_16k) > 0.99
    path = tmp_path / "ref.wav"
    soundfile.write(path, np.stack([_tone(16000)] * 2, axis=1), 16000)  # stereo, 16 kHz
    audio = load_audio(path, 22050)
    assert audio.ndim == 1 and abs(len(audio) - 22050 // 4) <= 1
    torch.testing.assert_close(encoder.embed(path), from_16k, atol=1e-4, rtol=0)


def test_audio_errors(tmp_path: Path) -> None:
    encoder = _encoder()
    with pytest.raises(ValueError, match="sample_rate is required"):
        encoder.embed(_tone(22050))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        encoder.embed(_tone(22050) * 1000, 22050)
    with pytest.raises(ValueError, match="mono"):
        encoder.embed(np.zeros((2, 100), dtype=np.float32), 22050)
    with pytest.raises(ValueError, match="cannot resample"):
        resample(np.zeros(100, dtype=np.float32), 22050, 16001)
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav", 22050)
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(ValueError, match="could not read"):
        load_audio(tmp_path / "bad.wav", 22050)
    with pytest.raises(ValueError, match="samples"):
        encoder.embed(np.zeros(10, dtype=np.float32), 22050)
