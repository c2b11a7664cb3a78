"""The shared OpenAI-compatible client, against the local fake server."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from eightfold.llm import (
    LLMClient,
    LLMConfig,
    LLMOutputError,
    LLMResponseError,
    LLMUnavailableError,
    client_from_env,
    extract_json,
)
from tests.fake_openai import FakeReply, fake_openai


class Verdict(BaseModel):
    label: str
    score: float


def make_client(url: str, **overrides) -> LLMClient:
    settings = {"base_url": url, "model": "fake-model", "backoff": 0.0, "timeout": 5.0}
    settings.update(overrides)
    return LLMClient(LLMConfig(**settings))


def test_chat_returns_text_and_sends_model_messages_and_options():
    with fake_openai(["Hello there."]) as server:
        reply = make_client(server.url, max_tokens=7).chat(
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            stop=["\n"],
        )
    assert reply == "Hello there."
    (request,) = server.requests
    assert request["model"] == "fake-model"
    assert request["messages"][1] == {"role": "user", "content": "hi"}
    assert request["temperature"] == 0.0
    assert request["max_tokens"] == 7
    assert request["stop"] == ["\n"]
    assert "response_format" not in request


def test_plain_string_is_one_user_message():
    with fake_openai(["ok"]) as server:
        make_client(server.url).chat("question?")
    assert server.requests[0]["messages"] == [{"role": "user", "content": "question?"}]


def test_reply_can_depend_on_the_request():
    def echo(request):
        return request["messages"][-1]["content"].upper()

    with fake_openai(echo) as server:
        client = make_client(server.url)
        assert client.chat("abc") == "ABC"
        assert client.chat("xyz") == "XYZ"


def test_transient_errors_are_retried_then_succeed():
    script = [FakeReply(status=503), FakeReply(status=429), "finally"]
    with fake_openai(script) as server:
        assert make_client(server.url, max_retries=2).chat("hi") == "finally"
    assert len(server.requests) == 3


def test_backoff_doubles_between_retries(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    with fake_openai([FakeReply(status=500)] * 3 + ["ok"]) as server:
        make_client(server.url, max_retries=3, backoff=0.25).chat("hi")
    assert waits == [0.25, 0.5, 1.0]


def test_persistent_server_errors_raise_unavailable_after_all_attempts():
    with (
        fake_openai([FakeReply(status=500)] * 3) as server,
        pytest.raises(LLMUnavailableError, match="failed 3 time"),
    ):
        make_client(server.url, max_retries=2).chat("hi")
    assert len(server.requests) == 3


def test_client_errors_are_not_retried():
    with (
        fake_openai([FakeReply(status=401, content="bad key")]) as server,
        pytest.raises(LLMResponseError, match="bad key") as info,
    ):
        make_client(server.url, max_retries=3).chat("hi")
    assert info.value.status_code == 401
    assert len(server.requests) == 1


def test_timeout_is_reported_as_unavailable():
    with fake_openai([FakeReply(content="late", delay=2.0)]) as server:
        started = time.perf_counter()
        with pytest.raises(LLMUnavailableError, match="APITimeoutError"):
            make_client(server.url, timeout=0.3, max_retries=0).chat("hi")
    assert time.perf_counter() - started < 1.9


def test_unreachable_server_is_reported_as_unavailable():
    with fake_openai([]) as server:
        url = server.url
    with pytest.raises(LLMUnavailableError, match="reachable"):
        make_client(url, max_retries=1).chat("hi")


def test_empty_reply_is_an_output_error():
    with (
        fake_openai([FakeReply(content=None)]) as server,
        pytest.raises(LLMOutputError, match="no text"),
    ):
        make_client(server.url).chat("hi")


def test_malformed_body_is_an_error_not_a_crash():
    with (
        fake_openai([FakeReply(body="<html>proxy error</html>")]) as server,
        pytest.raises((LLMOutputError, LLMResponseError)),
    ):
        make_client(server.url).chat("hi")


def test_chat_json_parses_fenced_json_and_validates():
    reply = 'Sure:\n```json\n{"label": "positive", "score": 0.75}\n```'
    with fake_openai([reply]) as server:
        verdict = make_client(server.url).chat_json("rate this", Verdict)
    assert verdict == Verdict(label="positive", score=0.75)
    hint = server.requests[0]["messages"][-1]
    assert hint["role"] == "system" and '"score"' in hint["content"]


def test_chat_json_repairs_once_with_the_error():
    script = ['{"label": "positive"}', '{"label": "positive", "score": 1}']
    with fake_openai(script) as server:
        verdict = make_client(server.url).chat_json("rate", Verdict)
    assert verdict.score == 1.0
    repair = server.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"label": "positive"}'}
    assert "score" in repair[-1]["content"] and "rejected" in repair[-1]["content"]


def test_chat_json_gives_up_after_one_repair():
    with (
        fake_openai(["not json at all", "still {not json"]) as server,
        pytest.raises(LLMOutputError, match="after one repair") as info,
    ):
        make_client(server.url).chat_json("rate", Verdict)
    assert info.value.reply == "still {not json"
    assert len(server.requests) == 2


def test_json_mode_sets_response_format():
    with fake_openai(['{"label": "a", "score": 0}']) as server:
        make_client(server.url).chat_json("rate", Verdict, json_mode=True, schema_hint=False)
    request = server.requests[0]
    assert request["response_format"] == {"type": "json_object"}
    assert len(request["messages"]) == 1


def test_extract_json_variants():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('The answer is {"a": [1, 2]} as asked.') == {"a": [1, 2]}
    assert extract_json("```\n[1, 2]\n```") == [1, 2]
    with pytest.raises(LLMOutputError):
        extract_json("no json here")


@pytest.mark.parametrize(
    ("overrides", "error", "pattern"),
    [
        ({"base_url": "localhost:8000"}, ValueError, "base_url"),
        ({"model": " "}, ValueError, "model"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 1.5}, TypeError, "max_retries"),
        ({"backoff": -1}, ValueError, "backoff"),
        ({"temperature": 3}, ValueError, "temperature"),
        ({"max_tokens": 0}, ValueError, "max_tokens"),
    ],
)
def test_config_validation(overrides, error, pattern):
    settings = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    settings.update(overrides)
    with pytest.raises(error, match=pattern):
        LLMConfig(**settings)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], ValueError),
        ([{"role": "robot", "content": "x"}], ValueError),
        ([{"role": "user", "content": 3}], TypeError),
        (["hi"], TypeError),
        (42, TypeError),
    ],
)
def test_bad_messages_are_rejected_before_sending(messages, error):
    with fake_openai([]) as server, pytest.raises(error, match="messages"):
        make_client(server.url).chat(messages)
    assert server.requests == []


def test_api_key_comes_from_env_and_is_not_in_repr(monkeypatch):
    monkeypatch.setenv("EIGHTFOLD_LLM_API_KEY", "sk-secret")
    config = LLMConfig(base_url="http://127.0.0.1:1/v1", model="m")
    assert config.api_key == "sk-secret"
    assert "sk-secret" not in repr(config)
    assert "sk-secret" not in repr(LLMClient(config))


def test_from_env(monkeypatch):
    for name in ("EIGHTFOLD_LLM_BASE_URL", "OPENAI_BASE_URL", "EIGHTFOLD_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert client_from_env() is None
    with pytest.raises(ValueError, match="EIGHTFOLD_LLM_BASE_URL"):
        LLMConfig.from_env()
    monkeypatch.setenv("EIGHTFOLD_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="EIGHTFOLD_LLM_MODEL"):
        LLMConfig.from_env()
    monkeypatch.setenv("EIGHTFOLD_LLM_MODEL", "qwen")
    config = LLMConfig.from_env(timeout=3)
    assert (config.base_url, config.model, config.timeout) == ("http://127.0.0.1:9/v1", "qwen", 3)
    client = client_from_env()
    assert client is not None and client.config.model == "qwen"


def test_fake_server_flags_unscripted_requests():
    with fake_openai(["only one"]) as server:
        client = make_client(server.url, max_retries=0)
        client.chat("1")
        with pytest.raises(LLMUnavailableError):
            client.chat("2")
    assert server.unscripted == 1
