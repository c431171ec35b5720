"""No operator action can change where a connection's credentials go (issue 9, point 1).

The recipe that stole a secret: an admin-authored definition whose http step uses `connection: X`,
a breakpoint before it, an operator's `POST /executions/{id}/debug/variables {"path": "input.url",
"value": "http://127.0.0.1:<attacker>/"}`, then `continue`. Now the edit is a 403 for operators; and
when the URL changes by any other means (an admin's edit, run parameters, an input naming another
connection, a recovery retry), the credentials still only go to the connection's own origin.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.support.http_server import Reply, TestServer

SECRET = f"tok-least-privilege-{uuid.uuid4().hex}"


@pytest.fixture
def victim() -> Iterator[TestServer]:
    server = TestServer().start()
    server.route("GET", "/me", Reply(200, {"user": "ada"}))
    server.route("GET", "/broken", Reply(500, {"error": "down"}))
    yield server
    server.stop()


@pytest.fixture
def attacker() -> Iterator[TestServer]:
    server = TestServer().start()
    yield server
    server.stop()


def stolen(attacker: TestServer) -> list[str]:
    """What of the secret reached the attacker: any request at all counts, the secret doubly."""
    return [f"{r.method} {r.path} {r.headers}" for r in attacker.requests]


async def setup(
    admin: httpx.AsyncClient, victim: TestServer, steps: str, inputs: str = ""
) -> tuple[str, str]:
    connection, definition = f"lp-{uuid.uuid4().hex[:8]}", f"lp-{uuid.uuid4().hex[:8]}"
    put = await admin.put(
        f"/connections/{connection}",
        json={"type": "bearer", "config": {"base_url": victim.url}, "secret": {"token": SECRET}},
    )
    assert put.status_code == 200, put.text
    source = f"id: {definition}\nconnections: [{connection}]\n{inputs}steps:\n{steps.format(conn=connection, url=victim.url)}"
    saved = await admin.post("/definitions", json={"source": source})
    assert saved.status_code in (200, 201), saved.text
    return connection, definition


CALL = """  - id: call
    kind: http
    connection: {conn}
    with: {{url: "{url}/me"}}
"""


async def until(http: httpx.AsyncClient, url: str, check: Any, timeout_s: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await http.get(url)
        if response.status_code == 200 and check(response.json()):
            return response.json()
        assert asyncio.get_running_loop().time() < deadline, response.text
        await asyncio.sleep(0.2)


async def paused_run(operator: httpx.AsyncClient, definition: str, step: str = "call") -> str:
    started = await operator.post(
        f"/definitions/{definition}/runs", json={"config": {"breakpoints": [{"step": step}]}}
    )
    assert started.status_code == 202, started.text
    execution = started.json()["execution_id"]
    await until(operator, f"/executions/{execution}/debug", lambda body: body["debug"]["paused"] is not None)
    return execution


def step_error(detail: dict[str, Any], step: str = "call") -> dict[str, Any]:
    return next(s for s in detail["steps"] if s["id"] == step)["error"]


async def test_the_recipe_is_refused_for_operators_and_the_secret_never_leaves(
    api_server: ApiServer, victim: TestServer, attacker: TestServer
) -> None:
    async with api_server.client(Role.ADMIN) as admin:
        _, definition = await setup(admin, victim, CALL)
    async with api_server.client(Role.OPERATOR) as operator:
        execution = await paused_run(operator, definition)
        edit = await operator.post(
            f"/executions/{execution}/debug/variables",
            json={"path": "input.url", "value": f"{attacker.url}/"},
        )
        assert edit.status_code == 403, edit.text
        assert edit.headers["content-type"].startswith("application/problem+json")
        problem = edit.json()
        assert problem["rule"] == "connection_edit" and problem["connection"]
        assert "needs the admin role" in problem["detail"]
        # Any variable, not only the input, while paused at that step.
        other = await operator.post(
            f"/executions/{execution}/debug/variables", json={"path": "inputs.x", "value": f"{attacker.url}/"}
        )
        assert other.status_code == 403, other.text
        go = await operator.post(f"/executions/{execution}/debug/commands", json={"action": "continue"})
        assert go.status_code == 200, go.text
        detail = await until(operator, f"/executions/{execution}", lambda body: body["status"] != "running")
    assert detail["status"] == "completed", detail
    assert victim.calls("/me")[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert stolen(attacker) == []


async def test_an_admins_edit_to_another_origin_still_carries_no_secret(
    api_server: ApiServer, victim: TestServer, attacker: TestServer
) -> None:
    async with api_server.client(Role.ADMIN) as admin:
        connection, definition = await setup(admin, victim, CALL)
        execution = await paused_run(admin, definition)
        edit = await admin.post(
            f"/executions/{execution}/debug/variables",
            json={"path": "input.url", "value": f"{attacker.url}/"},
        )
        assert edit.status_code == 200, edit.text  # admins may edit
        await admin.post(f"/executions/{execution}/debug/commands", json={"action": "continue"})
        detail = await until(admin, f"/executions/{execution}", lambda body: body["status"] != "running")
    assert detail["status"] == "failed", detail
    error = step_error(detail)
    assert error["category"] == "policy" and not error["retryable"]
    assert "(rule connection_origin)" in error["message"] and connection in error["message"]
    assert stolen(attacker) == [] and victim.requests == []


async def test_a_url_from_run_parameters_cannot_take_the_secret_elsewhere(
    api_server: ApiServer, victim: TestServer, attacker: TestServer
) -> None:
    steps = """  - id: call
    kind: http
    connection: {conn}
    with: {{url: "${{ .inputs.url }}"}}
"""
    inputs = "inputs: {type: object, properties: {url: {type: string}}}\n"
    async with api_server.client(Role.ADMIN) as admin:
        _, definition = await setup(admin, victim, steps, inputs)
    async with api_server.client(Role.OPERATOR) as operator:
        good = await operator.post(
            f"/definitions/{definition}/runs", json={"params": {"url": f"{victim.url}/me"}}
        )
        bad = await operator.post(
            f"/definitions/{definition}/runs", json={"params": {"url": f"{attacker.url}/x"}}
        )
        assert good.status_code == bad.status_code == 202, bad.text
        done = await until(
            operator, f"/executions/{good.json()['execution_id']}", lambda b: b["status"] != "running"
        )
        failed = await until(
            operator, f"/executions/{bad.json()['execution_id']}", lambda b: b["status"] != "running"
        )
    assert done["status"] == "completed" and failed["status"] == "failed"
    assert "(rule connection_origin)" in step_error(failed)["message"]
    assert stolen(attacker) == []


async def test_an_edited_input_cannot_name_a_connection_for_a_step_without_one(
    api_server: ApiServer, victim: TestServer, attacker: TestServer
) -> None:
    steps = """  - id: plain
    kind: http
    with: {{url: "{url}/me"}}
  - id: call
    kind: http
    needs: [plain]
    connection: {conn}
    with: {{url: "{url}/me"}}
"""
    async with api_server.client(Role.ADMIN) as admin:
        connection, definition = await setup(admin, victim, steps)
    async with api_server.client(Role.OPERATOR) as operator:
        execution = await paused_run(operator, definition, step="plain")
        for path, value in (("input.connection", connection), ("input.url", f"{attacker.url}/")):
            edit = await operator.post(
                f"/executions/{execution}/debug/variables", json={"path": path, "value": value}
            )
            assert edit.status_code == 200, edit.text  # the paused step has no connection: edits are allowed
        await operator.post(f"/executions/{execution}/debug/commands", json={"action": "continue"})
        detail = await until(operator, f"/executions/{execution}", lambda body: body["status"] != "running")
    error = step_error(detail, "plain")
    assert error["category"] == "policy" and "(rule connection_binding)" in error["message"]
    assert stolen(attacker) == []


async def test_a_recovery_retry_with_an_edited_input_is_refused_for_operators(
    api_server: ApiServer, victim: TestServer, attacker: TestServer
) -> None:
    steps = """  - id: call
    kind: http
    connection: {conn}
    with: {{url: "{url}/broken"}}
    retry: {{max_attempts: 1}}
    on_error: pause
"""
    async with api_server.client(Role.ADMIN) as admin:
        _, definition = await setup(admin, victim, steps)
    hijack = {"step": "call", "action": "retry", "input": {"url": f"{attacker.url}/"}}
    async with api_server.client(Role.OPERATOR) as operator:
        started = await operator.post(f"/definitions/{definition}/runs", json={})
        execution = started.json()["execution_id"]
        await until(operator, f"/executions/{execution}/debug", lambda body: body["awaiting_decision"])
        refused = await operator.post(f"/executions/{execution}/recovery/decision", json=hijack)
        assert refused.status_code == 403 and refused.json()["rule"] == "connection_edit", refused.text
        plain_retry = await operator.post(
            f"/executions/{execution}/recovery/decision", json={"step": "call", "action": "retry"}
        )
        assert plain_retry.status_code == 200, plain_retry.text  # retrying as it was stays allowed
        await until(operator, f"/executions/{execution}/debug", lambda body: body["awaiting_decision"])
    async with api_server.client(Role.ADMIN) as admin:
        allowed = await admin.post(f"/executions/{execution}/recovery/decision", json=hijack)
        assert allowed.status_code == 200, allowed.text
        await until(admin, f"/executions/{execution}/debug", lambda body: body["awaiting_decision"])
        state = (await admin.get(f"/executions/{execution}")).json()
        await admin.post(
            f"/executions/{execution}/recovery/decision", json={"step": "call", "action": "fail"}
        )
    assert "(rule connection_origin)" in step_error(state)["message"]
    assert len(victim.calls("/broken")) == 2
    assert stolen(attacker) == []


async def test_swapping_the_stored_connection_behind_a_declared_one_needs_the_admin_role(
    api_server: ApiServer, victim: TestServer
) -> None:
    async with api_server.client(Role.ADMIN) as admin:
        connection, definition = await setup(admin, victim, CALL)
        other, _ = await setup(admin, victim, CALL)
        preset = await admin.post(
            "/presets",
            json={
                "definition_id": definition,
                "name": f"p-{uuid.uuid4().hex[:6]}",
                "connections": {connection: other},
            },
        )
        assert preset.status_code == 201, preset.text
    async with api_server.client(Role.OPERATOR) as operator:
        direct = await operator.post(
            f"/definitions/{definition}/runs", json={"connections": {connection: other}}
        )
        via_preset = await operator.post(
            f"/definitions/{definition}/runs", json={"preset_id": preset.json()["id"]}
        )
        same = await operator.post(
            f"/definitions/{definition}/runs", json={"connections": {connection: connection}}
        )
    assert direct.status_code == via_preset.status_code == 403, (direct.text, via_preset.text)
    assert direct.json()["rule"] == "connection_swap"
    assert same.status_code == 202, same.text  # naming the declared connection itself is no swap
