"""The role matrix, proven on every route the app has (routes are discovered, never listed by hand).

Each route's minimum role is read from its own dependency (`ViewerKey`, `OperatorKey` or `AdminKey`),
so this test follows every router added later. For each route and method: no key → 401, a key one
role below → 403, the right role → neither 401 nor 403.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import httpx
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.deps import require
from api.main import create_app
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

# Routes anyone may call: load balancers probe /health; the docs describe the API.
PUBLIC = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
BELOW = {Role.OPERATOR: Role.VIEWER, Role.ADMIN: Role.OPERATOR}
_ROLE_CHECK = require(Role.VIEWER).__qualname__


def roles_required(dependant: Dependant) -> list[Role]:
    """The roles the route's API-key dependencies demand, nested dependencies included."""
    found: list[Role] = []
    for dependency in dependant.dependencies:
        call = dependency.call
        if callable(call) and getattr(call, "__qualname__", "") == _ROLE_CHECK:
            found.append(inspect.getclosurevars(call).nonlocals["role"])
        found += roles_required(dependency)
    return found


def concrete(path: str) -> str:
    """A request path for a route template: every parameter filled with a value that exists nowhere."""
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: "no-such/thing" if m.group(2) else "no-such-thing", path)


def api_routes(app: FastAPI) -> Iterator[tuple[str, set[str], APIRoute]]:
    """Every API route with its full path; newer FastAPI includes routers lazily, so walk their contexts."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route.path, set(route.methods), route
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield str(context.path), set(context.methods or ()), context.original_route


def matrix(api_server: ApiServer) -> Iterator[tuple[str, str, list[Role]]]:
    for path, methods, route in api_routes(create_app(api_server.settings)):
        if path in PUBLIC:
            continue
        for method in sorted(methods - {"HEAD"}):
            yield method, path, roles_required(route.dependant)


async def status_of(http: httpx.AsyncClient, method: str, path: str) -> int:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    # Streamed: an SSE route answers its status at once and is then left alone.
    async with http.stream(method, concrete(path), json=body) as response:
        return response.status_code


async def test_every_route_demands_exactly_one_role_and_enforces_it(api_server: ApiServer) -> None:
    routes = list(matrix(api_server))
    assert len(routes) > 30  # the discovery found the routers
    problems: list[str] = []
    checked = {role: 0 for role in Role}
    async with (
        api_server.client(role=None) as anonymous,
        api_server.client(Role.VIEWER) as viewer,
        api_server.client(Role.OPERATOR) as operator,
        api_server.client(Role.ADMIN) as admin,
    ):
        clients = {Role.VIEWER: viewer, Role.OPERATOR: operator, Role.ADMIN: admin}
        for method, path, roles in routes:
            if (status := await status_of(anonymous, method, path)) != 401:
                problems.append(f"{method} {path}: no key answered {status}, not 401")
            if len(roles) > 1:
                problems.append(f"{method} {path} takes several keys: {[r.value for r in roles]}")
            if len(roles) != 1:
                continue  # a route with its own credentials (e.g. a webhook token): 401 is all we know
            (role,) = roles
            checked[role] += 1
            if role in BELOW and (status := await status_of(clients[BELOW[role]], method, path)) != 403:
                problems.append(f"{method} {path} needs {role.value}: a {BELOW[role].value} key got {status}")
            if (status := await status_of(clients[role], method, path)) in (401, 403):
                problems.append(f"{method} {path}: the {role.value} key it needs was refused ({status})")
    assert problems == []
    assert all(checked.values()), checked  # every role guards some route


def test_routes_without_an_api_key_are_only_the_public_ones_and_own_credentials(
    api_server: ApiServer,
) -> None:
    without_key = [f"{method} {path}" for method, path, roles in matrix(api_server) if not roles]
    # Each of these must still refuse an anonymous caller (checked above); list them so a reviewer sees them.
    for entry in without_key:
        assert "webhook" in entry or "hooks" in entry, f"{entry} takes no API key"
