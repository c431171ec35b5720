"""The OpenAPI document says what the API really answers: every error a route can give, as
`application/problem+json`.

Routes declare only their own success answers (and, on their router, statuses particular to their
area); the errors every route shares are derived here from what the route depends on, once for all:

| the route …                               | may answer                          |
|-------------------------------------------|-------------------------------------|
| (any)                                     | 413 (body too large), 500 (a bug)   |
| takes parameters or a body                | 422 (invalid, with `violations`)    |
| takes a body                              | 400 (unreadable)                    |
| has path parameters or a body             | 404 (what it names does not exist)  |
| needs an API key (`ViewerKey`, …)         | 401, 403                            |
| has another security scheme (webhooks)    | 401                                 |
| talks to Temporal (`TemporalClientDep`)   | 400, 404, 409, 429, 503 (`api.errors.rpc_problem`) |

A 405 (a method the path does not have) carries `Allow`; it belongs to no operation, so the API's
description mentions it (`api.main`).
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase

from api.deps import get_temporal
from api.errors import PROBLEM_JSON
from api.models import ProblemDetails

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
_REASONS = {
    400: "Bad request: the request cannot be used as sent (see `detail`)",
    401: "No valid credentials",
    403: "The API key's role is too low",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    422: "Invalid request: `violations` lists every problem",
    429: "Too many requests: retry after `Retry-After` seconds",
    500: "An unexpected error (a bug): it has been logged",
    502: "A service the API called failed",
    503: "Temporal or a worker is not available",
    504: "A service the API called did not answer in time",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "How to authenticate", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}


def error_statuses(route: APIRoute) -> set[int]:
    """The error statuses `route` can answer whatever it does (see the module's table)."""
    dependants = list(_dependants(route.dependant))
    calls = {dependant.call for dependant in dependants}
    has_body = any(dependant.body_params for dependant in dependants)
    has_path = any(dependant.path_params for dependant in dependants)
    has_params = (
        has_body
        or has_path
        or any(
            dependant.query_params or dependant.header_params or dependant.cookie_params
            for dependant in dependants
        )
    )
    statuses = {413, 500}  # the body limit (api.limits) refuses a large body on any route
    if has_params:
        statuses.add(422)
    if has_body:
        statuses.add(400)
    if has_path or has_body:
        statuses.add(404)
    if any(hasattr(call, "required_role") for call in calls):
        statuses |= {401, 403}
    elif any(isinstance(call, SecurityBase) for call in calls):
        statuses.add(401)
    if get_temporal in calls:
        statuses |= {400, 404, 409, 429, 503}
    return statuses


def declare_error_responses(router: APIRouter) -> None:
    """Add the shared error answers to every route of `router` (before it is included in the app)
    and make every error answer problem+json."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        responses = dict(route.responses)
        for status in error_statuses(route) | {int(code) for code in responses if str(code).isdigit()}:
            if status < 400:
                continue
            declared = responses.pop(status, None) or responses.pop(str(status), None) or {}
            description = declared.get("description") or _REASONS.get(status) or HTTPStatus(status).phrase
            entry: dict[str, Any] = {
                "description": description,
                "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
            }
            if status in _HEADERS:
                entry["headers"] = _HEADERS[status]
            responses[status] = entry
        route.responses = dict(sorted(responses.items(), key=lambda item: str(item[0])))


def with_problem_schema(app: FastAPI) -> None:
    """`app.openapi()` with the ProblemDetails schema the error answers refer to."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI's document, cached on the app
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["ProblemDetails"] = ProblemDetails.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from _dependants(child)
