"""One OpenAI-compatible chat client for every family that can use a language model.

Any server that speaks the OpenAI chat-completions protocol works: OpenAI itself, vLLM, llama.cpp's
server, Ollama, LM Studio, text-generation-inference. Nothing in eightfold requires an LLM: the
families that can use one keep an offline path and only reach for :class:`LLMClient` when a user
configures an endpoint.

Configuration comes from an :class:`LLMConfig` or from the environment
(:meth:`LLMConfig.from_env`):

``EIGHTFOLD_LLM_BASE_URL``
    the server, e.g. ``http://127.0.0.1:8000/v1`` (falls back to ``OPENAI_BASE_URL``);
``EIGHTFOLD_LLM_MODEL``
    the model name the server expects;
``EIGHTFOLD_LLM_API_KEY``
    the key (falls back to ``OPENAI_API_KEY``; local servers usually accept any value).

Examples
--------
>>> from eightfold.llm import LLMClient, LLMConfig
>>> client = LLMClient(LLMConfig(base_url="http://127.0.0.1:8000/v1", model="qwen"))
>>> client.chat([{"role": "user", "content": "Say hi"}])  # doctest: +SKIP
'Hi!'
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

logger = logging.getLogger(__name__)

__all__ = [
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "LLMOutputError",
    "LLMResponseError",
    "LLMUnavailableError",
    "client_from_env",
    "extract_json",
]

ENV_BASE_URL = "EIGHTFOLD_LLM_BASE_URL"
ENV_MODEL = "EIGHTFOLD_LLM_MODEL"
ENV_API_KEY = "EIGHTFOLD_LLM_API_KEY"

# Local servers (vLLM, llama.cpp, Ollama) ignore the key, but the openai package insists on one.
_PLACEHOLDER_KEY = "not-needed"
_ROLES = ("system", "user", "assistant", "tool", "developer")
_MAX_BACKOFF_S = 30.0

Message = Mapping[str, Any]
ModelT = TypeVar("ModelT", bound=BaseModel)


class LLMError(RuntimeError):
    """Base class of every error the LLM client raises."""


class LLMUnavailableError(LLMError):
    """The server could not be reached, timed out, or kept failing after every retry."""


class LLMResponseError(LLMError):
    """The server answered with an HTTP error that retrying cannot fix (bad key, unknown model)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LLMOutputError(LLMError, ValueError):
    """The server answered, but the reply is not what was asked for (empty, not valid JSON...)."""

    def __init__(self, message: str, *, reply: str | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(kw_only=True)
class LLMConfig:
    """Where the chat server is and how patiently to talk to it.

    Parameters
    ----------
    base_url
        Root of the OpenAI-compatible API, usually ending in ``/v1``.
    model
        Model name sent with each request.
    api_key
        Secret key; when ``None`` it is read from ``EIGHTFOLD_LLM_API_KEY`` or ``OPENAI_API_KEY``,
        and a placeholder is sent when neither is set (local servers accept any key).
    timeout
        Seconds to wait for one HTTP request before it counts as failed.
    max_retries
        Extra attempts after a connection error, a timeout, HTTP 429 or a 5xx answer.
    backoff
        Seconds before the first retry; each further retry waits twice as long (capped at 30 s).
    temperature
        Sampling temperature; 0 keeps replies as repeatable as the server allows.
    max_tokens
        Upper bound on the reply length, or ``None`` for the server's default.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_retries: int = 2
    backoff: float = 1.0
    temperature: float = 0.0
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not re.match(r"^https?://", self.base_url):
            raise ValueError(
                f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000/v1', got "
                f"{self.base_url!r}; set it in LLMConfig or in ${ENV_BASE_URL}"
            )
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(
                f"model must be the non-empty model name the server expects, got {self.model!r}; "
                f"set it in LLMConfig or in ${ENV_MODEL}"
            )
        if not isinstance(self.timeout, int | float) or not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(f"max_retries must be an int, got {type(self.max_retries).__name__}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not isinstance(self.backoff, int | float) or self.backoff < 0:
            raise ValueError(f"backoff must be a number of seconds >= 0, got {self.backoff!r}")
        if not isinstance(self.temperature, int | float) or not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must lie in [0, 2], got {self.temperature!r}")
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            raise ValueError(f"max_tokens must be a positive int or None, got {self.max_tokens!r}")
        if self.api_key is None:
            self.api_key = (
                os.environ.get(ENV_API_KEY) or os.environ.get("OPENAI_API_KEY") or _PLACEHOLDER_KEY
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMConfig:
        """Build a config from ``EIGHTFOLD_LLM_*`` variables; keyword arguments take precedence.

        Raises
        ------
        ValueError
            When no base URL or no model is configured; the message says which variable to set.
        """
        values: dict[str, Any] = {
            "base_url": os.environ.get(ENV_BASE_URL) or os.environ.get("OPENAI_BASE_URL"),
            "model": os.environ.get(ENV_MODEL),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        if not values["base_url"]:
            raise ValueError(
                f"no LLM endpoint configured: set ${ENV_BASE_URL} (e.g. http://127.0.0.1:8000/v1) "
                "or pass base_url (CLI: --base-url)"
            )
        if not values["model"]:
            raise ValueError(
                f"no LLM model configured: set ${ENV_MODEL} or pass model (CLI: --model)"
            )
        return cls(**values)


def client_from_env(**overrides: Any) -> LLMClient | None:
    """An :class:`LLMClient` from the environment, or ``None`` when no endpoint is configured.

    Families call this to decide whether their optional LLM path is available at all.
    """
    if not (overrides.get("base_url") or os.environ.get(ENV_BASE_URL)):
        return None
    return LLMClient(LLMConfig.from_env(**overrides))


def _check_messages(messages: str | Sequence[Message]) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or isinstance(messages, bytes):
        raise TypeError(
            "messages must be a string or a list of {'role': ..., 'content': ...} dicts, got "
            f"{type(messages).__name__}"
        )
    if not messages:
        raise ValueError("messages is empty; pass at least one {'role': 'user', 'content': ...}")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}]['role'] must be one of {_ROLES}, got {role!r}")
        if not isinstance(content, str):
            raise TypeError(
                f"messages[{i}]['content'] must be a string, got {type(content).__name__}"
            )
        checked.append(dict(message))
    return checked


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """Parse the JSON value in a model reply, tolerating code fences and chatter around it.

    Raises
    ------
    LLMOutputError
        When no JSON object or array can be found.
    """
    candidates = [text.strip()]
    candidates += [match.strip() for match in _FENCE.findall(text)]
    # Chatty models wrap the object in prose: also try from the first bracket to the last one.
    for opening, closing in (("{", "}"), ("[", "]")):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    error: json.JSONDecodeError | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as exc:
            error = exc
    raise LLMOutputError(f"the reply is not valid JSON ({error}): {text[:200]!r}", reply=text)


class LLMClient:
    """A small, synchronous chat client with retries, backoff and clear errors.

    Parameters
    ----------
    config
        Endpoint, model and retry policy.

    Notes
    -----
    Retries happen here rather than inside the openai package so that the policy (which errors,
    how long to wait) is the same whatever version of that package is installed. Streaming and
    tool calls are not used by eightfold and are not wrapped.
    """

    def __init__(self, config: LLMConfig) -> None:
        if not isinstance(config, LLMConfig):
            raise TypeError(f"config must be an LLMConfig, got {type(config).__name__}")
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a declared dependency
            raise ImportError(
                "the LLM client needs the 'openai' package: pip install 'eightfold[graphrag]'"
            ) from exc
        self.config = config
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=config.api_key,
            timeout=config.timeout,
            max_retries=0,
        )

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.config.base_url!r}, model={self.config.model!r})"

    def chat(
        self,
        messages: str | Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        json_mode: bool = False,
    ) -> str:
        """Send a conversation and return the assistant's reply text.

        Parameters
        ----------
        messages
            A list of ``{"role": ..., "content": ...}`` dicts, or a plain string sent as one user
            message.
        temperature, max_tokens
            Override the config for this call.
        stop
            Strings at which the server stops generating.
        json_mode
            Ask the server for a JSON object (``response_format={"type": "json_object"}``); not
            every server supports it, so :meth:`chat_json` leaves it off by default.

        Raises
        ------
        LLMUnavailableError
            Connection errors, timeouts, HTTP 429 and 5xx answers that outlast every retry.
        LLMResponseError
            Other HTTP errors (bad key, unknown model, rejected request).
        LLMOutputError
            A reply without text.
        """
        payload: dict[str, Any] = {
            "model": self.config.model,
            "messages": _check_messages(messages),
            "temperature": self.config.temperature if temperature is None else temperature,
        }
        tokens = self.config.max_tokens if max_tokens is None else max_tokens
        if tokens is not None:
            payload["max_tokens"] = tokens
        if stop:
            payload["stop"] = list(stop)
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        response = self._send(payload)

        choices = getattr(response, "choices", None) or []
        content = choices[0].message.content if choices else None
        if not isinstance(content, str) or not content.strip():
            raise LLMOutputError(
                f"the server at {self.config.base_url} returned no text for model "
                f"{self.config.model!r}",
                reply=content if isinstance(content, str) else None,
            )
        return content

    def chat_json(
        self,
        messages: str | Sequence[Message],
        schema: type[ModelT],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        json_mode: bool = False,
        schema_hint: bool = True,
    ) -> ModelT:
        """Ask for a JSON reply, validate it with a pydantic model, and retry once with the error.

        Parameters
        ----------
        messages
            The conversation, as for :meth:`chat`.
        schema
            A pydantic model class the reply must validate against.
        schema_hint
            Append a system message with the JSON schema of ``schema``.

        Returns
        -------
        An instance of ``schema``.

        Raises
        ------
        LLMOutputError
            When the reply is still not valid JSON for ``schema`` after one repair request; the
            message carries the validation error and ``.reply`` the last reply.
        """
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError(f"schema must be a pydantic BaseModel subclass, got {schema!r}")
        conversation = _check_messages(messages)
        if schema_hint:
            conversation.append(
                {
                    "role": "system",
                    "content": "Reply with one JSON object, and nothing else, that matches this "
                    "JSON schema:\n" + json.dumps(schema.model_json_schema(), sort_keys=True),
                }
            )

        last_error = ""
        reply = ""
        for attempt in range(2):
            reply = self.chat(
                conversation, temperature=temperature, max_tokens=max_tokens, json_mode=json_mode
            )
            try:
                return schema.model_validate(extract_json(reply))
            except (LLMOutputError, ValidationError) as exc:
                last_error = str(exc)
                logger.warning(
                    "LLM reply failed validation against %s (attempt %d of 2): %s",
                    schema.__name__,
                    attempt + 1,
                    last_error.splitlines()[0],
                )
            # One repair round: show the model its reply and what was wrong with it.
            conversation = [
                *conversation,
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": "That reply was rejected: "
                    f"{last_error}\nAnswer again with only the corrected JSON object.",
                },
            ]
        raise LLMOutputError(
            f"the LLM reply did not match {schema.__name__} after one repair attempt: {last_error}",
            reply=reply,
        )

    def _send(self, payload: dict[str, Any]) -> Any:
        """POST one chat-completions request, retrying transient failures with backoff."""
        openai = self._openai
        transient = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            try:
                logger.debug("chat request to %s (attempt %d)", self.config.base_url, attempt + 1)
                return self._client.chat.completions.create(**payload)
            except transient as exc:
                # APITimeoutError is a subclass of APIConnectionError.
                reason = _describe(exc)
                if attempt + 1 == attempts:
                    raise LLMUnavailableError(
                        f"the LLM server at {self.config.base_url} failed {attempts} time(s); "
                        f"last error: {reason}. Check that it is running and reachable, or raise "
                        "timeout/max_retries"
                    ) from exc
                wait = min(self.config.backoff * 2**attempt, _MAX_BACKOFF_S)
                logger.warning("LLM request failed (%s); retrying in %.1f s", reason, wait)
                time.sleep(wait)
            except openai.APIStatusError as exc:
                raise LLMResponseError(
                    f"the LLM server at {self.config.base_url} rejected the request for model "
                    f"{self.config.model!r}: {_describe(exc)}",
                    status_code=exc.status_code,
                ) from exc
            except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
                # A proxy's HTML error page or a truncated body arrives with HTTP 200.
                raise LLMOutputError(
                    f"the LLM server at {self.config.base_url} sent a response that is not a "
                    f"chat completion: {exc}"
                ) from exc
        raise AssertionError("unreachable: the retry loop returns or raises")


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    kind = type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    return f"{kind} (HTTP {status}): {message}" if status else f"{kind}: {message}"
