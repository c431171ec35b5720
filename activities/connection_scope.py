"""Where a connection's credentials may go: the origins an admin bound it to, and nowhere else.

A connection's `config.allowed_origins` (`["https://api.example.com", "https://eu.example.com:8443"]`,
set by an admin with the connection) lists the only origins its credentials are ever sent to. A
connection without that list is bound to the origin of its `config.base_url`; one with neither sends
its credentials nowhere: the step fails with a `policy` error telling the admin what to set. So no
edit of a step's URL — by a debugger edit, a recovery input, run parameters or a redirect — can
carry a secret to another host. Origins compare scheme, host and port exactly (https and http of
one host are two origins).
"""

from __future__ import annotations

from typing import Any

import httpx

from activities.base import ResolvedConnection
from rte.errors import EngineError, ErrorCategory

ALLOWED_ORIGINS = "allowed_origins"


def origin_of(url: str | httpx.URL) -> str:
    """`scheme://host[:port]` of a URL, lower-cased, default port left out; ValueError when it has none."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError("an origin is an http(s) URL with a host")
    host = parsed.raw_host.decode("ascii").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parsed.scheme]
    port = f":{parsed.port}" if parsed.port not in (None, default) else ""
    return f"{parsed.scheme}://{host}{port}"


def normalize_origin(text: Any) -> str:
    """An admin's origin entry in canonical form; ValueError saying what is wrong with it."""
    if not isinstance(text, str) or not text:
        raise ValueError("each allowed origin must be a non-empty string")
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL:
        raise ValueError(f"allowed origin {text!r} is not a URL") from None
    if parsed.userinfo or parsed.query or parsed.fragment or parsed.path not in ("", "/"):
        raise ValueError(
            f"allowed origin {text!r} must be scheme://host[:port] only (no path, query or user info)"
        )
    try:
        return origin_of(parsed)
    except ValueError:
        raise ValueError(f"allowed origin {text!r} must be an http(s) URL with a host") from None


def allowed_origins(connection: ResolvedConnection) -> tuple[str, ...]:
    declared = connection.config.get(ALLOWED_ORIGINS)
    if declared:
        return tuple(normalize_origin(entry) for entry in declared)
    base_url = connection.config.get("base_url")
    if base_url:
        return (origin_of(str(base_url)),)
    return ()


def require_allowed_target(connection: ResolvedConnection, url: str | httpx.URL) -> None:
    """Raise a non-retryable `policy` error unless `url` is an origin the connection is bound to."""
    try:
        allowed = allowed_origins(connection)
    except ValueError as error:
        raise EngineError(
            ErrorCategory.CONFIGURATION, f"connection '{connection.id}': {error}", retryable=False
        ) from None
    try:
        target = origin_of(url)
    except ValueError:
        target = "(no origin)"
    if target in allowed:
        return
    if not allowed:
        reason = (
            f"connection '{connection.id}' is bound to no origin: an admin must set its "
            "config.allowed_origins (or base_url) before its credentials are sent anywhere"
        )
    else:
        reason = (
            f"connection '{connection.id}' may only send its credentials to {', '.join(allowed)}, "
            f"not to {target}"
        )
    raise EngineError(
        ErrorCategory.POLICY,
        f"{reason} (rule connection_origin)",
        retryable=False,
        details={"rule": "connection_origin", "connection": connection.id, "target_origin": target},
    )
