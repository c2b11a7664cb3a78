"""Export: Hugging Face folder with exact +0.0 zeros, MaskLLM-style mask file, verified loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from eightfold.evaluation.perplexity import perplexity
from eightfold.models import tiny_causal_lm
from eightfold.sparsity import (
    Magnitude,
    SparseGPT,
    load_masks,
    load_sparse,
    masks_from_weights,
    read_mask_npz,
    save_sparse,
    to_semi_structured,
    write_mask_npz,
)

DATA = torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(0))


@pytest.fixture()
def pruned(tmp_path):
    model = tiny_causal_lm(num_hidden_layers=2)
    result = SparseGPT(num_samples=8).apply_(model, DATA)
    folder = save_sparse(model, tmp_path / "sparse", masks=result.masks, method="sparsegpt")
    return model, result, folder


def test_round_trip_reproduces_the_model(pruned):
    model, result, folder = pruned
    loaded = load_sparse(folder)
    assert loaded.check.ok and loaded.pattern.n == 2
    for name, mask in result.masks.items():
        assert torch.equal(loaded.masks[name], mask)
    before = perplexity(model, DATA).perplexity
    after = perplexity(loaded.model, DATA).perplexity
    assert after == pytest.approx(before, rel=1e-6)
    meta = json.loads((folder / "sparsity.json").read_text())
    assert meta["pattern"] == "2:4" and meta["method"] == "sparsegpt"
    assert meta["modules"]["model.layers.0.mlp.down_proj"] == [64, 128]


def test_saved_zeros_are_positive(tmp_path):
    model = tiny_causal_lm(num_hidden_layers=1)
    masks = Magnitude().compute_masks(model)
    with torch.no_grad():  # prune with a plain product: leaves -0.0 behind
        for name, mask in masks.items():
            weight = model.get_submodule(name).weight
            weight.mul_(mask)
    assert any(torch.signbit(model.get_submodule(n).weight[~m]).any() for n, m in masks.items())
    folder = save_sparse(model, tmp_path / "s", masks=masks)
    tensors = load_file(str(folder / "model.safetensors"))
    for name, mask in masks.items():
        saved = tensors[f"{name}.weight"]
        assert (saved[~mask] == 0).all() and not torch.signbit(saved[~mask]).any()
    # Embeddings and the head are saved untouched.
    assert torch.equal(tensors["lm_head.weight"], model.lm_head.weight)


def test_mask_file_is_big_endian_packed_flat(tmp_path):
    mask = torch.tensor(
        [
            [True, True, False, False, False, True, False, True],
            [False, False, True, True, True, False, True, False],
        ]
    )
    path = write_mask_npz(tmp_path / "mask_compressed.npz", {"layer.fc": mask})
    with np.load(path) as data:
        assert data.files == ["layer.fc.weight.mask"]
        packed = data["layer.fc.weight.mask"]
    # 11000101 00111010, most significant bit first (numpy's default order).
    assert packed.tolist() == [0b11000101, 0b00111010]
    assert np.array_equal(packed, np.packbits(mask.numpy().reshape(-1)))
    back = read_mask_npz(path, {"layer.fc": (2, 8)})
    assert torch.equal(back["layer.fc"], mask)
    with pytest.raises(ValueError, match="no entry"):
        read_mask_npz(path, {"other": (2, 8)})
    with pytest.raises(ValueError, match="shapes"):
        load_masks(path)


def test_load_sparse_detects_tampering(pruned):
    _, result, folder = pruned
    file = folder / "model.safetensors"
    tensors = load_file(str(file))
    name, mask = next(iter(result.masks.items()))
    weight = tensors[f"{name}.weight"].clone()
    weight[~mask] = 0.5
    tensors[f"{name}.weight"] = weight
    save_file(tensors, str(file), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not \\+0.0"):
        load_sparse(folder)


def test_masks_from_weights_and_bad_input(tmp_path):
    model = tiny_causal_lm(num_hidden_layers=1)
    with pytest.raises(ValueError, match="is not 2:4 sparse"):
        masks_from_weights(model)
    with pytest.raises(ValueError, match="non-zero weights where its mask prunes"):
        save_sparse(model, tmp_path / "x", masks=Magnitude().compute_masks(model))
    result = Magnitude().apply_(model)
    recovered = masks_from_weights(model)
    for name, mask in result.masks.items():
        assert torch.equal(recovered[name], mask)
    save_sparse(model, tmp_path / "y")  # masks recovered from the weights
    assert load_sparse(tmp_path / "y").check.ok
    with pytest.raises(FileNotFoundError, match="sparsity.json"):
        load_sparse(tmp_path / "nothing")


def test_semi_structured_needs_cuda():
    model = tiny_causal_lm(num_hidden_layers=1)
    masks = Magnitude().apply_(model).masks
    if torch.cuda.is_available():
        converted = to_semi_structured(model.half().cuda(), masks)
        assert converted
    else:
        with pytest.raises(NotImplementedError, match="CUDA"):
            to_semi_structured(model, masks)
