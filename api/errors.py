"""Every error the API answers is `application/problem+json` (RFC 9457) with the right status.

A Temporal RPC failure is answered by what its gRPC status means for the caller (`rpc_problem`): a
refused argument is a 400, a missing thing a 404, a state conflict a 409, an overloaded server a
429, and only an unreachable or failing Temporal a 503. Anything else that escapes a route is a bug:
`UnexpectedErrors` logs it with its traceback and answers a plain 500 problem, keeping the
connection usable (Starlette's own last-resort handler re-raises, and the server then drops it).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from rte.errors import EngineError, ErrorCategory

log = logging.getLogger("rte.api")

PROBLEM_JSON = "application/problem+json"

# How an engine error category reads over HTTP.
_STATUS = {
    ErrorCategory.VALIDATION: 422,
    ErrorCategory.EXPRESSION: 422,
    ErrorCategory.CONFIGURATION: 409,
    ErrorCategory.AUTH: 401,
    ErrorCategory.CANCELLED: 409,
    ErrorCategory.TIMEOUT: 504,
    ErrorCategory.NETWORK: 502,
    ErrorCategory.HTTP_4XX: 502,
    ErrorCategory.HTTP_5XX: 502,
    ErrorCategory.RATE_LIMIT: 429,
}
# gRPC status → (HTTP status, title). Unlisted codes (UNKNOWN, INTERNAL, UNAVAILABLE, …) are 503.
_RPC_STATUS: dict[RPCStatusCode, tuple[int, str]] = {
    RPCStatusCode.INVALID_ARGUMENT: (400, "Refused by Temporal"),
    RPCStatusCode.OUT_OF_RANGE: (400, "Refused by Temporal"),
    RPCStatusCode.NOT_FOUND: (404, "Not found"),
    RPCStatusCode.ALREADY_EXISTS: (409, "Already exists"),
    RPCStatusCode.FAILED_PRECONDITION: (409, "Conflict"),
    RPCStatusCode.ABORTED: (409, "Conflict"),
    RPCStatusCode.RESOURCE_EXHAUSTED: (429, "Temporal is busy"),
    RPCStatusCode.PERMISSION_DENIED: (503, "Temporal refused the API"),
    RPCStatusCode.UNAUTHENTICATED: (503, "Temporal refused the API"),
}
RPC_RETRY_AFTER_S = 5


class Problem(Exception):
    """Raise to answer a problem: `raise Problem(404, "Not found", "no execution 'x'")`."""

    def __init__(
        self, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers = headers


def problem_response(
    status: int,
    title: str,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body |= extra
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="rte"')
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or None)


def rpc_problem(error: RPCError, doing: str) -> Problem:
    """A Temporal RPC failure as the problem it is for the caller; `doing` says what failed."""
    status, title = _RPC_STATUS.get(error.status, (503, "Temporal unavailable"))
    detail = f"{doing}: {error.message or error.status.name}"
    headers = None
    if "workflow task in failed state" in error.message.lower():
        title, detail = "Execution stuck", f"{detail}. {_STUCK_HINT}"
    elif status == 429:
        detail += "; retry later"
        headers = {"Retry-After": str(RPC_RETRY_AFTER_S)}
    elif status == 503 and title == "Temporal unavailable":
        headers = {"Retry-After": str(RPC_RETRY_AFTER_S)}
    elif status == 503:
        detail += "; check the API's Temporal address, namespace and credentials"
    return Problem(status, title, detail, headers=headers)


_STUCK_HINT = (
    "Its workflow task keeps failing (a bug, or a worker running other code): see the worker's log or "
    "the execution in the Temporal Web UI, then fix and restart the worker, or terminate the execution"
)


def stuck_problem(description: WorkflowExecutionDescription) -> Problem | None:
    """409 when the execution cannot answer because its workflow task keeps failing, else None (a
    query or update that timed out then means no worker, not a stuck execution)."""
    attempt = description.raw_description.pending_workflow_task.attempt
    if attempt <= 1:
        return None
    return Problem(
        409,
        "Execution stuck",
        f"'{description.id}' cannot answer (workflow task attempt {attempt}). {_STUCK_HINT}",
    )


def query_failed_problem(
    execution_id: str, error: WorkflowQueryFailedError | WorkflowQueryRejectedError
) -> Problem:
    """The execution's code could not answer a query (its handler raised, or the query was refused)."""
    if isinstance(error, WorkflowQueryRejectedError):
        why = f"the execution refused it ({error.status.name.lower() if error.status else 'closed'})"
    else:
        why = f"the execution's code raised: {error.message}"
    return Problem(
        409,
        "State unavailable",
        f"cannot read the state of '{execution_id}': {why}. The worker's log has the details; the "
        "execution itself is not affected (GET /executions/{id} still shows what Temporal knows)",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(
            error.status, error.title, error.detail, request.url.path, error.headers, **error.extra
        )

    @app.exception_handler(EngineError)
    async def _engine(request: Request, error: EngineError) -> JSONResponse:
        status = _STATUS.get(error.category, 400)
        extra: dict[str, Any] = {"category": error.category.value}
        violations = getattr(error, "violations", None)
        if violations:
            extra["violations"] = violations
        return problem_response(
            status, error.category.value.replace("_", " ").title(), error.message, request.url.path, **extra
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        violations = [
            {
                "path": "$." + ".".join(str(part) for part in item["loc"] if part != "body"),
                "message": item["msg"],
            }
            for item in error.errors()
        ]
        summary = "; ".join(f"{v['path']}: {v['message']}" for v in violations[:5])
        return problem_response(422, "Invalid request", summary, request.url.path, violations=violations)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, str) else str(error.detail)
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette names the methods of the first route whose path matches, not all of them.
            headers["Allow"] = ", ".join(allowed_methods(request.app.state.api_routes, request.url.path))
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        return problem_response(
            error.status_code, _title(error.status_code), detail, request.url.path, headers
        )

    @app.exception_handler(RPCError)
    async def _rpc(request: Request, error: RPCError) -> JSONResponse:
        # A route that did not expect this RPC failure: still answered by what the status means.
        problem = rpc_problem(error, f"{request.method} {request.url.path} failed in Temporal")
        return await _problem(request, problem)

    @app.exception_handler(WorkflowQueryFailedError)
    @app.exception_handler(WorkflowQueryRejectedError)
    async def _query(request: Request, error: Exception) -> JSONResponse:
        execution_id = request.path_params.get("execution_id", "?")
        return await _problem(request, query_failed_problem(execution_id, error))  # type: ignore[arg-type]


class UnexpectedErrors:
    """The last resort: an exception no handler knows is a bug, logged with its traceback and
    answered as a 500 problem. Added last, so it wraps every other middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                return  # the answer is under way (a stream): nothing sensible can be added to it
            response = problem_response(
                500, "Internal error", "an unexpected error occurred; it has been logged", scope.get("path")
            )
            await response(scope, receive, send)


class MethodNotAllowed:
    """A method the resource at a path does not have is a 405 with `Allow`, decided by
    `allowed_methods` — also where Starlette would route it to a parameterised sibling instead
    (DELETE /executions/stats is not the deletion of an execution named "stats")."""

    def __init__(self, app: ASGIApp, routes: list[APIRoute]) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = allowed_methods(self.routes, scope["path"])
            if allowed and scope["method"] not in allowed:
                allow = ", ".join(allowed)
                response = problem_response(
                    405,
                    "Method Not Allowed",
                    f"{scope['method']} is not allowed here; allowed: {allow}",
                    scope["path"],
                    {"Allow": allow},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def allowed_methods(routes: list[APIRoute], path: str) -> list[str]:
    """The methods of the resource at `path`: of the routes whose template matches it, those with the
    most fixed segments (`/executions/stats` is the statistics, not an execution named "stats").
    """
    matching = [route for route in routes if route.path_regex.match(path)]
    if not matching:
        return []
    fixed = max(_fixed_segments(route.path) for route in matching)
    return sorted({m for route in matching if _fixed_segments(route.path) == fixed for m in route.methods})


def _fixed_segments(template: str) -> int:
    return sum(not segment.startswith("{") for segment in template.strip("/").split("/"))


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
