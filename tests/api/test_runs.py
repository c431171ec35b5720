"""Starting runs through the API: the input form, parameter validation, configuration, connections."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from temporalio.client import Client

from rte import temporal as sa
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.support.http_server import Reply, TestServer


def new_id() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


FORM = """
id: {id}
inputs:
  type: object
  required: [customer_name]
  properties:
    customer_name: {{type: string, format: email, description: Who gets the report}}
    plan: {{type: string, enum: [basic, pro], default: basic}}
    limit: {{type: integer, default: 10, minimum: 1, title: Max orders}}
    address:
      type: object
      properties:
        street: {{type: string}}
steps:
  - id: echo
    kind: set
    with: {{who: "${{ .inputs.customer_name }}", plan: "${{ .inputs.plan }}", limit: "${{ .inputs.limit }}"}}
outputs: "${{ .steps.echo.output }}"
"""


async def save(http: httpx.AsyncClient, text: str) -> None:
    response = await http.post("/definitions", json={"source": text})
    assert response.status_code in (200, 201), response.text


async def test_the_input_form_lists_fields_with_titles_enums_defaults_and_formats(
    api_server: ApiServer,
) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as admin:
        await save(admin, FORM.format(id=definition_id))
    async with api_server.client(Role.VIEWER) as http:
        response = await http.get(f"/definitions/{definition_id}/input")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == "1"
    assert body["input_schema"]["properties"]["customer_name"]["title"] == "Customer name"
    fields = {field["name"]: field for field in body["fields"]}
    assert list(fields) == ["customer_name", "plan", "limit", "address.street"]
    assert fields["customer_name"]["required"] and fields["customer_name"]["format"] == "email"
    assert fields["customer_name"]["description"] == "Who gets the report"
    assert fields["plan"]["enum"] == ["basic", "pro"] and fields["plan"]["default"] == "basic"
    assert fields["limit"]["title"] == "Max orders" and fields["limit"]["minimum"] == 1
    assert fields["address.street"]["path"] == "$.address.street"


async def test_invalid_parameters_are_a_422_listing_every_violation_with_its_path(
    api_server: ApiServer,
) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as admin:
        await save(admin, FORM.format(id=definition_id))
    async with api_server.client(Role.OPERATOR) as http:
        response = await http.post(
            f"/definitions/{definition_id}/runs",
            json={"params": {"plan": "gold", "limit": "ten"}},
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    violations = {v["path"]: v["message"] for v in response.json()["violations"]}
    assert set(violations) == {"$.customer_name", "$.plan", "$.limit"}
    assert violations["$.customer_name"] == "is required"
    assert violations["$.plan"] == '"gold" is not one of ["basic", "pro"]'
    assert violations["$.limit"] == 'expected integer, got "ten"'


async def test_a_started_run_completes_with_defaults_applied_and_is_labelled(
    api_server: ApiServer, client: Client
) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as admin:
        await save(admin, FORM.format(id=definition_id))
    async with api_server.client(Role.OPERATOR) as http:
        response = await http.post(
            f"/definitions/{definition_id}/runs",
            json={"params": {"customer_name": "ada@example.com"}, "config": {"timeout_s": 120}},
        )
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["execution_id"].startswith(definition_id) and started["version"] == "1"
    assert started["temporal_ui_url"].startswith(api_server.settings.temporal_ui_url)
    handle = client.get_workflow_handle(started["execution_id"])
    assert await handle.result() == {"who": "ada@example.com", "plan": "basic", "limit": 10}
    description = await handle.describe()
    assert description.typed_search_attributes.get(sa.DEFINITION_VERSION) == "1"
    assert description.typed_search_attributes.get(sa.TRIGGER_TYPE) == "manual"
    timeout = description.raw_description.execution_config.workflow_execution_timeout
    assert timeout.ToTimedelta() == timedelta(seconds=120)


async def test_a_retry_override_applies_to_every_io_step_of_the_run(
    api_server: ApiServer, client: Client, http_server: TestServer
) -> None:
    http_server.route("GET", "/flaky", Reply(503, {"e": 1}), Reply(200, {"ok": True}))
    definition_id = new_id()
    text = f"""
id: {definition_id}
steps:
  - id: call
    kind: http
    with: {{url: "{http_server.url}/flaky"}}
    retry: {{max_attempts: 1}}
outputs: "${{ .steps.call.output }}"
"""
    async with api_server.client(Role.ADMIN) as admin:
        await save(admin, text)
    retry = {"max_attempts": 3, "initial_interval_s": 0.1, "backoff": 1}
    async with api_server.client(Role.OPERATOR) as http:
        response = await http.post(f"/definitions/{definition_id}/runs", json={"config": {"retry": retry}})
    assert response.status_code == 202, response.text
    assert await client.get_workflow_handle(response.json()["execution_id"]).result() == {"ok": True}
    assert len(http_server.calls("/flaky")) == 2


async def test_connections_must_exist_and_can_be_mapped_to_other_stored_ones(
    api_server: ApiServer, client: Client, http_server: TestServer
) -> None:
    http_server.route("GET", "/me", Reply(200, {"user": "ada"}))
    definition_id, staging = new_id(), f"staging-{uuid.uuid4().hex[:6]}"
    text = f"""
id: {definition_id}
connections: [crm]
steps:
  - id: me
    kind: http
    connection: crm
    with: {{url: /me}}
outputs: "${{ .steps.me.output }}"
"""
    async with api_server.client(Role.ADMIN) as admin:
        await save(admin, text)
        put = await admin.put(
            f"/connections/{staging}",
            json={"type": "bearer", "config": {"base_url": http_server.url}, "secret": {"token": "t0k3n"}},
        )
        assert put.status_code == 200, put.text
    async with api_server.client(Role.OPERATOR) as http:
        missing = await http.post(f"/definitions/{definition_id}/runs", json={})
        assert missing.status_code == 409 and "crm" in missing.json()["detail"]
        undeclared = await http.post(
            f"/definitions/{definition_id}/runs", json={"connections": {"erp": staging}}
        )
        assert undeclared.status_code == 422
        assert undeclared.json()["violations"][0]["path"] == "$.connections.erp"
        swapped = await http.post(
            f"/definitions/{definition_id}/runs", json={"connections": {"crm": staging}}
        )
        assert swapped.status_code == 403 and swapped.json()["rule"] == "connection_swap", swapped.text
    async with api_server.client(Role.ADMIN) as admin:  # a swap changes whose credentials go out
        mapped = await admin.post(
            f"/definitions/{definition_id}/runs", json={"connections": {"crm": staging}}
        )
        assert mapped.status_code == 202, mapped.text
    assert await client.get_workflow_handle(mapped.json()["execution_id"]).result() == {"user": "ada"}
    assert http_server.calls("/me")[0].headers["Authorization"] == "Bearer t0k3n"


async def test_a_chosen_execution_id_makes_a_second_start_a_409(api_server: ApiServer) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as admin:
        await save(admin, FORM.format(id=definition_id))
    body = {"params": {"customer_name": "a@b.co"}, "execution_id": f"{definition_id}-once"}
    async with api_server.client(Role.OPERATOR) as http:
        assert (await http.post(f"/definitions/{definition_id}/runs", json=body)).status_code == 202
        again = await http.post(f"/definitions/{definition_id}/runs", json=body)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    unknown = await api_server.client(Role.OPERATOR).post("/definitions/nope-nope/runs", json={})
    assert unknown.status_code == 404


LIMITS = """
id: {id}
inputs:
  type: object
  properties:
    code: {{type: string, minLength: 3, maxLength: 8, pattern: "^[A-Z]+$"}}
    count: {{type: integer, minimum: 1, maximum: 50, multipleOf: 5}}
    ratio: {{type: number, exclusiveMinimum: 0, exclusiveMaximum: 1.5}}
    tags: {{type: array, items: {{type: string}}, minItems: 1, maxItems: 3}}
steps:
  - {{id: echo, kind: set, with: {{code: "${{ .inputs.code }}"}}}}
outputs: "${{ .steps.echo.output }}"
"""


async def test_the_input_form_keeps_every_limit_and_integer_limits_stay_integers(
    api_server: ApiServer,
) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as admin:
        await save(admin, LIMITS.format(id=definition_id))
        response = await admin.get(f"/definitions/{definition_id}/input")
    assert response.status_code == 200, response.text
    fields = {field["name"]: field for field in response.json()["fields"]}
    code, count, ratio, tags = fields["code"], fields["count"], fields["ratio"], fields["tags"]
    assert (code["min_length"], code["max_length"], code["pattern"]) == (3, 8, "^[A-Z]+$")
    assert (count["minimum"], count["maximum"], count["multiple_of"]) == (1, 50, 5)
    assert all(type(count[name]) is int for name in ("minimum", "maximum", "multiple_of"))
    assert '"minimum":1,' in response.text and "1.0" not in response.text
    assert (ratio["exclusive_minimum"], ratio["exclusive_maximum"]) == (0, 1.5)
    assert (tags["min_items"], tags["max_items"]) == (1, 3)


async def test_a_null_parameter_is_named_null_not_python_none(api_server: ApiServer) -> None:
    definition_id = new_id()
    async with api_server.client(Role.ADMIN) as admin:
        await save(admin, FORM.format(id=definition_id))
        response = await admin.post(
            f"/definitions/{definition_id}/runs", json={"params": {"customer_name": None, "limit": True}}
        )
    assert response.status_code == 422, response.text
    violations = {v["path"]: v["message"] for v in response.json()["violations"]}
    assert violations == {
        "$.customer_name": "expected string, got null",
        "$.limit": "expected integer, got true",
    }
    assert "None" not in response.text and "NoneType" not in response.text
