"""Prompts and reply schema of the released EMOVA chat models, with the demo's repairing parser.

EMOVA (arXiv 2409.18042) has no speech adapter: speech recognition, speech synthesis and spoken
dialogue are instructions in plain text followed by ``<|speech_k|>`` tokens. The instruction
strings below are kept verbatim from the authors' demo and data documentation, quirks included:
"follwing" is misspelt, the dialogue instruction is a Python raw string (so it holds the two
characters ``\\n``, not newlines), and its example JSON has a full-width comma (``，``).

In spoken dialogue the model answers with a JSON object (:data:`REPLY_KEYS`); the demo repairs
a truncated object and, failing that, treats the whole output as units spoken in a neutral,
normal-pitch voice. :func:`parse_reply` follows those rules and records what it repaired.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Literal, get_args

from eightfold.speech.units import (
    official_content_units,
    speech_tokens_to_units,
    units_to_speech_tokens,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ADVERTISED_EMOTIONS",
    "ASR_INSTRUCTION",
    "CHAT_INSTRUCTION",
    "EMOTIONS",
    "EVALUATION_EMOTION_MAP",
    "GENDERS",
    "PITCHES",
    "REPLY_KEYS",
    "SPEEDS",
    "TTS_INSTRUCTION",
    "Emotion",
    "Gender",
    "Pitch",
    "Speed",
    "SpokenReply",
    "StyleCondition",
    "advertised_conditions",
    "all_conditions",
    "asr_prompt",
    "chat_prompt",
    "evaluation_emotion",
    "parse_reply",
    "tts_prompt",
]

Emotion = Literal["neutral", "happy", "sad", "angry", "surprised", "disgusted", "fearful"]
Pitch = Literal["low", "normal", "high"]
Speed = Literal["normal", "fast", "slow"]
Gender = Literal["female", "male"]

#: The seven emotions the chat model chooses from, in the order of its instruction.
EMOTIONS: tuple[str, ...] = get_args(Emotion)
#: The three pitch labels, in the order of the instruction.
PITCHES: tuple[str, ...] = get_args(Pitch)
#: Speaking rates of the style table (chosen by the application, not the model).
SPEEDS: tuple[str, ...] = get_args(Speed)
#: Voices of the released decoder (chosen by the user, not the model).
GENDERS: tuple[str, ...] = get_args(Gender)
#: The four emotions the model cards advertise (2 voices x 3 pitches x 4 = 24 styles).
ADVERTISED_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
#: How the authors' evaluation folds the seven generated emotions into the advertised four.
EVALUATION_EMOTION_MAP: dict[str, str] = {
    "neutral": "neutral",
    "happy": "happy",
    "surprised": "happy",
    "sad": "sad",
    "fearful": "sad",
    "angry": "angry",
    "disgusted": "angry",
}

#: Speech recognition: the instruction, then the user's unit tokens.
ASR_INSTRUCTION = "Please recognize the text corresponding to the follwing speech.\n"
#: Speech synthesis: the instruction, then the text; the model replies with unit tokens.
TTS_INSTRUCTION = "Please synthesize the speech corresponding to the follwing text.\n"
#: Spoken dialogue: the instruction, then the user's unit tokens (``\\n`` are literal).
CHAT_INSTRUCTION = (
    "Please recognize the texts, emotion and pitch from the user question speech units and "
    "provide the texts, emotion, pitch and speech units for the assistant response. \\n"
    'Emotion should be chosen from ["neutral", "happy", "sad", "angry", "surprised", '
    '"disgusted", "fearful"]. \\nPitch should be chosen from ["low", "normal", "high"].\\n'
    "Your output should be in json format.\\nAn output example is:\\n"
    '{"user question text": "", "user question emotion": "", "user question pitch": "", '
    '"assistant response text": "", "assistant response emotion": "", '
    '"assistant response pitch": ""，"assistant response speech": ""}\\n\\n'
    "user question speech:"
)

#: Keys of the dialogue reply, in the order the model writes them.
REPLY_KEYS: tuple[str, ...] = (
    "user question text",
    "user question emotion",
    "user question pitch",
    "assistant response text",
    "assistant response emotion",
    "assistant response pitch",
    "assistant response speech",
)


def _units_text(units: str | list[int]) -> str:
    if isinstance(units, str):
        # Validate, then keep the caller's exact string (it may already be reduced or not).
        speech_tokens_to_units(units)
        return units
    return units_to_speech_tokens(units)


def asr_prompt(units: str | list[int]) -> str:
    """Speech-recognition prompt: :data:`ASR_INSTRUCTION` + the unit tokens.

    Parameters
    ----------
    units
        Unit ids, or a string of ``<|speech_k|>`` tokens.
    """
    return ASR_INSTRUCTION + _units_text(units)


def tts_prompt(text: str) -> str:
    """Speech-synthesis prompt: :data:`TTS_INSTRUCTION` + the text to speak."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str to synthesise; got {text!r}")
    return TTS_INSTRUCTION + text


def chat_prompt(units: str | list[int], *, with_image: bool = False) -> str:
    """Spoken-dialogue prompt: :data:`CHAT_INSTRUCTION` + the user's unit tokens.

    Parameters
    ----------
    units
        Unit ids, or a string of ``<|speech_k|>`` tokens.
    with_image
        Append the ``<image>`` placeholder on a new line, as the demo does for a question about
        an image.
    """
    prompt = CHAT_INSTRUCTION + _units_text(units)
    return prompt + "\n<image>" if with_image else prompt


@dataclass(frozen=True)
class StyleCondition:
    """A speaking style of the decoder: ``gender-X_emotion-Y_speed-Z_pitch-W``.

    The language model picks ``emotion`` and ``pitch``; the application picks ``gender``
    (the voice) and ``speed``.
    """

    gender: str = "female"
    emotion: str = "neutral"
    speed: str = "normal"
    pitch: str = "normal"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("gender", GENDERS),
            ("emotion", EMOTIONS),
            ("speed", SPEEDS),
            ("pitch", PITCHES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}")

    def __str__(self) -> str:
        return f"gender-{self.gender}_emotion-{self.emotion}_speed-{self.speed}_pitch-{self.pitch}"

    @property
    def name(self) -> str:
        """The condition string used as the key of the style table."""
        return str(self)

    @classmethod
    def parse(cls, condition: str) -> StyleCondition:
        """Read ``gender-female_emotion-happy_speed-normal_pitch-high``.

        Raises
        ------
        ValueError
            If the string does not have the four ``key-value`` fields in that order, or a
            value is unknown; the message shows the expected form.
        """
        if not isinstance(condition, str):
            raise TypeError(f"condition must be a str; got {type(condition).__name__}")
        example = "gender-female_emotion-neutral_speed-normal_pitch-normal"
        fields = condition.strip().split("_")
        keys = ("gender", "emotion", "speed", "pitch")
        values = {}
        if len(fields) == 4:
            for key, part in zip(keys, fields, strict=True):
                prefix = key + "-"
                if not part.startswith(prefix):
                    break
                values[key] = part[len(prefix) :]
        if len(values) != 4:
            raise ValueError(
                f"condition {condition!r} is not of the form {example!r} "
                f"(genders {list(GENDERS)}, emotions {list(EMOTIONS)}, speeds {list(SPEEDS)}, "
                f"pitches {list(PITCHES)})"
            )
        return cls(**values)

    def for_evaluation(self) -> StyleCondition:
        """The same style with the emotion folded into the advertised four."""
        return StyleCondition(
            gender=self.gender,
            emotion=evaluation_emotion(self.emotion),
            speed=self.speed,
            pitch=self.pitch,
        )


def evaluation_emotion(emotion: str) -> str:
    """Fold one of the seven emotions into the four the evaluation uses.

    happy and surprised -> happy; sad and fearful -> sad; angry and disgusted -> angry;
    neutral stays neutral.
    """
    if emotion not in EVALUATION_EMOTION_MAP:
        raise ValueError(f"emotion must be one of {list(EMOTIONS)}; got {emotion!r}")
    return EVALUATION_EMOTION_MAP[emotion]


def all_conditions() -> list[str]:
    """The 126 condition strings of the released style table (2 x 7 x 3 x 3)."""
    return [
        str(StyleCondition(gender=g, emotion=e, speed=s, pitch=p))
        for g in GENDERS
        for e in sorted(EMOTIONS)
        for s in ("fast", "normal", "slow")
        for p in ("high", "low", "normal")
    ]


def advertised_conditions() -> list[str]:
    """The 24 advertised styles: 2 voices x 4 emotions x 3 pitches, at normal speed."""
    return [
        str(StyleCondition(gender=g, emotion=e, speed="normal", pitch=p))
        for g in GENDERS
        for e in ADVERTISED_EMOTIONS
        for p in PITCHES
    ]


@dataclass
class SpokenReply:
    """A parsed dialogue reply.

    Attributes
    ----------
    user_text, user_emotion, user_pitch
        What the model recognised in the user's speech (``None`` when absent).
    text
        The assistant's reply text (``None`` in the fallback).
    emotion, pitch, speed
        The reply's style; defaults ``neutral``/``normal``/``normal`` when absent.
    content_units
        The unit string the official demo would pass to the decoder (space-separated; it may
        hold leftover text when the output was malformed).
    units
        The reply's unit ids, parsed leniently (foreign text dropped); empty when none.
    repaired
        The JSON was truncated and completed by the demo's rules.
    fallback
        The output was not a JSON reply; it was read as bare units in a neutral voice.
    notes
        What was repaired or defaulted, for logging.
    """

    text: str | None
    emotion: str
    pitch: str
    speed: str
    content_units: str
    units: list[int]
    user_text: str | None = None
    user_emotion: str | None = None
    user_pitch: str | None = None
    repaired: bool = False
    fallback: bool = False
    raw: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)

    def condition(self, gender: str = "female") -> StyleCondition:
        """The decoder style of this reply for the chosen voice.

        An emotion or pitch outside the label sets (which the official demo would fail on)
        falls back to neutral / normal with a WARNING.
        """
        emotion, pitch, speed = self.emotion, self.pitch, self.speed
        if emotion not in EMOTIONS:
            logger.warning("unknown emotion %r in the reply; using 'neutral'", emotion)
            emotion = "neutral"
        if pitch not in PITCHES:
            logger.warning("unknown pitch %r in the reply; using 'normal'", pitch)
            pitch = "normal"
        if speed not in SPEEDS:
            logger.warning("unknown speed %r in the reply; using 'normal'", speed)
            speed = "normal"
        return StyleCondition(gender=gender, emotion=emotion, speed=speed, pitch=pitch)


def _repair(output: str) -> tuple[str, bool]:
    """The demo's repair of a truncated JSON reply (an unfinished speech string or object)."""
    if output.startswith("{"):
        if output.endswith("|>"):
            return output + '"}', True
        if output.endswith('"'):
            return output + "}", True
    return output, False


def _lenient_units(content: str, notes: list[str]) -> list[int]:
    if "<|speech_" in content:
        try:
            return speech_tokens_to_units(content, strict=False, allow_empty=True)
        except ValueError as exc:
            notes.append(f"unit tokens unusable: {exc}")
            return []
    notes.append("no unit tokens found")
    return []


def parse_reply(output: str) -> SpokenReply:
    """Parse a spoken-dialogue (or TTS) reply with the demo's repair and fallback rules.

    1. Strip the output. If it starts with ``{`` and ends with ``|>`` append ``"}``; if it
       ends with ``"`` append ``}`` (truncated generations).
    2. Parse the JSON and read ``assistant response speech`` plus the optional
       ``assistant response emotion`` / ``pitch`` / ``speed`` (defaults neutral / normal /
       normal).
    3. If that fails (not JSON, not an object, no speech field), the whole output is read as
       unit tokens with the neutral, normal-pitch style.

    Parameters
    ----------
    output
        The text generated after the prompt.

    Returns
    -------
    SpokenReply
        Never raises for malformed model output; ``fallback``/``repaired``/``notes`` say what
        happened.
    """
    if not isinstance(output, str):
        raise TypeError(f"output must be the generated str; got {type(output).__name__}")
    stripped = output.strip()
    notes: list[str] = []
    candidate, repaired = _repair(stripped)
    info: object = None
    try:
        info = json.loads(candidate)
    except json.JSONDecodeError as exc:
        notes.append(f"not valid JSON ({exc.msg} at position {exc.pos})")
    if isinstance(info, dict) and isinstance(info.get("assistant response speech"), str):
        if repaired:
            notes.append("completed a truncated JSON reply")
        speech = info["assistant response speech"]
        content = official_content_units(speech)

        def text_field(key: str) -> str | None:
            value = info.get(key)  # type: ignore[union-attr]
            return value if isinstance(value, str) else None

        emotion = text_field("assistant response emotion")
        pitch = text_field("assistant response pitch")
        speed = text_field("assistant response speed")
        for key, value in (("emotion", emotion), ("pitch", pitch)):
            if value is None:
                notes.append(f"no assistant response {key}; using the default")
        return SpokenReply(
            text=text_field("assistant response text"),
            emotion=emotion or "neutral",
            pitch=pitch or "normal",
            speed=speed or "normal",
            content_units=content,
            units=_lenient_units(speech, notes),
            user_text=text_field("user question text"),
            user_emotion=text_field("user question emotion"),
            user_pitch=text_field("user question pitch"),
            repaired=repaired,
            fallback=False,
            raw=dict(info),
            notes=notes,
        )
    if isinstance(info, dict):
        notes.append("the JSON has no 'assistant response speech' string")
    elif info is not None:
        notes.append(f"the JSON is a {type(info).__name__}, not an object")
    notes.append("read the whole output as units with the neutral/normal style")
    return SpokenReply(
        text=None,
        emotion="neutral",
        pitch="normal",
        speed="normal",
        content_units=official_content_units(stripped),
        units=_lenient_units(stripped, notes),
        repaired=False,
        fallback=True,
        notes=notes,
    )
