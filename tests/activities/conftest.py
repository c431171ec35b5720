"""Real local servers and a step context factory for the step-handler tests.

`RecordingServer` is a `ThreadingHTTPServer` on 127.0.0.1 that records every request and answers by
path: `/echo`, `/text`, `/status/<code>`, `/slow`, and an OpenAI-compatible `…/chat/completions`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from activities.base import ResolvedConnection, StepContext, StepRequest
from activities.outbound_policy import OutboundPolicy, parse_rule
from rte.errors import EngineError, ErrorCategory

OPENAI_KEY = "sk-test-0123456789abcdef"
# The local servers these tests call live on loopback, which the default policy refuses.
LOOPBACK_ALLOWED = OutboundPolicy(allow=(parse_rule("127.0.0.0/8"), parse_rule("::1")))


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_port: int

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        recorded = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
            client_port=self.client_address[1],
        )
        self.server.recorder.requests.append(recorded)
        status, headers, body = _answer(recorded)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


def _json(status: int, data: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(data).encode()


def _answer(request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
    path, query = request.path, {k: v[0] for k, v in request.query.items()}
    if path.endswith("/chat/completions"):
        return _chat_completion(request)
    if path == "/echo":
        body = request.body.decode() if request.body else None
        return _json(
            200,
            {
                "method": request.method,
                "path": path,
                "query": query,
                "headers": request.headers,
                "body": body,
            },
        )
    if path == "/redirect":  # /redirect?to=<url>[&status=307]
        return int(query.get("status", "302")), {"Location": query["to"]}, b""
    if path == "/loop":
        return 302, {"Location": "/loop"}, b""
    if path == "/set-cookie":
        return 200, {"Set-Cookie": "session=s3cr3t-cookie; Path=/", "Content-Type": "application/json"}, b"{}"
    if path == "/text":
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, b"plain words"
    if path == "/slow":
        time.sleep(float(query.get("delay", "2")))
        return _json(200, {"slow": True})
    if path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
        headers = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
        # Echo the credentials back, as careless servers do, to prove the engine redacts them.
        body = {
            "error": "x" * int(query.get("pad", "0")) + "request failed",
            "authorization": request.headers.get("authorization"),
            "api_key": query.get("api_key"),
        }
        return _json(status, body, **headers)
    return _json(404, {"error": "no such route"})


def _chat_completion(request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
    if request.path.startswith("/ratelimited/"):
        return _json(429, {"error": {"message": "slow down"}}, **{"Retry-After": "7"})
    if request.path.startswith("/broken/"):
        return _json(200, {"ok": True})
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if token != OPENAI_KEY:
        # Real providers quote the rejected key in the error; the engine must not repeat it.
        return _json(401, {"error": {"message": f"Incorrect API key provided: {token}"}})
    body = request.json()
    last = body["messages"][-1]["content"]
    prompt_tokens = sum(len(str(m["content"]).split()) for m in body["messages"])
    return _json(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": body["model"] + "-2024",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"echo: {last}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 3,
                "total_tokens": prompt_tokens + 3,
            },
        },
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    recorder: RecordingServer


class RecordingServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.recorder = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def _session_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(_session_server: RecordingServer) -> RecordingServer:
    _session_server.requests.clear()
    return _session_server


@pytest.fixture(scope="session")
def _other_session_server() -> Iterator[RecordingServer]:
    other = RecordingServer()
    other.start()
    yield other
    other.stop()


@pytest.fixture
def other_server(_other_session_server: RecordingServer) -> RecordingServer:
    """A second origin (another port), e.g. where a redirect points."""
    _other_session_server.requests.clear()
    return _other_session_server


class MemoryConnections:
    """A `ConnectionResolver` over a dict, standing in for the encrypted store."""

    def __init__(self) -> None:
        self._connections: dict[str, ResolvedConnection] = {}

    def add(
        self, connection_id: str, type: str, secret: dict[str, Any], config: dict[str, Any] | None = None
    ) -> str:
        self._connections[connection_id] = ResolvedConnection(connection_id, type, config or {}, secret)
        return connection_id

    async def resolve(self, connection_id: str) -> ResolvedConnection:
        try:
            return self._connections[connection_id]
        except KeyError:
            raise EngineError(ErrorCategory.CONFIGURATION, f"unknown connection '{connection_id}'") from None


@pytest.fixture
def connections() -> MemoryConnections:
    return MemoryConnections()


MakeContext = Callable[..., StepContext]


@pytest.fixture
def make_ctx(connections: MemoryConnections) -> MakeContext:
    def make(
        kind: str = "http",
        *,
        execution_id: str = "exec-1",
        step_path: str = "main/step",
        item_index: int | None = None,
        connection: str | None = None,
        attempt: int = 1,
        policy: OutboundPolicy | None = LOOPBACK_ALLOWED,
    ) -> StepContext:
        request = StepRequest(
            execution_id=execution_id,
            step_path=step_path,
            kind=kind,
            item_index=item_index,
            connection=connection,
        )
        return StepContext(request=request, attempt=attempt, connections=connections, policy=policy)

    return make


def _visible_text(ctx: StepContext, error: EngineError | None = None) -> str:
    parts = [entry.message for entry in ctx.logs]
    if error is not None:
        parts += [error.message, json.dumps(error.details)]
    return "\n".join(parts)


@pytest.fixture
def visible_text() -> Callable[..., str]:
    """Everything a user could read about a step: its logs, and its error's message and details."""
    return _visible_text
