"""Every error the API answers is `application/problem+json` (RFC 9457) with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


class Problem(Exception):
    """Raise to answer a problem: `raise Problem(404, "Not found", "no execution 'x'")`."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def problem_response(
    status: int, title: str, detail: str, instance: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body |= extra
    headers = {"WWW-Authenticate": 'Bearer realm="rte"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(error.status, error.title, error.detail, request.url.path, **error.extra)

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
        return problem_response(error.status_code, _title(error.status_code), detail, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "Internal error", "an unexpected error occurred; it has been logged", request.url.path
        )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
