"""Connections: credentials for external services. Secrets are write-only and encrypted at rest."""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Path, Response, status

from activities.http import apply_auth, display_url
from api.deps import AdminKey, StoreDep, ViewerKey
from api.errors import Problem
from api.models import ConnectionIn, ConnectionOut, VerifyIn, VerifyOut, problems
from rte.errors import EngineError
from rte.store import ConnectionInfo

router = APIRouter(
    prefix="/connections", tags=["connections"], responses=problems(401, 403, 404, 413, 422, 409)
)

ConnectionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", examples=["crm"])]


@router.get("", response_model=list[ConnectionOut])
async def list_connections(store: StoreDep, _: ViewerKey) -> list[ConnectionOut]:
    """Every connection (which secret fields are set, never their values)."""
    return [_out(info) for info in await store.connections.list_public()]


@router.get("/{connection_id}", response_model=ConnectionOut)
async def get_connection(connection_id: ConnectionId, store: StoreDep, _: ViewerKey) -> ConnectionOut:
    """One connection, without its secret."""
    info = await store.connections.get_public(connection_id)
    if info is None:
        raise _unknown(connection_id)
    return _out(info)


@router.put("/{connection_id}", response_model=ConnectionOut)
async def put_connection(
    connection_id: ConnectionId, body: ConnectionIn, store: StoreDep, _: AdminKey
) -> ConnectionOut:
    """Create or replace a connection; the whole secret is replaced and encrypted."""
    secret = {name: value.get_secret_value() for name, value in body.secret.items()}
    return _out(await store.connections.put(connection_id, body.type, body.config, secret))


@router.delete("/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_connection(connection_id: ConnectionId, store: StoreDep, _: AdminKey) -> Response:
    """Delete a connection (runs that use it fail when they reach the step)."""
    if not await store.connections.delete(connection_id):
        raise _unknown(connection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{connection_id}/verify", response_model=VerifyOut)
async def verify_connection(
    connection_id: ConnectionId, store: StoreDep, _: AdminKey, body: VerifyIn | None = None
) -> VerifyOut:
    """Send a real request to the connection's base_url with its credentials and report the answer."""
    body = body or VerifyIn()
    if await store.connections.get_public(connection_id) is None:
        raise _unknown(connection_id)
    connection = await store.connections.resolve(connection_id)
    base_url = connection.config.get("base_url")
    if not base_url:
        raise Problem(
            409,
            "Nothing to verify against",
            f"connection '{connection_id}' has no config.base_url; set one to verify it",
        )
    url = f"{str(base_url).rstrip('/')}/{body.path.lstrip('/')}"
    headers: dict[str, str] = {}
    query: dict[str, Any] = {}
    try:
        auth = apply_auth(connection, headers, query)
    except EngineError as error:
        return VerifyOut(ok=False, duration_ms=0, url=display_url(url), message=error.message)
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=body.timeout_s, follow_redirects=False) as http:
            answer = await http.request(body.method, url, headers=headers, params=query or None, auth=auth)
    except httpx.TimeoutException:
        return _failed(url, started, f"no answer within {body.timeout_s:g} s")
    except httpx.HTTPError as error:
        return _failed(url, started, f"cannot reach the service: {type(error).__name__}")
    elapsed = (time.perf_counter() - started) * 1000
    code = answer.status_code
    phrase = _phrase(code)
    refused = ": it refused these credentials" if code in (401, 403) else ""
    message = f"the service answered {code} {phrase}{refused}"
    return VerifyOut(
        ok=code < 400, status_code=code, duration_ms=elapsed, url=display_url(url), message=message
    )


def _failed(url: str, started: float, message: str) -> VerifyOut:
    elapsed = (time.perf_counter() - started) * 1000
    return VerifyOut(ok=False, duration_ms=elapsed, url=display_url(url), message=message)


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def _unknown(connection_id: str) -> Problem:
    return Problem(404, "Not found", f"no connection with id '{connection_id}'")


def _out(info: ConnectionInfo) -> ConnectionOut:
    return ConnectionOut.model_validate(info.model_dump())
