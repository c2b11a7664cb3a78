"""EMOVA's speech side: FSQ speech units, unit strings, prompts, styles and the unit decoder.

EMOVA (Chen et al., arXiv 2409.18042) speaks and listens through plain vocabulary tokens:
speech becomes 25 FSQ units per second (``<|speech_k|>``, ``k < 4096``), the language model
reads and writes them, and a style-conditioned VITS decoder turns units back into audio.

What works without the released weights: FSQ and the unit bottleneck (exact against the
authors' code), unit strings and vocabulary extension, prompts and the reply parser, style
tables, and the decoder and reference encoder architectures (random or user-supplied weights).
"""

from __future__ import annotations

from eightfold.speech.decoder import (
    MelStyleEncoder,
    SynthesisOutput,
    UnitVITS,
    UnitVITSConfig,
    linear_spectrogram,
    load_state_dict_file,
)
from eightfold.speech.fsq import EMOVA_FSQ_LEVELS, FSQ, UnitExtractorHead, round_ste
from eightfold.speech.prompts import (
    ADVERTISED_EMOTIONS,
    ASR_INSTRUCTION,
    CHAT_INSTRUCTION,
    EMOTIONS,
    EVALUATION_EMOTION_MAP,
    GENDERS,
    PITCHES,
    REPLY_KEYS,
    SPEEDS,
    TTS_INSTRUCTION,
    SpokenReply,
    StyleCondition,
    advertised_conditions,
    all_conditions,
    asr_prompt,
    chat_prompt,
    evaluation_emotion,
    parse_reply,
    tts_prompt,
)
from eightfold.speech.styles import (
    CENTROID_INDEX,
    ReferenceEncoder,
    StyleRegistry,
    load_audio,
    resample,
)
from eightfold.speech.units import (
    NUM_UNITS,
    U2S_NUM_SYMBOLS,
    U2S_SYMBOL_OFFSET,
    UNIT_RATE_HZ,
    VocabularyExtension,
    check_units,
    extend_vocabulary_,
    official_content_units,
    official_speech_token_string,
    official_u2s_symbol_ids,
    parse_unit_string,
    reduce_units,
    speech_token,
    speech_tokens_to_units,
    unit_string,
    units_to_speech_tokens,
    units_to_symbol_ids,
)

__all__ = [
    "ADVERTISED_EMOTIONS",
    "ASR_INSTRUCTION",
    "CENTROID_INDEX",
    "CHAT_INSTRUCTION",
    "EMOTIONS",
    "EMOVA_FSQ_LEVELS",
    "EVALUATION_EMOTION_MAP",
    "FSQ",
    "GENDERS",
    "NUM_UNITS",
    "PITCHES",
    "REPLY_KEYS",
    "SPEEDS",
    "TTS_INSTRUCTION",
    "U2S_NUM_SYMBOLS",
    "U2S_SYMBOL_OFFSET",
    "UNIT_RATE_HZ",
    "MelStyleEncoder",
    "ReferenceEncoder",
    "SpokenReply",
    "StyleCondition",
    "StyleRegistry",
    "SynthesisOutput",
    "UnitExtractorHead",
    "UnitVITS",
    "UnitVITSConfig",
    "VocabularyExtension",
    "advertised_conditions",
    "all_conditions",
    "asr_prompt",
    "chat_prompt",
    "check_units",
    "evaluation_emotion",
    "extend_vocabulary_",
    "linear_spectrogram",
    "load_audio",
    "load_state_dict_file",
    "official_content_units",
    "official_speech_token_string",
    "official_u2s_symbol_ids",
    "parse_reply",
    "parse_unit_string",
    "reduce_units",
    "resample",
    "round_ste",
    "speech_token",
    "speech_tokens_to_units",
    "tts_prompt",
    "unit_string",
    "units_to_speech_tokens",
    "units_to_symbol_ids",
]
