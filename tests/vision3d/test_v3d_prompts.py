"""Coordinate prompts: strict parsing, placeholders, box text and training clicks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eightfold.vision3d import (
    BOXES_TOKEN,
    extract_boxes,
    fill_boxes,
    format_boxes,
    parse_click_prompt,
    training_clicks,
)
from eightfold.vision3d.prompts import expand_turn_placeholders


def test_strict_gives_one_click_per_group():
    got = parse_click_prompt("Compare [1, 2, 3] with [4.5, 5, 6, 1, 1, 1].")
    assert got.prompt == f"Compare {BOXES_TOKEN} with {BOXES_TOKEN}."
    assert got.clicks.tolist() == [[1.0, 2.0, 3.0], [4.5, 5.0, 6.0]]
    assert got.num_placeholders == got.clicks.shape[0]
    released = parse_click_prompt("Compare [1, 2, 3] with [4.5, 5, 6, 1, 1, 1].", mode="released")
    assert released.clicks.shape == (1, 3) and released.num_placeholders == 2


@pytest.mark.parametrize("text", ["at [1.5, 2.5].", "at [1, 2, 3, 4].", "at [1, 2, 3, 4, 5, 6, 7]"])
def test_strict_rejects_wrong_counts(text):
    with pytest.raises(ValueError, match=r"expected 3 \(a point"):
        parse_click_prompt(text)


def test_trailing_comma_and_words_raise():
    with pytest.raises(ValueError, match="not a number"):
        parse_click_prompt("at [1, 2, 3,]")
    with pytest.raises(ValueError, match="mode must be"):
        parse_click_prompt("x", mode="loose")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_click_prompt(b"[1,2,3]")  # type: ignore[arg-type]


def test_unclosed_and_non_finite_groups_raise():
    with pytest.raises(ValueError, match="without its closing"):
        parse_click_prompt("What is at [1, 2, 3")
    with pytest.raises(ValueError, match="not finite"):
        parse_click_prompt("What is at [1e999, 0, 1]?")


def test_no_click_and_empty_brackets():
    got = parse_click_prompt("What is this [] thing?")
    assert got.prompt == "What is this [] thing?" and got.clicks.shape == (0, 3)


def test_box_text_round_trip_in_3d_mode():
    boxes = [[1.23456, -2.0, 0.5, 0.4, 0.6, 1.2], [0.0, 11.5, -3.25, 1, 1, 1]]
    text = fill_boxes("It is at <boxes>.", [boxes])
    assert (
        text
        == "It is at [1.235,-2.000,0.500,0.400,0.600,1.200;0.000,11.500,-3.250,1.000,1.000,1.000]."
    )
    assert extract_boxes(text) == []  # the released extractor cannot read 3D boxes
    assert extract_boxes(text, pattern="3d") == [
        [[1.235, -2.0, 0.5, 0.4, 0.6, 1.2], [0.0, 11.5, -3.25, 1.0, 1.0, 1.0]]
    ]
    assert extract_boxes("[1, 2, 3, 4]", pattern="3d") == []
    with pytest.raises(ValueError, match="placeholder"):
        fill_boxes("no placeholder", [boxes])
    with pytest.raises(ValueError, match="starts with its centre"):
        format_boxes([[1.0, 2.0]])


def test_training_clicks_inside_boxes_and_repeatable():
    boxes = [[0.0, 0.0, 0.0, 2.0, 1.0, 0.5], [1, 2, 3, 1, 1, 1, 0.1, 0.2, 0.3]]
    a = training_clicks(boxes)
    b = training_clicks(boxes)
    assert torch.equal(a, b)
    assert (a[0].abs() <= torch.tensor([1.0, 0.5, 0.25]) + 1e-3).all()
    assert a[1].tolist() == [1.0, 2.0, 3.0]
    c = training_clicks(boxes, rng=np.random.default_rng(9))
    assert not torch.equal(a[0], c[0])
    with pytest.raises(ValueError, match="expected 6"):
        training_clicks([[1, 2, 3]])


def test_turn_placeholder_expansion():
    assert expand_turn_placeholders("A <boxes> and <boxes>.", [[0, 1], [2]]) == (
        "A <boxes>, <boxes> and <boxes>."
    )
    with pytest.raises(ValueError, match="1 entries"):
        expand_turn_placeholders("A <boxes> and <boxes>.", [[0]])
