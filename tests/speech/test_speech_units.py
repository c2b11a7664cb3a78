"""Unit strings, parsing and vocabulary extension on a tiny model."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from eightfold.models import tiny_causal_lm
from eightfold.speech import (
    check_units,
    extend_vocabulary_,
    official_u2s_symbol_ids,
    parse_unit_string,
    reduce_units,
    speech_token,
    speech_tokens_to_units,
    unit_string,
    units_to_speech_tokens,
    units_to_symbol_ids,
)


def test_reduce_and_render() -> None:
    assert reduce_units([5, 5, 5, 17, 17, 4095, 0, 0, 5]) == [5, 17, 4095, 0, 5]
    assert reduce_units(torch.tensor([1, 1, 1])) == [1]
    assert reduce_units([]) == []
    assert unit_string([5, 17]) == "5 17"
    assert speech_token(7) == "<|speech_7|>"
    assert units_to_speech_tokens([3, 3, 4], reduce=True) == "<|speech_3|><|speech_4|>"


def test_round_trip_strings() -> None:
    gen = torch.Generator().manual_seed(0)
    units = torch.randint(0, 4096, (300,), generator=gen).tolist()
    assert speech_tokens_to_units(units_to_speech_tokens(units)) == units
    assert parse_unit_string(unit_string(units)) == units
    assert parse_unit_string(units_to_speech_tokens(units)) == units


def test_parsing_tolerates_whitespace_but_not_foreign_text() -> None:
    assert speech_tokens_to_units("<|speech_1|> <|speech_2|>\n<|speech_3|>") == [1, 2, 3]
    with pytest.raises(ValueError, match="not <\\|speech_k\\|> tokens: 'Sure!'"):
        speech_tokens_to_units("Sure! <|speech_5|><|speech_6|>")
    assert speech_tokens_to_units("Sure! <|speech_5|><|speech_6|>", strict=False) == [5, 6]
    # a truncated last token is dropped in lenient mode
    assert speech_tokens_to_units("<|speech_1|><|speech_2|", strict=False) == [1]


def test_bad_units() -> None:
    with pytest.raises(ValueError, match="empty"):
        check_units([])
    with pytest.raises(ValueError, match=r"units\[1\] = 4096 is out of range"):
        check_units([1, 4096])
    with pytest.raises(ValueError, match="out of range"):
        check_units([-1])
    with pytest.raises(TypeError, match="integer"):
        check_units([1.5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a string"):
        check_units("1 2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        speech_tokens_to_units("<|speech_5000|>")
    with pytest.raises(ValueError, match="not whole numbers"):
        parse_unit_string("1 two 3")
    with pytest.raises(ValueError, match="empty"):
        parse_unit_string("   ")
    with pytest.raises(ValueError, match="not a unit symbol"):
        official_u2s_symbol_ids("12 4096")
    # full-width digits are digits to Python but not unit ids
    with pytest.raises(ValueError, match="not <"):
        speech_tokens_to_units("<|speech_５|>")
    with pytest.raises(ValueError, match="not whole numbers"):
        parse_unit_string("５")


def test_official_symbol_table_keeps_text_symbols() -> None:
    # The authors' decoder front end has 178 text symbols before the units; a stray
    # punctuation mark or letter maps to one of them (no error), a word does not.
    assert official_u2s_symbol_ids("12 .") == [190, 4]
    assert official_u2s_symbol_ids("a 0 4095") == [43, 178, 4273]
    with pytest.raises(ValueError, match="not a unit symbol"):
        official_u2s_symbol_ids("Sure! 5")
    # the strict conversion accepts unit ids only
    with pytest.raises(TypeError):
        units_to_symbol_ids(["."])  # type: ignore[list-item]
    assert units_to_symbol_ids([12, 0]) == [190, 178]


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate("abcdefgh #:")}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def test_extend_vocabulary_on_a_tiny_model() -> None:
    tokenizer = _tiny_tokenizer()
    model = tiny_causal_lm("llama", vocab_size=len(tokenizer))
    before = model.get_input_embeddings().weight.detach().clone()
    ext = extend_vocabulary_(tokenizer, model, num_units=300, pad_to=128)
    assert ext.original_size == 12
    assert ext.first_unit_id == 12 and ext.num_added == 300
    assert ext.tokenizer_size == 312 == len(tokenizer)
    assert ext.embedding_size == 384 and ext.resized  # ceil(312 / 128) * 128
    assert model.get_input_embeddings().weight.shape[0] == 384
    assert model.get_output_embeddings().weight.shape[0] == 384
    # existing rows are kept
    torch.testing.assert_close(model.get_input_embeddings().weight[:12], before)
    # unit k is one token with id first_unit_id + k, after a newline or punctuation as in the
    # prompts ...
    ids = tokenizer("ab:<|speech_0|><|speech_299|>", add_special_tokens=False)["input_ids"]
    assert ids[-2:] == [ext.unit_token_id(0), ext.unit_token_id(299)] == [12, 311]
    # ... but single_word=True (the authors' setting) does not match a token glued to a letter
    glued = tokenizer("ab<|speech_0|>", add_special_tokens=False)["input_ids"]
    assert 12 not in glued
    assert tokenizer.decode([ext.unit_token_id(5)]) == "<|speech_5|>"
    # a forward pass works with the new ids
    out = model(torch.tensor([ids]))
    assert out.logits.shape[-1] == 384
    # extending again is a no-op
    again = extend_vocabulary_(tokenizer, model, num_units=300)
    assert again.num_added == 0 and not again.resized and again.first_unit_id == 12


def test_extend_vocabulary_without_resize_when_there_is_room() -> None:
    tokenizer = _tiny_tokenizer()
    model = tiny_causal_lm("llama", vocab_size=512)
    ext = extend_vocabulary_(tokenizer, model, num_units=100)
    assert not ext.resized and ext.embedding_size == 512


def test_qwen_arithmetic() -> None:
    # Qwen2.5: 151,665 tokens + 4,096 units = 155,761 (the released image-token id);
    # padded to a multiple of 128 = 155,776 (the released vocab_size).
    import math

    assert 151_665 + 4096 == 155_761
    assert math.ceil(155_761 / 128) * 128 == 155_776


def test_extend_rejects_partial_unit_tokens() -> None:
    tokenizer = _tiny_tokenizer()
    tokenizer.add_tokens(["<|speech_3|>"])
    with pytest.raises(ValueError, match="already holds 1"):
        extend_vocabulary_(tokenizer, None, num_units=10)
    with pytest.raises(TypeError, match="tokenizer"):
        extend_vocabulary_(object(), None)
