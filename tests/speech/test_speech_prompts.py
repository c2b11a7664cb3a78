"""Prompt strings, label sets, condition strings and the repairing reply parser."""

from __future__ import annotations

import json

import pytest

from eightfold.speech import (
    ASR_INSTRUCTION,
    CHAT_INSTRUCTION,
    EMOTIONS,
    PITCHES,
    REPLY_KEYS,
    TTS_INSTRUCTION,
    StyleCondition,
    advertised_conditions,
    all_conditions,
    asr_prompt,
    chat_prompt,
    evaluation_emotion,
    parse_reply,
    tts_prompt,
)


def test_instructions_are_verbatim() -> None:
    assert ASR_INSTRUCTION == "Please recognize the text corresponding to the follwing speech.\n"
    assert TTS_INSTRUCTION == "Please synthesize the speech corresponding to the follwing text.\n"
    # a raw string upstream: the two characters backslash + n, never a newline
    assert "\n" not in CHAT_INSTRUCTION
    assert CHAT_INSTRUCTION.count("\\n") == 7
    assert '"assistant response pitch": ""，"assistant response speech": ""}' in CHAT_INSTRUCTION
    assert CHAT_INSTRUCTION.endswith("\\n\\nuser question speech:")
    assert CHAT_INSTRUCTION.startswith("Please recognize the texts, emotion and pitch from the")
    for emotion in EMOTIONS:
        assert f'"{emotion}"' in CHAT_INSTRUCTION
    for key in REPLY_KEYS:
        assert f'"{key}"' in CHAT_INSTRUCTION


def test_prompt_builders() -> None:
    assert asr_prompt([5, 6]) == ASR_INSTRUCTION + "<|speech_5|><|speech_6|>"
    assert chat_prompt("<|speech_1|>") == CHAT_INSTRUCTION + "<|speech_1|>"
    assert chat_prompt([1], with_image=True).endswith("<|speech_1|>\n<image>")
    assert tts_prompt("Hello.") == TTS_INSTRUCTION + "Hello."
    with pytest.raises(ValueError, match="non-empty"):
        tts_prompt("  ")
    with pytest.raises(ValueError, match="not <\\|speech_k\\|> tokens"):
        asr_prompt("hello <|speech_1|>")
    with pytest.raises(ValueError, match="empty"):
        asr_prompt([])


def test_label_sets_and_evaluation_map() -> None:
    assert EMOTIONS == ("neutral", "happy", "sad", "angry", "surprised", "disgusted", "fearful")
    assert PITCHES == ("low", "normal", "high")
    folded = {e: evaluation_emotion(e) for e in EMOTIONS}
    assert folded == {
        "neutral": "neutral",
        "happy": "happy",
        "surprised": "happy",
        "sad": "sad",
        "fearful": "sad",
        "angry": "angry",
        "disgusted": "angry",
    }
    with pytest.raises(ValueError, match="emotion must be one of"):
        evaluation_emotion("excited")


def test_conditions() -> None:
    conditions = all_conditions()
    assert len(conditions) == len(set(conditions)) == 126
    assert len(advertised_conditions()) == 24
    assert set(advertised_conditions()) <= set(conditions)
    text = "gender-male_emotion-fearful_speed-slow_pitch-high"
    parsed = StyleCondition.parse(text)
    assert str(parsed) == text
    assert str(parsed.for_evaluation()) == "gender-male_emotion-sad_speed-slow_pitch-high"
    assert str(StyleCondition()) == "gender-female_emotion-neutral_speed-normal_pitch-normal"
    with pytest.raises(ValueError, match="not of the form"):
        StyleCondition.parse("female_happy")
    with pytest.raises(ValueError, match="emotion must be one of"):
        StyleCondition.parse("gender-male_emotion-excited_speed-slow_pitch-high")


def _reply(**overrides: str) -> dict[str, str]:
    reply = {
        "user question text": "hi",
        "user question emotion": "happy",
        "user question pitch": "normal",
        "assistant response text": "hello there",
        "assistant response emotion": "happy",
        "assistant response pitch": "high",
        "assistant response speech": "<|speech_1|><|speech_2|><|speech_3|>",
    }
    reply.update(overrides)
    return reply


def test_parse_well_formed_reply() -> None:
    reply = parse_reply("  " + json.dumps(_reply()) + "\n")
    assert not reply.repaired and not reply.fallback
    assert reply.text == "hello there" and reply.user_text == "hi"
    assert (reply.emotion, reply.pitch, reply.speed) == ("happy", "high", "normal")
    assert reply.units == [1, 2, 3]
    assert reply.content_units == "1 2 3"
    assert str(reply.condition("male")) == "gender-male_emotion-happy_speed-normal_pitch-high"


def test_repair_truncated_speech() -> None:
    full = json.dumps(_reply())
    truncated = full[: full.rindex('"}')]  # ends with |>
    assert truncated.endswith("|>")
    reply = parse_reply(truncated)
    assert reply.repaired and not reply.fallback
    assert reply.units == [1, 2, 3] and reply.emotion == "happy"


def test_repair_missing_brace() -> None:
    reply = parse_reply(json.dumps(_reply())[:-1])  # ends with a quote
    assert reply.repaired and reply.units == [1, 2, 3]


def test_unrepairable_reply_falls_back_to_units() -> None:
    text = '{"assistant response text": "hi", "assistant response speech": "<|speech_4|><|spe'
    reply = parse_reply(text)
    assert reply.fallback and not reply.repaired
    assert (reply.emotion, reply.pitch, reply.speed) == ("neutral", "normal", "normal")
    assert reply.units == [4]
    assert any("not valid JSON" in note for note in reply.notes)


def test_bare_units_fall_back() -> None:
    reply = parse_reply("<|speech_9|><|speech_8|>")
    assert reply.fallback and reply.units == [9, 8] and reply.content_units == "9 8"
    assert str(reply.condition()) == "gender-female_emotion-neutral_speed-normal_pitch-normal"


def test_reply_without_speech_field_falls_back() -> None:
    data = _reply()
    del data["assistant response speech"]
    reply = parse_reply(json.dumps(data))
    assert reply.fallback and reply.units == []
    assert any("no 'assistant response speech'" in note for note in reply.notes)


def test_missing_style_fields_default() -> None:
    data = _reply()
    del data["assistant response emotion"]
    del data["assistant response pitch"]
    reply = parse_reply(json.dumps(data))
    assert not reply.fallback and (reply.emotion, reply.pitch) == ("neutral", "normal")


def test_unknown_emotion_is_defaulted_when_choosing_a_style(caplog) -> None:
    reply = parse_reply(json.dumps(_reply(**{"assistant response emotion": "excited"})))
    assert reply.emotion == "excited"
    assert reply.condition().emotion == "neutral"
    assert "unknown emotion" in caplog.text


def test_parse_reply_type_error() -> None:
    with pytest.raises(TypeError):
        parse_reply(None)  # type: ignore[arg-type]
