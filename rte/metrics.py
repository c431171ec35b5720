"""Prometheus metrics of this process (`prometheus-client`'s default registry), served by the API at
`GET /metrics`. Names follow Prometheus' conventions: `rte_` prefix, units in the name, `_total` for
counters, histograms for durations. Labels stay bounded: routes are templates, never raw paths.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_REQUESTS = Counter(
    "rte_api_requests",
    "API requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
API_REQUEST_DURATION = Histogram(
    "rte_api_request_duration_seconds",
    "Time to answer an API request (to the start of the response).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EXECUTIONS_STARTED = Counter(
    "rte_executions_started",
    "Executions this process started, by definition and trigger.",
    ["definition", "trigger"],
)


def execution_started(definition_id: str, trigger: str) -> None:
    EXECUTIONS_STARTED.labels(definition=definition_id, trigger=trigger).inc()


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request by its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before any answer

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                API_REQUEST_DURATION.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            API_REQUESTS.labels(scope["method"], _route(scope), str(status)).inc()


def _route(scope: Scope) -> str:
    # The router records the matched route in the scope; an unmatched path is one label, not many.
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
