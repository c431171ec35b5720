"""A stand-in on 127.0.0.1 for the public services the conformance kit calls (petstore.swagger.io and
httpbin.org), answering the requests its scenarios make the way those services do: pets by id and by
status, 404 for the rest of `/v2/pet/…`, and httpbin's `/basic-auth/{user}/{password}` check."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PUBLIC_HOSTS = ("https://petstore.swagger.io", "https://httpbin.org")

PETS: dict[int, dict[str, Any]] = {
    1: {
        "id": 1,
        "category": {"id": 1, "name": "dogs"},
        "name": "Rex",
        "photoUrls": [],
        "tags": [],
        "status": "available",
    },
    2: {
        "id": 2,
        "category": {"id": 2, "name": "cats"},
        "name": "Tom",
        "photoUrls": [],
        "tags": [],
        "status": "sold",
    },
    3: {
        "id": 3,
        "category": {"id": 1, "name": "dogs"},
        "name": "Milou",
        "photoUrls": [],
        "tags": [],
        "status": "available",
    },
}


class PublicServices:
    """Start it, rewrite the public hosts of a definition with `local()`, stop it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        services = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                services.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers)}
                )
                status, payload, headers = services.answer(self.command, self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def local(self, definition: str) -> str:
        """The definition with the public hosts replaced by this server: nothing leaves the machine."""
        for host in PUBLIC_HOSTS:
            definition = definition.replace(host, self.url)
        return definition

    def answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if path == "/v2/pet/findByStatus" and method == "GET":
            wanted = set(query.get("status", []))
            return 200, [pet for pet in PETS.values() if pet["status"] in wanted], {}
        pet = re.fullmatch(r"/v2/pet/(\d+)", path)
        if pet and method == "GET":
            found = PETS.get(int(pet.group(1)))
            return (
                (200, found, {})
                if found
                else (404, {"code": 1, "type": "error", "message": "Pet not found"}, {})
            )
        if path in ("/v2/pet", "/v2/pet/") or (pet and method == "PUT"):
            return 200, json.loads(body or b"{}"), {}
        if path.startswith("/v2/pet/"):
            return 404, {"code": 404, "type": "unknown", "message": "java.lang.NumberFormatException"}, {}
        login = re.fullmatch(r"/basic-auth/([^/]+)/([^/]+)", path)
        if login:
            expected = "Basic " + base64.b64encode(f"{login.group(1)}:{login.group(2)}".encode()).decode()
            if headers.get("Authorization") == expected:
                return 200, {"authenticated": True, "user": login.group(1)}, {}
            return 401, None, {"WWW-Authenticate": 'Basic realm="Fake Realm"'}
        return 404, {"error": f"no route for {method} {path}"}, {}

    def start(self) -> PublicServices:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
