"""The speech pieces together: prompt tokens in a tiny LM, a truncated reply, synthesis."""

from __future__ import annotations

import json

import torch

from eightfold.models import tiny_causal_lm
from eightfold.speech import (
    FSQ,
    StyleRegistry,
    UnitVITS,
    UnitVITSConfig,
    all_conditions,
    chat_prompt,
    extend_vocabulary_,
    parse_reply,
    reduce_units,
    units_to_speech_tokens,
)
from tests.speech.test_speech_units import _tiny_tokenizer


def test_units_through_prompt_reply_and_decoder() -> None:
    # "speech" -> FSQ units (the encoder is replaced by a smooth random trajectory)
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(8, 4, generator=gen).repeat_interleave(3, dim=0)
    units = reduce_units(FSQ().quantize(frames)[1])
    assert 1 <= len(units) <= 8

    # the prompt carries one vocabulary token per unit after the unit vocabulary is added
    tokenizer = _tiny_tokenizer()
    model = tiny_causal_lm("llama", vocab_size=len(tokenizer))
    ext = extend_vocabulary_(tokenizer, model)
    assert ext.embedding_size == 4224  # ceil((12 + 4096) / 128) * 128
    tokens = units_to_speech_tokens(units)
    ids = tokenizer(chat_prompt(tokens)[-len(tokens) - 1 :], add_special_tokens=False)["input_ids"]
    assert ids[-len(units) :] == [ext.unit_token_id(u) for u in units]

    # a truncated dialogue reply is repaired and its style chosen
    reply_json = json.dumps(
        {
            "user question text": "hi",
            "user question emotion": "neutral",
            "user question pitch": "normal",
            "assistant response text": "hello",
            "assistant response emotion": "surprised",
            "assistant response pitch": "low",
            "assistant response speech": tokens,
        }
    )
    reply = parse_reply(reply_json[:-2])  # generation stopped after the last unit token
    assert reply.repaired and reply.units == units
    condition = reply.condition("male")
    assert condition.name == "gender-male_emotion-surprised_speed-normal_pitch-low"

    # synthesis with the chosen style
    torch.manual_seed(0)
    decoder = UnitVITS(UnitVITSConfig.tiny()).eval()
    styles = StyleRegistry.random(all_conditions(), decoder.config.gin_channels)
    out = decoder.synthesize(reply.units, styles.get_style(condition), deterministic=True)
    assert out.durations.shape == (1, len(units))
    assert int(out.lengths[0]) == int(out.durations.sum()) * decoder.config.hop_length
