"""FSQ properties beyond the golden cases: round trips, shift variants and bad input."""

from __future__ import annotations

import pytest
import torch

from eightfold.speech import FSQ, UnitExtractorHead


def test_emova_constants() -> None:
    fsq = FSQ()
    assert fsq.levels == (8, 8, 8, 8)
    assert fsq.codebook_size == 4096
    assert fsq.basis == [1, 8, 64, 512]
    # tan(0.5 / 3.4965), the value the authors' module computes
    assert fsq.shift[0].item() == pytest.approx(0.1439829, abs=1e-7)
    assert FSQ(shift="atanh").shift[0].item() == pytest.approx(0.1439870, abs=1e-7)


def test_codes_are_asymmetric_for_even_levels() -> None:
    fsq = FSQ()
    values = torch.unique(fsq(torch.linspace(-30, 30, 4001)[:, None].expand(-1, 4).contiguous()))
    assert values.tolist() == [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75]


@pytest.mark.parametrize("levels", [(8, 8, 8, 8), (7, 5, 5, 5), (8, 5, 5, 5), (3, 4)])
def test_index_round_trip_is_identity(levels: tuple[int, ...]) -> None:
    fsq = FSQ(levels)
    indices = torch.arange(fsq.codebook_size)
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(indices)), indices)
    # the codebook has no duplicate rows and row k is the code of index k
    assert torch.unique(fsq.codebook, dim=0).shape[0] == fsq.codebook_size
    assert torch.equal(fsq.codes_to_indices(fsq.codebook), indices)


def test_first_dimension_is_least_significant() -> None:
    fsq = FSQ()
    codes = fsq.indices_to_codes(torch.tensor([0, 1, 8, 4095]))
    assert codes[0].tolist() == [-1.0, -1.0, -1.0, -1.0]
    assert codes[1].tolist() == [-0.75, -1.0, -1.0, -1.0]
    assert codes[2].tolist() == [-1.0, -0.75, -1.0, -1.0]
    assert codes[3].tolist() == [0.75, 0.75, 0.75, 0.75]


def test_straight_through_gradient() -> None:
    fsq = FSQ()
    z = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    fsq(z).sum().backward()
    expected = (1 - torch.tanh(z.detach() + fsq.shift) ** 2) * fsq._half_l / 4
    torch.testing.assert_close(z.grad, expected)


def test_quantize_returns_codes_and_indices() -> None:
    fsq = FSQ()
    z = torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(1))
    codes, indices = fsq.quantize(z)
    assert indices.dtype == torch.int64 and indices.shape == (2, 7)
    assert torch.equal(fsq.indices_to_codes(indices), codes)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="levels"):
        FSQ([8, 1])
    with pytest.raises(ValueError, match="shift"):
        FSQ(shift="sin")  # type: ignore[arg-type]
    fsq = FSQ()
    with pytest.raises(ValueError, match="last dimension"):
        fsq(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="floating"):
        fsq(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4096\)"):
        fsq.indices_to_codes(torch.tensor([4096]))
    with pytest.raises(ValueError, match=r"\[0, 4096\)"):
        fsq.indices_to_codes(torch.tensor([-1]))
    with pytest.raises(ValueError, match="outside the FSQ grid"):
        fsq.codes_to_indices(torch.full((1, 4), 1.0))
    with pytest.raises(ValueError, match="whole numbers"):
        fsq.indices_to_codes(torch.tensor([1.5]))


def test_unit_extractor_checks_shapes() -> None:
    head = UnitExtractorHead(16)
    with pytest.raises(ValueError, match="encoder_output"):
        head(torch.zeros(2, 5, 8))
    with pytest.raises(ValueError, match="lengths"):
        head(torch.zeros(2, 5, 16), torch.tensor([6, 1]))
    # identical frames reduce to one unit; a zero-length sequence gives no unit
    sequences = head.unit_sequences(torch.zeros(2, 5, 16), torch.tensor([5, 0]))
    assert [len(s) for s in sequences] == [1, 0]
    assert len(head.unit_sequences(torch.zeros(1, 5, 16), torch.tensor([5]), reduce=False)[0]) == 5
