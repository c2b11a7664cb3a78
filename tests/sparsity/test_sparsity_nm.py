"""N:M helpers: patterns, candidate masks, masking with +0.0, the checker, layer discovery."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from eightfold.models import tiny_causal_lm
from eightfold.sparsity import (
    Magnitude,
    NMPattern,
    apply_mask,
    candidate_masks,
    check_masks,
    check_nm,
    find_linears,
    nm_mask_from_scores,
)
from eightfold.sparsity.base import decoder_layers


def test_candidates_2_4_in_combinations_order():
    expected = [[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]]
    assert candidate_masks("2:4").tolist() == expected


@pytest.mark.parametrize(("n", "m", "count"), [(1, 4, 4), (2, 4, 6), (4, 8, 70), (3, 6, 20)])
def test_candidates_general(n, m, count):
    cands = candidate_masks(f"{n}:{m}")
    assert cands.shape == (count, m)
    assert (cands.sum(dim=1) == n).all()
    assert len({tuple(r) for r in cands.tolist()}) == count
    expected = [
        tuple(1.0 if i in c else 0.0 for i in range(m)) for c in itertools.combinations(range(m), n)
    ]
    assert [tuple(r) for r in cands.tolist()] == expected


@pytest.mark.parametrize("bad", ["4:4", "5:4", "0:4", "2:1", "two:four", "2-4"])
def test_bad_patterns_raise(bad):
    with pytest.raises(ValueError, match="pattern"):
        NMPattern.parse(bad)


def test_pattern_parse_forms():
    assert NMPattern.parse("2:4") == NMPattern.parse((2, 4)) == NMPattern(2, 4)
    assert NMPattern(2, 4).sparsity == 0.5
    assert str(NMPattern(4, 8)) == "4:8"
    with pytest.raises(TypeError):
        NMPattern.parse(2.4)  # type: ignore[arg-type]


def test_mask_from_scores_keeps_largest_per_group():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2, 3.0, 1.0, 2.0, 0.0]])
    mask = nm_mask_from_scores(scores, "2:4")
    assert mask.tolist() == [[False, True, True, False, True, False, True, False]]
    mask14 = nm_mask_from_scores(scores, "1:4")
    assert mask14.tolist() == [[False, True, False, False, True, False, False, False]]


def test_apply_mask_writes_positive_zero():
    weight = torch.tensor([[-1.0, -2.0, 3.0, -4.0]])
    mask = torch.tensor([[False, True, True, False]])
    out = apply_mask(weight, mask)
    assert out.tolist() == [[0.0, -2.0, 3.0, 0.0]]
    assert not torch.signbit(out[0, 0]) and not torch.signbit(out[0, 3])
    # The naive product gives -0.0, which is what apply_mask avoids.
    assert torch.signbit((weight * mask)[0, 0])
    assert weight[0, 0] == -1.0  # input untouched


def test_check_nm_reports_per_module():
    good = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 5.0, 6.0]])
    over = torch.tensor([[1.0, 1.0, 2.0, 0.0, 0.0, 0.0, 5.0, 6.0]])
    negzero = torch.tensor([[1.0, -0.0, 2.0, 0.0, 0.0, 0.0, 5.0, 6.0]])
    report = check_nm({"good": good, "over": over, "negzero": negzero}, "2:4")
    by_name = {m.name: m for m in report.modules}
    assert by_name["good"].ok and by_name["good"].groups == 2
    assert not by_name["over"].ok and by_name["over"].over == 1
    assert not by_name["over"].compatible
    assert by_name["negzero"].negative_zeros == 1 and not by_name["negzero"].ok
    assert by_name["negzero"].compatible
    assert not report.ok
    assert "FAILED" in report.summary() and "over" in report.summary()


def test_check_masks_rejects_wrong_count():
    check_masks({"a": torch.tensor([[True, True, False, False]])}, "2:4")
    with pytest.raises(ValueError, match="'a'.*2:4"):
        check_masks({"a": torch.tensor([[True, True, True, False]])}, "2:4")


def test_default_targets_are_block_linears_only():
    model = tiny_causal_lm()
    names = list(find_linears(model))
    assert len(names) == 4 * 7
    assert all(name.startswith("model.layers.") for name in names)
    assert not any("lm_head" in n or "embed" in n for n in names)
    assert decoder_layers(model)[0] == "model.layers"
    only_mlp = find_linears(model, [r"mlp\.(gate|up)_proj"])
    assert len(only_mlp) == 8


def test_no_linear_matched_is_a_clear_error():
    with pytest.raises(ValueError, match="no linear layer.*matched targets"):
        find_linears(tiny_causal_lm(), ["does_not_exist"])
    with pytest.raises(NotImplementedError, match="no list of transformer blocks"):
        find_linears(nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8)))


def test_m_not_dividing_input_names_the_module():
    model = tiny_causal_lm(intermediate_size=130)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.down_proj.*130 input features"):
        Magnitude(pattern="2:4").apply_(model)
