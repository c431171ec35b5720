"""A small shop API on 127.0.0.1 for the examples to call — standard library only, no internet.

    python examples/mock_service.py            # http://127.0.0.1:8900, token demo-token
    python examples/mock_service.py --port 8901

Every endpoint but /health wants `Authorization: Bearer demo-token` (the `shop` connection of the
examples carries it) and answers 401 without it. The data is fixed, so every run gives the same
result:

    GET  /health                           {"ok": true}
    GET  /customers/{id}/orders?limit=10   a customer's new orders: acme (12), globex (2), initech (0)
    POST /notifications                    201 {"id": "N-1", "received": <body>}
    POST /refunds                          201 {"refund": "R-1", ...}; 422 unless amount > 0
    POST /shipments                        201 {"tracking": ...}; 422 for a country it does not ship to
    GET  /requests                         what it received so far (method, path, body), for curiosity
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "demo-token"
DEFAULT_PORT = 8900
SHIPS_TO = ("DE", "ES", "FR", "IT", "NL")


def _order(customer: str, number: int, amount: float | None, items: list[str]) -> dict[str, Any]:
    order: dict[str, Any] = {"id": f"{customer[0].upper()}-{1000 + number}", "items": items}
    if amount is not None:  # one of acme's orders came in without an amount: the examples must cope
        order["amount"] = amount
    return order


ORDERS: dict[str, list[dict[str, Any]]] = {
    "acme": [
        _order("acme", 1, 120.0, ["desk", "lamp"]),
        _order("acme", 2, 35.5, ["cable"]),
        _order("acme", 3, 980.0, ["chair", "desk", "screen"]),
        _order("acme", 4, 60.0, ["mouse"]),
        _order("acme", 5, 15.0, ["pen"]),
        _order("acme", 6, 430.0, ["screen", "arm"]),
        _order("acme", 7, None, ["keyboard"]),
        _order("acme", 8, 75.0, ["dock"]),
        _order("acme", 9, 250.0, ["headset", "camera"]),
        _order("acme", 10, 1200.0, ["laptop"]),
        _order("acme", 11, 40.0, ["cable", "pen"]),
        _order("acme", 12, 88.0, ["lamp"]),
    ],
    "globex": [_order("globex", 1, 42.0, ["pen"]), _order("globex", 2, 18.5, ["cable"])],
    "initech": [],
}


class Shop:
    """The service's state: what it received, and counters for the ids it hands out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.ids = itertools.count(1)

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = [part for part in path.split("/") if part]
        if method == "GET" and parts == ["health"]:
            return 200, {"ok": True}
        if method == "GET" and parts == ["requests"]:
            return 200, self.received
        if method == "GET" and len(parts) == 3 and parts[0] == "customers" and parts[2] == "orders":
            return self._orders(parts[1], query)
        if method == "POST" and parts == ["notifications"]:
            return 201, {"id": f"N-{next(self.ids)}", "received": body}
        if method == "POST" and parts == ["refunds"]:
            return self._refund(body)
        if method == "POST" and parts == ["shipments"]:
            return self._shipment(body)
        return 404, {"error": f"no route {method} {path}"}

    def _orders(self, customer: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if customer not in ORDERS:
            return 404, {"error": f"no customer '{customer}'", "customers": sorted(ORDERS)}
        limit = int((query.get("limit") or ["10"])[0])
        return 200, {"customer": customer, "orders": ORDERS[customer][:limit]}

    def _refund(self, body: Any) -> tuple[int, Any]:
        amount = body.get("amount") if isinstance(body, dict) else None
        if not isinstance(amount, int | float) or amount <= 0:
            return 422, {"error": "a refund needs an amount above 0"}
        return 201, {"refund": f"R-{next(self.ids)}", "order": body.get("order"), "amount": amount}

    def _shipment(self, body: Any) -> tuple[int, Any]:
        country = str(body.get("country", "")).upper() if isinstance(body, dict) else ""
        if country not in SHIPS_TO:
            return 422, {"error": f"we do not ship to '{country}' (we ship to {', '.join(SHIPS_TO)})"}
        return 201, {"tracking": f"TRK-{body.get('order')}-{country}", "country": country}


def make_server(port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    shop = Shop()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the engine's own logs say what was called

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                status, answer = 400, {"error": "the body is not JSON"}
            else:
                with shop.lock:
                    shop.received.append({"method": self.command, "path": url.path, "body": body})
                    if url.path != "/health" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                        status, answer = 401, {"error": f"send Authorization: Bearer {TOKEN}"}
                    else:
                        status, answer = shop.answer(self.command, url.path, parse_qs(url.query), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    port = parser.parse_args().port
    server = make_server(port)
    print(f"mock shop service on http://127.0.0.1:{port} (token {TOKEN}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
