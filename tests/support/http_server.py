"""A real HTTP server on 127.0.0.1 for the services steps call, scriptable per route.

Each route answers from a list of responses, one per call (the last one repeats), so a test can say
"fail twice with 503, then succeed". Every request is recorded, and the server tracks how many
requests were in flight at once (to prove parallelism).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


class TestServer:
    __test__ = False

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode(errors="replace")
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    replies = server.routes.get((self.command, path)) or server.routes.get(("*", path))
                    reply = (
                        (replies.pop(0) if len(replies) > 1 else replies[0])
                        if replies
                        else Reply(404, {"error": "no route"})
                    )
                try:
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    payload = reply.body
                    if callable(payload):
                        payload = payload(body)
                    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = list(replies) or [Reply()]

    def calls(self, path: str) -> list[Recorded]:
        return [request for request in self.requests if request.path.split("?", 1)[0] == path]

    def start(self) -> TestServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
