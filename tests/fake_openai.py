"""A local fake OpenAI-compatible chat server for tests.

The server runs ``http.server`` in a background thread on ``127.0.0.1`` with a free port and
answers ``POST /v1/chat/completions`` with replies the test scripts in advance: a list consumed in
order, or a function of the request body. A reply can be a plain string (the assistant's text) or
a :class:`FakeReply` that also sets an HTTP status, a delay, or a raw (possibly malformed) body.

Examples
--------
>>> from eightfold.llm import LLMClient, LLMConfig
>>> with fake_openai(["hello"]) as server:
...     client = LLMClient(LLMConfig(base_url=server.url, model="fake", backoff=0))
...     client.chat("hi")
'hello'
>>> server.requests[0]["messages"][0]["content"]
'hi'
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer", "FakeReply", "fake_openai"]


@dataclass(kw_only=True)
class FakeReply:
    """One scripted answer of the fake server.

    Parameters
    ----------
    content
        The assistant's text (``None`` sends a message without content).
    status
        HTTP status; anything other than 200 sends an OpenAI-style error body.
    delay
        Seconds to wait before answering (to trigger client timeouts).
    body
        Raw response body sent as is, overriding ``content``/``status`` formatting (to simulate
        a server that returns something that is not a chat completion).
    headers
        Extra response headers.
    """

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    body: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Script = Sequence["str | FakeReply"] | Callable[[dict[str, Any]], "str | FakeReply"]


class FakeOpenAIServer:
    """The running fake server; use :func:`fake_openai` to start and stop it.

    Attributes
    ----------
    url
        Base URL to give the client, ``http://127.0.0.1:<port>/v1``.
    requests
        The JSON bodies of every chat request received, in order.
    """

    def __init__(self, script: Script) -> None:
        self._script = script
        self._position = 0
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.unscripted = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self, request: dict[str, Any]) -> FakeReply:
        with self._lock:
            self.requests.append(request)
            if callable(self._script):
                reply = self._script(request)
            elif self._position < len(self._script):
                reply = self._script[self._position]
                self._position += 1
            else:
                # A test that sends more requests than it scripted should fail loudly, not hang.
                self.unscripted += 1
                reply = FakeReply(status=500, content="fake server: no scripted reply left")
        return FakeReply(content=reply) if isinstance(reply, str) else reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    body = {"object": "list", "data": [{"id": "fake", "object": "model"}]}
                    self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
                else:
                    self._send(404, b'{"error": {"message": "not found"}}', {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}', {})
                    return
                try:
                    request = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, b'{"error": {"message": "request is not JSON"}}', {})
                    return
                reply = server._next_reply(request)
                if reply.delay:
                    time.sleep(reply.delay)
                headers = {"Content-Type": "application/json", **reply.headers}
                if reply.body is not None:
                    body = reply.body.encode() if isinstance(reply.body, str) else reply.body
                    self._send(reply.status, body, headers)
                elif reply.status != 200:
                    error = {
                        "error": {
                            "message": reply.content or f"fake error {reply.status}",
                            "type": "fake_error",
                            "code": reply.status,
                        }
                    }
                    self._send(reply.status, json.dumps(error).encode(), headers)
                else:
                    completion = {
                        "id": f"chatcmpl-fake-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": request.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                    self._send(200, json.dumps(completion).encode(), headers)

        return Handler


@contextlib.contextmanager
def fake_openai(script: Script) -> Iterator[FakeOpenAIServer]:
    """Run a fake OpenAI-compatible server for the duration of a ``with`` block.

    Parameters
    ----------
    script
        Replies in order (strings or :class:`FakeReply`), or a function from the request body
        (a dict with ``model``, ``messages``...) to a reply.
    """
    server = FakeOpenAIServer(script).start()
    try:
        yield server
    finally:
        server.stop()
