"""Careless services on 127.0.0.1 for the secret-leak test: they echo whatever credentials they get,
fail the first call, and redirect to another origin keeping the query string.

`origin` (where the connections point) answers each path 500 the first time, with every request
header and the full path in the body, then redirects to `elsewhere` (302 for GET, 307 otherwise),
query string included. `elsewhere` answers 200 with what it received: anything secret it got would
travel back into the step's output. Every request is recorded raw.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return f"{self.method} {self.path}\n{json.dumps(self.headers)}\n{self.body.decode(errors='replace')}"


class CarelessService:
    def __init__(self, elsewhere: CarelessService | None = None) -> None:
        self.elsewhere = elsewhere
        self.seen: list[Seen] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command, self.path, dict(self.headers), self.rfile.read(length) if length else b""
                )
                status, headers, body = service.answer(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        path, _, query = seen.path.partition("?")
        with self._lock:
            self.seen.append(seen)
            self._counts[path] = count = self._counts.get(path, 0) + 1
        echo = {
            "received": {
                "path": seen.path,
                "headers": seen.headers,
                "body": seen.body.decode(errors="replace"),
            }
        }
        json_type = {"Content-Type": "application/json"}
        if self.elsewhere is None:  # the other origin: success, echoing what it got
            if path.endswith("/chat/completions"):
                completion = {
                    "model": "tiny",
                    "choices": [
                        {
                            "message": {"role": "assistant", "content": json.dumps(echo)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                }
                return 200, json_type, json.dumps(completion).encode()
            return 200, json_type, json.dumps(echo).encode()
        if count == 1:  # fail once, quoting the credentials back
            return 500, json_type, json.dumps({"error": "temporarily broken"} | echo).encode()
        target = self.elsewhere.url + path.replace("/call/", "/landing/") + (f"?{query}" if query else "")
        return (302 if seen.method == "GET" else 307), {"Location": target}, b""

    def start(self) -> CarelessService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
