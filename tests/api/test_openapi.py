"""The OpenAPI document says what the API really answers: every error as application/problem+json,
the error statuses each route can give, and the security schemes `/docs`' Authorize uses.

The document is checked as a whole here; `test_schemathesis.py` checks real answers against it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.errors import _RPC_STATUS
from api.main import create_app
from rte.config import Settings
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

METHODS = {"get", "put", "post", "patch", "delete"}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"))).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_error_answer_is_a_problem_json_with_the_problem_schema(document: dict[str, Any]) -> None:
    wrong = [
        f"{label} {status}: {list(answer.get('content') or {})}"
        for label, operation in operations(document)
        for status, answer in operation["responses"].items()
        if int(status) >= 400 and answer.get("content") != PROBLEM
    ]
    assert wrong == []
    problem = document["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "detail", "instance", "violations"} <= set(problem["properties"])
    # FastAPI's own 422 shape (application/json) is documented nowhere: it is never answered.
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert len(operations(document)) >= 65


def test_each_operation_declares_the_errors_its_inputs_and_dependencies_can_cause(
    document: dict[str, Any],
) -> None:
    missing: list[str] = []
    for label, operation in operations(document):
        statuses = {int(status) for status in operation["responses"]}
        parameters = {parameter["in"] for parameter in operation.get("parameters", [])}
        expected = {413, 500}
        if parameters or "requestBody" in operation:
            expected.add(422)
        if "requestBody" in operation:
            expected |= {400, 404}
        if "path" in parameters:
            expected.add(404)
        if {"bearer": []} in operation.get("security", []):
            expected |= {401, 403}
        if expected - statuses:
            missing.append(f"{label}: {sorted(expected - statuses)}")
    assert missing == []


def test_routes_that_call_temporal_declare_every_status_an_rpc_error_maps_to(
    document: dict[str, Any],
) -> None:
    rpc_statuses = {status for status, _title in _RPC_STATUS.values()} | {503}
    by_label = dict(operations(document))
    for label in (
        "GET /executions",
        "GET /executions/stats",
        "POST /executions/bulk",
        "GET /executions/{execution_id}",
        "GET /executions/{execution_id}/state",
        "GET /executions/{execution_id}/events",
        "POST /executions/{execution_id}/approve",
        "POST /executions/{execution_id}/debug/commands",
        "POST /executions/{execution_id}/retry",
        "POST /definitions/{definition_id}/runs",
        "POST /schedules",
        "POST /hooks/{definition_id}",
        "GET /errors",
    ):
        responses = by_label[label]["responses"]
        assert rpc_statuses <= {int(status) for status in responses}, label
        assert "Retry-After" in responses["503"]["headers"], label


def test_api_keys_are_declared_as_bearer_and_header_schemes_on_every_protected_operation(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["apiKey"]["description"],
    }
    public = {"GET /health"}
    webhooks = {"POST /hooks/{definition_id}"}
    for label, operation in operations(document):
        if label in public:
            assert "security" not in operation and not {"401", "403"} & set(operation["responses"])
        elif label in webhooks:
            assert operation["security"] == [{"WebhookToken": []}, {"WebhookTokenQuery": []}]
            assert "401" in operation["responses"]
        else:
            # Either scheme alone authenticates (a list of alternatives).
            assert operation["security"] == [{"bearer": []}, {"apiKey": []}], label
            assert {"401", "403"} <= set(operation["responses"]), label
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], label
    assert "405" in document["info"]["description"] and "Allow" in document["info"]["description"]


async def test_both_declared_schemes_authenticate_as_documented(api_server: ApiServer) -> None:
    key, other = api_server.keys[Role.VIEWER], api_server.keys[Role.ADMIN]
    async with httpx.AsyncClient(base_url=api_server.url, timeout=30) as http:
        for headers in (
            {"Authorization": f"Bearer {key}"},
            {"X-API-Key": key},
            {"Authorization": f"Bearer {key}", "X-API-Key": key},
        ):
            assert (await http.get("/definitions", headers=headers)).status_code == 200, headers
        # Two different keys are ambiguous: refused, rather than one of them silently ignored.
        both = await http.get("/definitions", headers={"Authorization": f"Bearer {key}", "X-API-Key": other})
        assert both.status_code == 401 and "two different API keys" in both.json()["detail"]
        refused = await http.get("/definitions")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.headers["content-type"] == "application/problem+json"
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text  # Swagger UI, with Authorize


def test_every_operation_that_starts_an_execution_answers_202_accepted(document: dict[str, Any]) -> None:
    """One meaning for every start: accepted, running asynchronously — follow it at its URL."""
    starts = [
        "POST /definitions/{definition_id}/runs",
        "POST /hooks/{definition_id}",
        "POST /schedules/{schedule_id}/trigger",
        "POST /executions/{execution_id}/rerun",
        "POST /executions/{execution_id}/retry",
        "POST /executions/{execution_id}/resume",
    ]
    by_label = dict(operations(document))
    answers = {
        label: sorted(s for s in by_label[label]["responses"] if s.startswith("2")) for label in starts
    }
    assert answers == dict.fromkeys(starts, ["202"])


async def test_two_different_webhook_tokens_are_refused(api_server: ApiServer) -> None:
    source = "id: hooked\nsteps:\n  - {id: hello, kind: set, with: {text: hi}}\n"
    async with api_server.client(Role.ADMIN) as admin:
        assert (await admin.put("/definitions/hooked", json={"source": source})).status_code in (200, 201)
        first = (await admin.post("/webhooks", json={"definition_id": "hooked", "name": "a"})).json()
        second = (await admin.post("/webhooks", json={"definition_id": "hooked", "name": "b"})).json()
    async with httpx.AsyncClient(timeout=30) as sender:
        both = await sender.post(
            first["url"],
            json={},
            headers={"X-Webhook-Token": first["token"]},
            params={"token": second["token"]},
        )
        assert both.status_code == 401 and "two different webhook tokens" in both.json()["detail"]
        same = await sender.post(
            first["url"],
            json={},
            headers={"X-Webhook-Token": first["token"]},
            params={"token": first["token"]},
        )
        assert same.status_code == 202, same.text
