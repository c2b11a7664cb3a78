"""The needle-in-a-haystack harness, end to end on a tiny model with a tiny tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from eightfold.evaluation.needle import (
    NeedleConfig,
    build_needle_prompt,
    needle_eval,
    plot_needle_heatmap,
    score_response,
)
from eightfold.longcontext import H2O, FullAttention, GemFilter, SnapKV
from tests.longcontext.lc_tiny_lm import HAYSTACK, tiny_model, tiny_tokenizer

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer: Any) -> Any:
    return tiny_model(tokenizer)


def test_score_is_the_fraction_of_answer_words() -> None:
    assert score_response("It is Blue Falcon.", "blue falcon") == 1.0
    assert score_response("blue whale", "blue falcon") == 0.5
    assert score_response("", "blue falcon") == 0.0
    with pytest.raises(ValueError, match="answer"):
        score_response("x", " ... ")


def test_prompt_has_the_length_and_the_needle_at_a_sentence_end(tokenizer: Any) -> None:
    config = NeedleConfig()
    needle = tokenizer(config.needle, add_special_tokens=False)["input_ids"]
    for depth in (0.0, 0.3, 0.5, 1.0):
        ids, start, size = build_needle_prompt(tokenizer, HAYSTACK, config, 300, depth)
        assert len(ids) == 300
        assert ids[start : start + size] == needle
        if 0.0 < depth < 1.0:
            assert tokenizer.decode(ids[start - 1 : start]).rstrip()[-1] in ".\n!?"
    _, early, _ = build_needle_prompt(tokenizer, HAYSTACK, config, 300, 0.1)
    _, late, _ = build_needle_prompt(tokenizer, HAYSTACK, config, 300, 0.9)
    assert early < late
    with pytest.raises(ValueError, match="shorter than the needle"):
        build_needle_prompt(tokenizer, HAYSTACK, config, 10, 0.5)


@pytest.mark.parametrize(
    "method",
    [GemFilter(filter_layer=1, topk=64), SnapKV(budget=64, window=8), H2O(budget=64, window=8),
     FullAttention(), None],
    ids=["gemfilter", "snapkv", "h2o", "full", "plain"],
)  # fmt: skip
def test_grid_runs_end_to_end(model: Any, tokenizer: Any, method: Any, tmp_path: Path) -> None:
    config = NeedleConfig(context_lengths=[96, 160], depths=[0.0, 0.5, 1.0], max_new_tokens=4)
    result = needle_eval(model, tokenizer, method, HAYSTACK, config)
    assert len(result.cells) == 6
    assert [len(row) for row in result.grid()] == [2, 2, 2]
    for cell in result.cells:
        assert 0.0 <= cell.score <= 1.0
        assert (cell.needle_kept is not None) == isinstance(method, GemFilter)
    json.dumps(result.to_dict())
    fig = Figure()
    plot_needle_heatmap(result, fig)
    fig.savefig(tmp_path / "needle.png")
    assert (tmp_path / "needle.png").stat().st_size > 0


def test_a_model_that_copies_the_needle_scores_one(tokenizer: Any) -> None:
    """A fake method that answers from the needle span proves the scoring path end to end."""
    config = NeedleConfig(context_lengths=[120], depths=[0.5], max_new_tokens=4)
    answer = tokenizer(" blue falcon", add_special_tokens=False)["input_ids"]

    class Oracle:
        name = "oracle"

        def generate(self, model: Any, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.cat([input_ids, torch.tensor([answer])], dim=1)

    result = needle_eval(object.__new__(type("M", (), {"config": None, "device": "cpu"})),
                         tokenizer, Oracle(), HAYSTACK, config)  # fmt: skip
    assert result.mean_score == 1.0


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="depths"):
        NeedleConfig(depths=[1.5])
    with pytest.raises(ValueError, match="context_lengths"):
        NeedleConfig(context_lengths=[0])
    with pytest.raises(ValueError, match="template"):
        NeedleConfig(template="{question}")
