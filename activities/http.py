"""The `http` step: one HTTP request, classified into the engine's error vocabulary.

Also home of what the other I/O handlers share: `parse_params` (params → pydantic model or a
VALIDATION error naming the field) and `send_request` (one request through the process-wide
client, with auth, the idempotency key, metrics, one log line and error classification), which the
`ai` step reuses.

Connection secrets by type: `bearer` → `secret.token`; `api_key` → `secret.key`, sent in the
header `config.header` (default `X-API-Key`) or the query parameter `config.query_param`; `basic` →
`secret.password` with `config.username` (or `secret.username`); `openai` → `secret.api_key` as a
bearer token. Any connection may set `config.base_url`, which makes a relative `url` valid.

Security, in the order a request meets it: a step's connection comes only from its definition (an
edited input naming another is refused); the credentials go only to the connection's allowed
origins (`activities/connection_scope.py`); every TCP connection, redirects included, passes the
outbound policy on the address actually connected to (`activities/outbound_policy.py`); redirects
are followed here, hop by hop, and a hop to another origin drops every credential for good; the
client keeps no cookies between steps; secrets are redacted from messages, logs and outputs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Literal, TypeVar
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from activities.base import ResolvedConnection, StepContext
from activities.connection_scope import origin_of, require_allowed_target
from activities.outbound_policy import OutboundPolicy, OutboundRefused, PolicyTransport
from rte.config import get_settings
from rte.errors import EngineError, ErrorCategory

ModelT = TypeVar("ModelT", bound=BaseModel)

BODY_EXCERPT_BYTES = 2048
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_REDIRECTS = 10
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)
# Never sent to another origin on a redirect, whoever set them (the connection's own names too).
CROSS_ORIGIN_DROPPED = ("authorization", "proxy-authorization", "cookie")


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
    connection: str | None = Field(
        None, description="Must be the step's own connection (set by the definition) when given."
    )
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


# One client per outbound policy (a worker has one), pooling connections across steps. It is bound
# to the event loop that created it, so a new loop (tests, a restarted worker loop) gets new clients.
_clients: dict[OutboundPolicy, httpx.AsyncClient] = {}
_clients_loop: asyncio.AbstractEventLoop | None = None


@lru_cache(maxsize=1)
def default_policy() -> OutboundPolicy:
    """The policy of this process's settings, for a step context that carries none."""
    return OutboundPolicy.from_settings(get_settings())


def shared_client(policy: OutboundPolicy | None = None) -> httpx.AsyncClient:
    global _clients_loop
    policy = policy or default_policy()
    loop = asyncio.get_running_loop()
    if _clients_loop is not loop:
        _clients.clear()
        _clients_loop = loop
    client = _clients.get(policy)
    if client is None or client.is_closed:
        quiet_transport_logs()
        client = httpx.AsyncClient(
            transport=PolicyTransport(policy, LIMITS),
            follow_redirects=False,  # send_request follows them, dropping credentials across origins
            trust_env=False,  # no proxy (it would hide the real target from the policy), no .netrc
            # No cookie jar shared by every step of every execution: a session cookie one step
            # receives must not ride along with another's request.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )
        _clients[policy] = client
    return client


async def close_shared_client() -> None:
    """For worker shutdown."""
    global _clients_loop
    if _clients_loop is asyncio.get_running_loop():
        for client in _clients.values():
            await client.aclose()
    _clients.clear()
    _clients_loop = None


class _WithoutQueryStrings(logging.Filter):
    """httpx logs every request's full URL at INFO; a query string may carry an api_key."""

    _URL_QUERY = re.compile(r"(\bhttps?://[^\s?#\"'<>]*)\?[^\s#\"'<>]*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._URL_QUERY.sub(r"\1?[query hidden]", message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def quiet_transport_logs() -> None:
    """Keep httpx/httpcore at WARNING (unless configured otherwise) and strip query strings from
    whatever httpx still logs, at any level. Idempotent."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
        if not any(isinstance(existing, _WithoutQueryStrings) for existing in logger.filters):
            logger.addFilter(_WithoutQueryStrings())


def _secret(connection: ResolvedConnection, key: str) -> str:
    value = connection.secret.get(key)
    if not value:
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"connection '{connection.id}' of type {connection.type} has no secret '{key}'",
        )
    return str(value)


@dataclass
class Credentials:
    """What a connection adds to a request: headers, query parameters, or basic auth."""

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    basic: httpx.BasicAuth | None = None
    # Forms of the secret a service may quote back (a basic auth header, a URL-encoded key):
    # redacted like the secret itself.
    derived: list[str] = field(default_factory=list)


def credentials(connection: ResolvedConnection) -> Credentials:
    kind = connection.type
    found = Credentials()
    if kind == "bearer":
        found.headers["Authorization"] = f"Bearer {_secret(connection, 'token')}"
    elif kind == "openai":
        found.headers["Authorization"] = f"Bearer {_secret(connection, 'api_key')}"
    elif kind == "api_key":
        key = _secret(connection, "key")
        if connection.config.get("query_param"):
            found.params[str(connection.config["query_param"])] = key
            found.derived += [quote(key, safe=""), quote_plus(key)]
        else:
            found.headers[str(connection.config.get("header") or "X-API-Key")] = key
    elif kind == "basic":
        username = connection.config.get("username") or connection.secret.get("username")
        if not username:
            raise EngineError(
                ErrorCategory.CONFIGURATION, f"basic connection '{connection.id}' has no username"
            )
        password = _secret(connection, "password")
        found.basic = httpx.BasicAuth(str(username), password)
        found.derived.append(base64.b64encode(f"{username}:{password}".encode()).decode())
    else:
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"connection '{connection.id}' has type '{kind}', which the http step cannot use "
            "(expected bearer, api_key, basic or openai)",
        )
    return found


def apply_auth(
    connection: ResolvedConnection, headers: dict[str, str], query: dict[str, Any]
) -> httpx.BasicAuth | None:
    """Add the connection's credentials to `headers`/`query`; basic auth is returned instead."""
    found = credentials(connection)
    headers.update(found.headers)
    query.update(found.params)
    return found.basic


def step_connection(named_in_input: str | None, ctx: StepContext) -> str | None:
    """The step's connection: the one its definition binds, never one an edited input names."""
    bound = ctx.request.connection
    if named_in_input is not None and named_in_input != bound:
        bound_text = f"connection '{bound}'" if bound else "no connection"
        raise EngineError(
            ErrorCategory.POLICY,
            f"the step's input names connection '{named_in_input}', but its definition binds "
            f"{bound_text}: a step's connection comes only from its definition (rule connection_binding)",
            retryable=False,
            details={"rule": "connection_binding"},
        )
    return bound


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

    Adds the connection's auth (only towards an origin the connection is bound to) and the step's
    `Idempotency-Key` (unless the caller set one), keeps a query string already in `url` (merged
    with `query`), follows redirects, records the http_status/bytes_in/bytes_out metrics and logs
    one line without headers or query string.
    """
    headers = dict(headers or {})
    url = resolve_url(url, connection)
    found = Credentials()
    if connection:
        found = credentials(connection)
        ctx.secrets.extend(value for value in found.derived if value not in ctx.secrets)
        require_allowed_target(connection, url)
        headers.update(found.headers)
    if not any(name.lower() == "idempotency-key" for name in headers):
        headers["Idempotency-Key"] = ctx.idempotency_key
    content = None
    if json_body is not None:
        content = json.dumps(json_body, separators=(",", ":")).encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"

    client = shared_client(ctx.policy)
    started = time.perf_counter()
    try:
        target = httpx.URL(url)
        params = {**(query or {}), **found.params}
        if params:  # merged: httpx would replace the query string already in the URL
            target = target.copy_merge_params(params)
        request = client.build_request(method, target, headers=headers, content=content, timeout=timeout_s)
        ctx.metrics["bytes_out"] = len(content or b"")
        # httpx's timeout is per phase; this bounds the whole exchange, redirects included.
        async with asyncio.timeout(timeout_s):
            response, hops = await _follow_redirects(client, request, found, ctx)
    except OutboundRefused as refused:
        ctx.log("warning", f"{method} {display_url(url)} refused: {refused.message}")
        raise EngineError(
            ErrorCategory.POLICY,
            ctx.redact(f"{method} {display_url(url)}: {refused.message}"),
            retryable=False,
            details={"method": method, "url": ctx.redact(display_url(url)), "rule": refused.rule},
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
        elapsed_ms = (time.perf_counter() - started) * 1000
        ctx.log(
            "warning", f"{method} {display_url(url)} failed after {elapsed_ms:.0f} ms: {type(exc).__name__}"
        )
        raise error_for_transport(exc, method, url, timeout_s, ctx) from None

    elapsed_ms = (time.perf_counter() - started) * 1000
    ctx.metrics["http_status"] = response.status_code
    ctx.metrics["bytes_in"] = len(response.content)
    level = "info" if response.status_code < 400 else "warning"
    redirected = f" (after {hops} redirect{'s' if hops > 1 else ''} to {display_url(str(response.url))})"
    ctx.log(
        level,
        f"{method} {display_url(url)} → {response.status_code} in {elapsed_ms:.0f} ms"
        + (redirected if hops else ""),
    )
    if response.status_code >= 400:
        raise error_for_response(response, method, url, ctx)
    return response


async def _follow_redirects(
    client: httpx.AsyncClient, request: httpx.Request, found: Credentials, ctx: StepContext
) -> tuple[httpx.Response, int]:
    """Send `request` and follow its redirects; the first hop to another origin drops every
    credential for the rest of the chain (httpx itself would forward a custom auth header)."""
    response = await client.send(request, auth=found.basic)
    carrying, hops = True, 0
    while response.next_request is not None:
        if hops == MAX_REDIRECTS:
            await response.aclose()
            raise EngineError(
                ErrorCategory.HTTP_4XX,
                ctx.redact(
                    f"{request.method} {display_url(str(request.url))}: more than {MAX_REDIRECTS} redirects"
                ),
                retryable=False,
            )
        following = response.next_request
        await response.aclose()
        if carrying and not _same_origin(following.url, request.url):
            carrying = False
        if carrying:
            if found.params:  # a same-origin Location may leave the key out; it is still this origin's
                following.url = following.url.copy_merge_params(found.params)
        else:
            for name in (*CROSS_ORIGIN_DROPPED, *(header.lower() for header in found.headers)):
                following.headers.pop(name, None)
            for name in found.params:
                following.url = following.url.copy_remove_param(name)
        request, hops = following, hops + 1
        response = await client.send(request)
    return response, hops


def _same_origin(one: httpx.URL, other: httpx.URL) -> bool:
    try:
        return origin_of(one) == origin_of(other)
    except ValueError:  # e.g. a redirect to another scheme: not this origin (sending it then fails)
        return False


def redact_value(value: Any, ctx: StepContext) -> Any:
    """`value` with every connection secret replaced by *** (a service may echo credentials back)."""
    if not ctx.secrets:
        return value
    if isinstance(value, str):
        return ctx.redact(value)
    if isinstance(value, dict):
        return {redact_value(key, ctx): redact_value(item, ctx) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item, ctx) for item in value]
    return value


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
    connection_id = step_connection(p.connection, ctx)
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
        body = {"status": response.status_code, "headers": dict(response.headers), "body": body}
    return redact_value(body, ctx)
