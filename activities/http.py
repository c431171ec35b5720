"""The `http` step: one HTTP request, classified into the engine's error vocabulary.

Also home of what the other I/O handlers share: `parse_params` (params → pydantic model or a
VALIDATION error naming the field) and `send_request` (one request through the process-wide
client, with auth, the idempotency key, metrics, one log line and error classification), which the
`ai` step reuses.

Connection secrets by type: `bearer` → `secret.token`; `api_key` → `secret.key`, sent in the
header `config.header` (default `X-API-Key`) or the query parameter `config.query_param`; `basic` →
`secret.password` with `config.username` (or `secret.username`); `openai` → `secret.api_key` as a
bearer token. Any connection may set `config.base_url`, which makes a relative `url` valid.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from activities.base import ResolvedConnection, StepContext
from rte.errors import EngineError, ErrorCategory

ModelT = TypeVar("ModelT", bound=BaseModel)

BODY_EXCERPT_BYTES = 2048
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def parse_params(model: type[ModelT], params: dict[str, Any], kind: str) -> ModelT:
    """Validate a step's params into `model`, or raise a VALIDATION error naming each bad field."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        # Only locations and messages: the offending input may hold a secret.
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]) or "(params)", "problem": error["msg"]}
            for error in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise EngineError(
            ErrorCategory.VALIDATION,
            f"invalid parameters for the {kind} step: {summary}",
            details={"errors": problems},
        ) from None


class HttpParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = "GET"
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str | int | float | bool | list[str | int | float | bool]] = Field(default_factory=dict)
    body: Any = Field(None, description="Sent as JSON when not null.")
    timeout_s: float = Field(30.0, gt=0, le=3600)
    connection: str | None = None
    expect: Literal["json", "text", "auto"] = "auto"
    response: Literal["body", "full"] = Field(
        "body", description="'body' returns the parsed body; 'full' returns {status, headers, body}."
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        method = value.upper()
        if method not in METHODS:
            raise ValueError(f"must be one of {', '.join(sorted(METHODS))}")
        return method


# One client per process: connection pooling across steps. It is bound to the event loop that
# created it, so a new loop (tests, a restarted worker loop) gets a new client.
_client: httpx.AsyncClient | None = None
_client_loop: asyncio.AbstractEventLoop | None = None


def shared_client() -> httpx.AsyncClient:
    global _client, _client_loop
    loop = asyncio.get_running_loop()
    if _client is None or _client.is_closed or _client_loop is not loop:
        _client = httpx.AsyncClient(
            follow_redirects=True,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        _client_loop = loop
    return _client


async def close_shared_client() -> None:
    """For worker shutdown."""
    global _client, _client_loop
    if _client is not None and _client_loop is asyncio.get_running_loop():
        await _client.aclose()
    _client, _client_loop = None, None


def _secret(connection: ResolvedConnection, key: str) -> str:
    value = connection.secret.get(key)
    if not value:
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"connection '{connection.id}' of type {connection.type} has no secret '{key}'",
        )
    return str(value)


def apply_auth(
    connection: ResolvedConnection, headers: dict[str, str], query: dict[str, Any]
) -> httpx.BasicAuth | None:
    """Add the connection's credentials to `headers`/`query`; basic auth is returned instead."""
    kind = connection.type
    if kind == "bearer":
        headers["Authorization"] = f"Bearer {_secret(connection, 'token')}"
    elif kind == "openai":
        headers["Authorization"] = f"Bearer {_secret(connection, 'api_key')}"
    elif kind == "api_key":
        key = _secret(connection, "key")
        if connection.config.get("query_param"):
            query[str(connection.config["query_param"])] = key
        else:
            headers[str(connection.config.get("header") or "X-API-Key")] = key
    elif kind == "basic":
        username = connection.config.get("username") or connection.secret.get("username")
        if not username:
            raise EngineError(
                ErrorCategory.CONFIGURATION, f"basic connection '{connection.id}' has no username"
            )
        return httpx.BasicAuth(str(username), _secret(connection, "password"))
    else:
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"connection '{connection.id}' has type '{kind}', which the http step cannot use "
            "(expected bearer, api_key, basic or openai)",
        )
    return None


def resolve_url(url: str, connection: ResolvedConnection | None) -> str:
    if urlsplit(url).scheme:
        return url
    base_url = connection.config.get("base_url") if connection else None
    if not base_url:
        raise EngineError(
            ErrorCategory.VALIDATION,
            f"url '{url}' is relative, but no connection with a base_url gives it a host",
        )
    return f"{str(base_url).rstrip('/')}/{url.lstrip('/')}"


def display_url(url: str) -> str:
    """The URL as messages and logs show it: no query string and no user info (both may hold secrets)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def body_excerpt(response: httpx.Response, ctx: StepContext) -> str:
    # Redact before cutting, so a secret straddling the cut cannot survive half-visible.
    text = response.content[: BODY_EXCERPT_BYTES * 4].decode(response.encoding or "utf-8", "replace")
    return ctx.redact(text)[:BODY_EXCERPT_BYTES]


def error_for_response(response: httpx.Response, method: str, url: str, ctx: StepContext) -> EngineError:
    """Classify a non-2xx response into the engine's error vocabulary."""
    status = response.status_code
    shown = display_url(url)
    message = ctx.redact(f"{method} {shown} answered {status} {response.reason_phrase}".rstrip())
    details: dict[str, Any] = {
        "method": method,
        "url": ctx.redact(shown),
        "status": status,
        "body_excerpt": body_excerpt(response, ctx),
    }
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            details["retry_after_s"] = retry_after
        return EngineError(
            ErrorCategory.RATE_LIMIT, message, retryable=True, details=details, retry_after_s=retry_after
        )
    if status >= 500:
        return EngineError(ErrorCategory.HTTP_5XX, message, retryable=True, details=details)
    if status in (401, 403):
        return EngineError(ErrorCategory.AUTH, message, retryable=False, details=details)
    return EngineError(ErrorCategory.HTTP_4XX, message, retryable=False, details=details)


def error_for_transport(
    exc: Exception, method: str, url: str, timeout_s: float, ctx: StepContext
) -> EngineError:
    """Classify a failure to get any response (timeout, refused connection, broken stream…)."""
    shown = display_url(url)
    details: dict[str, Any] = {"method": method, "url": ctx.redact(shown), "error_type": type(exc).__name__}
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return EngineError(
            ErrorCategory.TIMEOUT,
            ctx.redact(f"{method} {shown} got no answer within {timeout_s:g} s"),
            retryable=True,
            details=details,
        )
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return EngineError(
            ErrorCategory.VALIDATION, ctx.redact(f"{method} {shown}: {exc}"), retryable=False, details=details
        )
    reason = str(exc) or type(exc).__name__
    return EngineError(
        ErrorCategory.NETWORK,
        ctx.redact(f"{method} {shown} failed: {reason}"),
        retryable=True,
        details=details,
    )


async def send_request(
    ctx: StepContext,
    method: str,
    url: str,
    *,
    connection: ResolvedConnection | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, Any] | None = None,
    json_body: Any = None,
    timeout_s: float = 30.0,
) -> httpx.Response:
    """Send one request; return a 2xx/3xx response or raise a classified `EngineError`.

    Adds the connection's auth and the step's `Idempotency-Key` (unless the caller set one),
    records the http_status/bytes_in/bytes_out metrics and logs one line without headers.
    """
    headers = dict(headers or {})
    query = dict(query or {})
    auth = apply_auth(connection, headers, query) if connection else None
    if not any(name.lower() == "idempotency-key" for name in headers):
        headers["Idempotency-Key"] = ctx.idempotency_key
    url = resolve_url(url, connection)
    content = None
    if json_body is not None:
        content = json.dumps(json_body, separators=(",", ":")).encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"

    client = shared_client()
    started = time.perf_counter()
    try:
        request = client.build_request(
            method, url, headers=headers, params=query or None, content=content, timeout=timeout_s
        )
        ctx.metrics["bytes_out"] = len(content or b"")
        # httpx's timeout is per phase; this bounds the whole exchange.
        async with asyncio.timeout(timeout_s):
            response = await client.send(request, auth=auth)
    except (httpx.HTTPError, TimeoutError) as exc:
        elapsed_ms = (time.perf_counter() - started) * 1000
        ctx.log(
            "warning", f"{method} {display_url(url)} failed after {elapsed_ms:.0f} ms: {type(exc).__name__}"
        )
        raise error_for_transport(exc, method, url, timeout_s, ctx) from None

    elapsed_ms = (time.perf_counter() - started) * 1000
    ctx.metrics["http_status"] = response.status_code
    ctx.metrics["bytes_in"] = len(response.content)
    level = "info" if response.status_code < 400 else "warning"
    ctx.log(level, f"{method} {display_url(url)} → {response.status_code} in {elapsed_ms:.0f} ms")
    if response.status_code >= 400:
        raise error_for_response(response, method, url, ctx)
    return response


def is_json_content_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def decode_body(response: httpx.Response, expect: Literal["json", "text", "auto"], ctx: StepContext) -> Any:
    if not response.content:
        return None
    wants_json = expect == "json" or (
        expect == "auto" and is_json_content_type(response.headers.get("content-type", ""))
    )
    if not wants_json:
        return response.text
    try:
        return response.json()
    except ValueError as exc:
        raise EngineError(
            ErrorCategory.VALIDATION,
            ctx.redact(
                f"{response.request.method} {display_url(str(response.request.url))} answered "
                f"{response.status_code} with a body that is not valid JSON: {exc}"
            ),
            details={"body_excerpt": body_excerpt(response, ctx)},
        ) from None


async def handle_http(params: dict[str, Any], ctx: StepContext) -> Any:
    p = parse_params(HttpParams, params, "http")
    connection_id = p.connection or ctx.request.connection
    connection = await ctx.connection(connection_id) if connection_id else None
    response = await send_request(
        ctx,
        p.method,
        p.url,
        connection=connection,
        headers=p.headers,
        query=p.query,
        json_body=p.body,
        timeout_s=p.timeout_s,
    )
    body = decode_body(response, p.expect, ctx)
    if p.response == "full":
        return {"status": response.status_code, "headers": dict(response.headers), "body": body}
    return body
