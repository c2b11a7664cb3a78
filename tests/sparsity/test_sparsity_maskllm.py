"""MaskLLM: sampling statistics, schedules, prior, gradient flow, frozen weights, resume."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from eightfold.models import tiny_causal_lm
from eightfold.sparsity import (
    MaskedLinear,
    MaskLLM,
    NMPattern,
    candidate_masks,
    check_nm,
    cosine_learning_rate,
    gumbel_softmax_sample,
    linear_schedule,
    nm_mask_from_scores,
    prior_logits,
    save_sparse,
)

DATA = torch.randint(0, 256, (16, 24), generator=torch.Generator().manual_seed(0))


def _small(**kwargs):
    defaults = dict(steps=4, batch_size=4, prior="magnitude")
    defaults.update(kwargs)
    return MaskLLM(**defaults)


@pytest.mark.parametrize("tau", [4.0, 1.0, 0.05])
def test_gumbel_argmax_frequencies_match_softmax(tau):
    # Gumbel-max: argmax of a sample is distributed as softmax(logits) at any temperature.
    # 40,000 draws; every frequency within 5 binomial standard deviations (fixed seed).
    logits = torch.tensor([1.0, 0.5, 0.0, -0.5, 2.0, -1.0])
    draws = 40_000
    gen = torch.Generator().manual_seed(123)
    y = gumbel_softmax_sample(logits.expand(draws, 6), tau, generator=gen)
    freq = torch.bincount(y.argmax(dim=1), minlength=6).double() / draws
    probs = torch.softmax(logits, dim=0).double()
    sd = (probs * (1 - probs) / draws).sqrt()
    assert ((freq - probs).abs() <= 5 * sd).all(), (freq, probs)


def test_gumbel_samples_are_on_the_simplex_and_sharpen():
    logits = torch.randn(2000, 6, generator=torch.Generator().manual_seed(1))
    warm = gumbel_softmax_sample(logits, 4.0, generator=torch.Generator().manual_seed(2))
    cold = gumbel_softmax_sample(logits * 5, 0.05, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(warm.sum(dim=1), torch.ones(2000), atol=1e-5)
    assert cold.max(dim=1).values.mean() > 0.99 > warm.max(dim=1).values.mean()
    soft_mask = warm @ candidate_masks("2:4")
    assert torch.allclose(soft_mask.sum(dim=1), torch.full((2000,), 2.0), atol=1e-5)
    hard = gumbel_softmax_sample(logits, 1.0, generator=torch.Generator().manual_seed(3), hard=True)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax_sample(logits, 0.0)


def test_schedules_hit_start_and_end():
    assert linear_schedule(0, 50, 100.0, 500.0) == 100.0
    assert linear_schedule(49, 50, 100.0, 500.0) == pytest.approx(500.0)
    assert linear_schedule(0, 50, 4.0, 0.05) == 4.0
    assert linear_schedule(49, 50, 4.0, 0.05) == pytest.approx(0.05)
    assert linear_schedule(24, 49, 0.0, 1.0) == pytest.approx(0.5)
    assert cosine_learning_rate(0, 50, 5e-4, 5e-5) == pytest.approx(5e-4)
    assert cosine_learning_rate(49, 50, 5e-4, 5e-5) == pytest.approx(5e-5)
    mid = cosine_learning_rate(25, 51, 5e-4, 5e-5)
    assert mid == pytest.approx((5e-4 + 5e-5) / 2)


def test_training_follows_the_schedules():
    result = _small(steps=5).apply_(tiny_causal_lm(num_hidden_layers=1), DATA)
    first, last = result.history[0], result.history[-1]
    assert (first["tau"], first["kappa"], first["lr"]) == (4.0, 100.0, 5e-4)
    assert first["reg_weight"] == 1e-5 and last["reg_weight"] == 0.0
    assert last["tau"] == pytest.approx(0.05) and last["kappa"] == pytest.approx(500.0)
    assert last["lr"] == pytest.approx(5e-5)
    assert [h["step"] for h in result.history] == [1, 2, 3, 4, 5]


def test_defaults_are_the_authors_script_values():
    m = MaskLLM()
    assert m.pattern == NMPattern(2, 4)
    assert m.scale_range == (100.0, 500.0) and m.temperature_range == (4.0, 0.05)
    assert m.weight_reg == 1e-5 and m.prior == "sparsegpt" and m.prior_strength == 3.0
    assert (m.learning_rate, m.min_learning_rate) == (5e-4, 5e-5)
    assert (m.weight_decay, m.betas, m.eps, m.grad_clip) == (0.1, (0.9, 0.95), 1e-5, 1.0)
    assert m.init_std == 0.01 and m.hard is False and m.num_samples == 128


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4"])
def test_prior_offset_and_strength(pattern):
    nm = NMPattern.parse(pattern)
    weight = torch.randn(64, 64, generator=torch.Generator().manual_seed(4))
    prior = nm_mask_from_scores(weight.abs(), nm)
    base = prior_logits(
        None,
        nm,
        num_groups=64 * 64 // nm.m,
        strength=0.0,
        generator=torch.Generator().manual_seed(5),
    )
    shifted = prior_logits(prior, nm, strength=3.0, generator=torch.Generator().manual_seed(5))
    overlap = prior.float().view(-1, nm.m) @ candidate_masks(nm).T
    expected = base + (overlap - nm.n / 2) * base.std() * 3.0
    assert torch.allclose(shifted, expected, atol=1e-6)
    strong = prior_logits(prior, nm, strength=50.0, generator=torch.Generator().manual_seed(6))
    chosen = candidate_masks(nm).bool()[strong.argmax(dim=1)]
    assert torch.equal(chosen, prior.view(-1, nm.m))


def test_prior_strength_three_keeps_about_95_percent():
    # sigma = 0.01 noise against a 3-sigma margin: about 5.5 % of groups start off the prior.
    weight = torch.randn(256, 256, generator=torch.Generator().manual_seed(7))
    prior = nm_mask_from_scores(weight.abs(), "2:4")
    logits = prior_logits(prior, "2:4", strength=3.0, generator=torch.Generator().manual_seed(8))
    chosen = candidate_masks("2:4").bool()[logits.argmax(dim=1)]
    agree = (chosen == prior.view(-1, 4)).all(dim=1).float().mean().item()
    assert 0.93 < agree < 0.96


def test_weights_frozen_and_bit_identical():
    model = tiny_causal_lm(num_hidden_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_seen = []

    def callback(entry):
        grads_seen.append(
            sorted(
                {n.rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.grad is not None}
            )
        )
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(n.endswith(".logits") for n in trainable)

    result = _small(callback=callback).apply_(model, DATA)
    assert grads_seen == [["logits"]] * 4
    after = model.state_dict()
    assert set(after) == set(before)  # wrappers removed
    for key, value in before.items():
        name = key.removesuffix(".weight")
        if name in result.masks:
            mask = result.masks[name]
            assert torch.equal(after[key][mask], value[mask])
            assert not torch.signbit(after[key][~mask]).any()
            assert (after[key][~mask] == 0).all()
        else:
            assert torch.equal(after[key], value), key
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    assert check_nm(model).ok


def test_compute_masks_leaves_every_parameter_unchanged():
    model = tiny_causal_lm(num_hidden_layers=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = _small(steps=2).compute_masks(model, DATA)
    assert masks
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_gradients_reach_only_logits_and_regulariser_sign():
    linear = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[4.0, 3.0, 1.0, 0.5]]))
    module = MaskedLinear(linear, torch.zeros(1, 6), NMPattern(2, 4))
    module.train()
    module.generator = torch.Generator().manual_seed(0)
    module(torch.randn(3, 4))
    (-module.sparse_weight_norm).backward()  # the regulariser alone, as it enters the loss
    assert linear.weight.grad is None and not linear.weight.requires_grad
    assert module.logits.grad is not None
    # A descent step raises the logit of 1100 (the two largest weights) the most.
    assert int((-module.logits.grad).argmax()) == 0


def test_eval_mask_is_deterministic_and_train_mask_is_random():
    linear = torch.nn.Linear(8, 4)
    module = MaskedLinear(linear, torch.randn(8, 6), NMPattern(2, 4))
    module.eval()
    torch.manual_seed(0)
    a = module.mask()
    torch.manual_seed(1)
    b = module.mask()
    assert torch.equal(a, b) and torch.equal(a.bool(), module.hard_mask())
    module.train()
    module.generator = torch.Generator().manual_seed(0)
    c = module.mask()
    module.generator = torch.Generator().manual_seed(1)
    d = module.mask()
    assert not torch.equal(c, d)


def test_bf16_model_keeps_fp32_logits_without_nan():
    model = tiny_causal_lm(num_hidden_layers=1).to(torch.bfloat16)
    result = _small(steps=6, batch_size=2).apply_(model, DATA)
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert check_nm(model).ok


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    straight = _small(steps=6, seed=3).apply_(tiny_causal_lm(num_hidden_layers=1), DATA)

    def stop_at_5(entry):
        if entry["step"] == 5:
            raise KeyboardInterrupt

    model = tiny_causal_lm(num_hidden_layers=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        _small(steps=6, seed=3, checkpoint_dir=ckpt, checkpoint_every=2, callback=stop_at_5).apply_(
            model, DATA
        )
    for key, value in model.state_dict().items():  # interrupted run leaves the model as it was
        assert torch.equal(value, before[key])
    resumed = _small(steps=6, seed=3, checkpoint_dir=ckpt, checkpoint_every=2).apply_(model, DATA)
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    assert resumed.info["steps_run"] == 2
    for name, mask in straight.masks.items():
        assert torch.equal(resumed.masks[name], mask)
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)

    with pytest.raises(ValueError, match="pattern 2:4.*1:4"):
        _small(steps=6, seed=3, pattern="1:4", checkpoint_dir=ckpt).apply_(
            tiny_causal_lm(num_hidden_layers=1), DATA
        )
    with pytest.raises(ValueError, match="other settings.*steps"):
        _small(steps=7, seed=3, checkpoint_dir=ckpt).apply_(
            tiny_causal_lm(num_hidden_layers=1), DATA
        )


def test_mask_transfer_from_saved_mask_and_checkpoint(tmp_path):
    source = tiny_causal_lm(num_hidden_layers=1)
    first = _small(steps=3, checkpoint_dir=tmp_path / "ckpt").apply_(source, DATA)
    save_sparse(source, tmp_path / "sparse", masks=first.masks)
    new_data = torch.randint(0, 256, (8, 24), generator=torch.Generator().manual_seed(9))

    # A saved mask as a strong prior: two small steps cannot leave it.
    model = tiny_causal_lm(num_hidden_layers=1)
    second = _small(steps=2, prior=tmp_path / "sparse", prior_strength=50.0).apply_(model, new_data)
    for name, mask in first.masks.items():
        assert torch.equal(second.masks[name], mask)

    # Saved logits continue exactly where the first run stopped.
    model = tiny_causal_lm(num_hidden_layers=1)
    third = _small(
        steps=1,
        prior=tmp_path / "ckpt",
        learning_rate=1e-9,
        min_learning_rate=1e-9,
        weight_decay=0.0,
    ).apply_(model, new_data)
    for name, mask in first.masks.items():
        assert torch.equal(third.masks[name], mask)

    wrong = tiny_causal_lm(num_hidden_layers=2)
    with pytest.raises(ValueError, match="has no entry"):
        _small(steps=1, prior=tmp_path / "sparse").apply_(wrong, new_data)
    with pytest.raises(ValueError, match="Use the pattern the checkpoint was trained with"):
        _small(steps=1, pattern="1:4", prior=tmp_path / "ckpt").apply_(
            tiny_causal_lm(num_hidden_layers=1), new_data
        )
    # A bare mask file works too: the shapes come from the model.
    (tmp_path / "bare").mkdir()
    shutil.copy(tmp_path / "sparse" / "mask_compressed.npz", tmp_path / "bare")
    fourth = _small(
        steps=1, prior=tmp_path / "bare" / "mask_compressed.npz", prior_strength=50.0
    ).apply_(tiny_causal_lm(num_hidden_layers=1), new_data)
    for name, mask in first.masks.items():
        assert torch.equal(fourth.masks[name], mask)


def test_bad_configuration():
    with pytest.raises(ValueError, match="12,870 candidate masks"):
        MaskLLM(pattern="8:16")
    with pytest.raises(ValueError, match="prior='nonsense'"):
        MaskLLM(prior="nonsense")
    with pytest.raises(ValueError, match="steps"):
        MaskLLM(steps=0)
    with pytest.raises(ValueError, match="temperature_range"):
        MaskLLM(temperature_range=(4.0, 0.0))
    with pytest.raises(ValueError, match="min_learning_rate"):
        MaskLLM(learning_rate=1e-5, min_learning_rate=1e-4)
    with pytest.raises(ValueError, match="non-empty"):
        _small().apply_(tiny_causal_lm(num_hidden_layers=1), torch.zeros(0, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="no linear layer"):
        _small(targets=["nothing"]).apply_(tiny_causal_lm(num_hidden_layers=1), DATA)
