"""The one-shot baselines: the shared contract, hand-made known answers, and bad input."""

from __future__ import annotations

import pytest
import torch

from eightfold.models import tiny_causal_lm
from eightfold.sparsity import (
    Magnitude,
    MaskLLM,
    SparseGPT,
    Wanda,
    check_nm,
    find_linears,
    nm_mask_from_scores,
    sparsegpt_prune,
    wanda_scores,
)

CALIBRATION = torch.randint(0, 256, (12, 24), generator=torch.Generator().manual_seed(0))

METHODS = {
    "magnitude": lambda p: Magnitude(pattern=p),
    "wanda": lambda p: Wanda(pattern=p),
    "sparsegpt": lambda p: SparseGPT(pattern=p),
    "sparsegpt-mask-only": lambda p: SparseGPT(pattern=p, update_weights=False, sequential=False),
    "maskllm": lambda p: MaskLLM(pattern=p, steps=3, batch_size=4, prior="magnitude"),
}


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "4:8"])
@pytest.mark.parametrize("method", list(METHODS))
def test_contract_every_group_has_exactly_n(method, pattern):
    model = tiny_causal_lm(num_hidden_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = METHODS[method](pattern).apply_(model, CALIBRATION)
    report = check_nm(model, pattern)
    assert report.ok, report.summary()
    assert set(result.masks) == set(find_linears(model))
    n, m = map(int, pattern.split(":"))
    for name, mask in result.masks.items():
        assert mask.dtype == torch.bool
        assert (mask.reshape(-1, m).sum(dim=1) == n).all(), name
    # Embeddings, norms and the head stay dense and untouched.
    after = model.state_dict()
    for key, value in before.items():
        if not any(key == f"{name}.weight" for name in result.masks):
            assert torch.equal(after[key], value), key
    # Methods without a weight update keep every surviving weight bit-identical.
    if method != "sparsegpt":
        for name, mask in result.masks.items():
            assert torch.equal(after[f"{name}.weight"][mask], before[f"{name}.weight"][mask])


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_compute_masks_leaves_model_unchanged(method):
    model = tiny_causal_lm(num_hidden_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = METHODS[method]("2:4").compute_masks(model, CALIBRATION)
    assert masks
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_magnitude_keeps_two_largest_of_each_four():
    model = tiny_causal_lm(num_hidden_layers=1)
    linear = model.model.layers[0].mlp.down_proj
    with torch.no_grad():
        row = torch.tensor([0.1, -0.9, 0.5, 0.2, -3.0, 1.0, 2.0, 0.05])
        linear.weight.zero_()
        linear.weight[0, :8] = row
    Magnitude().apply_(model)
    assert linear.weight[0, :8].tolist() == pytest.approx([0, -0.9, 0.5, 0, -3.0, 0, 2.0, 0])


def test_wanda_equals_magnitude_with_equal_norms_and_differs_otherwise():
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    magnitude = nm_mask_from_scores(weight.abs(), "2:4")
    same = nm_mask_from_scores(wanda_scores(weight, torch.full((32,), 3.0)), "2:4")
    assert torch.equal(same, magnitude)
    norms = torch.ones(32)
    norms[::4] = 100.0  # the first input of each group carries large activations
    different = nm_mask_from_scores(wanda_scores(weight, norms), "2:4")
    assert not torch.equal(different, magnitude)
    assert different[:, ::4].all()  # the loud channel is always kept
    with pytest.raises(ValueError, match="one norm per input feature"):
        wanda_scores(weight, torch.ones(31))


def test_wanda_uses_activations_on_a_model():
    model = tiny_causal_lm(num_hidden_layers=2)
    wanda = Wanda().compute_masks(model, CALIBRATION)
    magnitude = Magnitude().compute_masks(model)
    assert any(not torch.equal(wanda[n], magnitude[n]) for n in wanda)


def _correlated_inputs(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, dim // 4, generator=gen)
    mix = torch.randn(dim // 4, dim, generator=gen)
    return base @ mix + 0.1 * torch.randn(n, dim, generator=gen)


def test_sparsegpt_beats_magnitude_on_correlated_inputs():
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(24, 64, generator=gen)
    x = _correlated_inputs(512, 64)
    hessian = 2 * x.T @ x / x.shape[0]
    updated, keep = sparsegpt_prune(weight, hessian, "2:4")
    mask_only, keep_only = sparsegpt_prune(weight, hessian, "2:4", update_weights=False)
    magnitude = torch.where(nm_mask_from_scores(weight.abs(), "2:4"), weight, 0.0)

    def err(w: torch.Tensor) -> float:
        return float(((x @ weight.T - x @ w.T) ** 2).sum())

    assert err(updated) < 0.8 * err(magnitude)
    assert err(updated) < err(mask_only)
    assert torch.equal(mask_only[keep_only], weight[keep_only])  # no update
    assert ((keep.view(-1, 4).sum(1)) == 2).all()


def test_sparsegpt_with_identity_hessian_is_magnitude():
    weight = torch.randn(8, 32, generator=torch.Generator().manual_seed(3))
    new, keep = sparsegpt_prune(weight, torch.eye(32), "2:4", damp=0.0)
    expected = nm_mask_from_scores(weight.abs(), "2:4")
    assert torch.equal(keep, expected)
    assert torch.allclose(new, torch.where(expected, weight, 0.0))


def test_sparsegpt_blocksize_does_not_change_result():
    weight = torch.randn(16, 128, generator=torch.Generator().manual_seed(4))
    x = _correlated_inputs(400, 128, seed=5)
    hessian = 2 * x.T @ x / x.shape[0]
    results = [sparsegpt_prune(weight, hessian, "2:4", blocksize=b) for b in (4, 32, 128)]
    for new, keep in results[1:]:
        assert torch.equal(keep, results[0][1])
        assert torch.allclose(new, results[0][0], atol=1e-4, rtol=1e-4)


def test_sparsegpt_damping_changes_result():
    weight = torch.randn(16, 64, generator=torch.Generator().manual_seed(6))
    x = _correlated_inputs(300, 64, seed=7)
    hessian = 2 * x.T @ x / x.shape[0]
    low, _ = sparsegpt_prune(weight, hessian, "2:4", damp=0.01)
    high, _ = sparsegpt_prune(weight, hessian, "2:4", damp=1.0)
    assert not torch.allclose(low, high)


def test_sparsegpt_dead_inputs_and_bad_arguments():
    weight = torch.randn(4, 8)
    hessian = torch.eye(8)
    hessian[3, 3] = 0.0
    new, _ = sparsegpt_prune(weight, hessian, "2:4")
    assert (new[:, 3] == 0).all()
    with pytest.raises(ValueError, match="blocksize"):
        sparsegpt_prune(weight, torch.eye(8), "2:4", blocksize=6)
    with pytest.raises(ValueError, match="hessian has shape"):
        sparsegpt_prune(weight, torch.eye(4), "2:4")
    with pytest.raises(ValueError, match="blocksize"):
        SparseGPT(blocksize=2)


def test_calibration_uses_exactly_num_samples():
    model = tiny_causal_lm(num_hidden_layers=2)
    seen = []
    handle = model.model.embed_tokens.register_forward_hook(
        lambda mod, args, out: seen.append(args[0].shape[0])
    )
    Wanda(num_samples=5, batch_size=2).apply_(model, CALIBRATION)
    handle.remove()
    assert sum(seen) == 5


def test_bad_calibration_is_rejected():
    model = tiny_causal_lm(num_hidden_layers=1)
    with pytest.raises(ValueError, match="non-empty"):
        Wanda().apply_(model, torch.zeros(0, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="needs calibration data"):
        SparseGPT().apply_(model, None)
    with pytest.raises(TypeError, match="token ids"):
        Wanda().apply_(model, torch.zeros(4, 16))
    with pytest.raises(ValueError, match="num_samples"):
        Wanda(num_samples=0)
