"""The debugging and recovery API: operator role, breakpoints on start, commands, scope, evaluate,
edits, decisions, resume and bulk retry — through HTTP, on the real stack."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from temporalio.client import Client

from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

SOURCE = """
id: {id}
inputs: {{type: object, properties: {{n: {{type: integer}}}}}}
steps:
  - {{id: a, kind: python, with: {{function: add, args: {{a: "${{ .inputs.n }}", b: 1}}}}}}
  - {{id: b, kind: python, needs: [a], with: {{function: fail_on, args: {{value: "${{ .steps.a.output }}", bad: [2]}}}}, on_error: pause}}
outputs: {{b: "${{ .steps.b.output }}"}}
"""


async def _until(http: httpx.AsyncClient, url: str, check: Any, timeout_s: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await http.get(url)
        if response.status_code == 200 and check(response.json()):
            return response.json()
        assert asyncio.get_running_loop().time() < deadline, response.text
        await asyncio.sleep(0.1)


async def test_debug_and_recovery_through_the_api(api_server: ApiServer, client: Client) -> None:
    definition_id = f"dbg-{uuid.uuid4().hex[:8]}"
    async with api_server.client(Role.ADMIN) as admin:
        saved = await admin.post("/definitions", json={"source": SOURCE.format(id=definition_id)})
        assert saved.status_code in (200, 201), saved.text
    async with api_server.client(Role.VIEWER) as viewer:
        refused = await viewer.get("/executions/anything/debug")
        assert refused.status_code == 403
    async with api_server.client(Role.OPERATOR) as http:
        invalid = await http.post(
            f"/definitions/{definition_id}/runs",
            json={"config": {"breakpoints": [{"step": "ghost"}, {"step": "a", "condition": "env"}]}},
        )
        assert invalid.status_code == 422
        assert [v["path"] for v in invalid.json()["violations"]] == [
            "$.config.breakpoints[0].step",
            "$.config.breakpoints[1].condition",
        ]
        started = await http.post(
            f"/definitions/{definition_id}/runs",
            json={"params": {"n": 1}, "config": {"breakpoints": [{"step": "b"}]}},
        )
        assert started.status_code == 202, started.text
        execution = started.json()["execution_id"]
        debug_url = f"/executions/{execution}/debug"
        view = await _until(http, debug_url, lambda body: body["debug"]["paused"] is not None)
        assert view["execution_status"] == "paused"
        assert view["debug"]["paused"]["step_path"] == f"{definition_id}/b"
        assert view["scope"]["steps"]["a"]["output"] == 2
        query = f"RteDebugState = 'paused' AND WorkflowId = '{execution}'"
        for _ in range(100):  # visibility is eventually consistent
            if [found.id async for found in client.list_workflows(query)]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the paused execution is not listed with RteDebugState = 'paused'")

        evaluated = await http.post(f"{debug_url}/evaluate", json={"expression": ".input.args.value + 1"})
        assert evaluated.json() == {"ok": True, "value": 3, "error": None}
        endless = await http.post(f"{debug_url}/evaluate", json={"expression": "[repeat(1)]"})
        assert endless.status_code == 200 and endless.json()["ok"] is False

        refused = await http.post(f"{debug_url}/commands", json={"action": "run_to", "target": "ghost"})
        assert refused.status_code == 409 and "unknown step 'ghost'" in refused.json()["detail"]

        edited = await http.post(f"{debug_url}/variables", json={"path": "input.args.value", "value": 5})
        assert edited.status_code == 200, edited.text
        audit = edited.json()["debug"]["audit"][-1]
        assert (audit["action"], audit["old"], audit["new"]) == ("edit", 2, 5)

        added = await http.post(f"{debug_url}/breakpoints", json={"step": "a", "when": "after"})
        assert added.status_code == 201 and len(added.json()["debug"]["breakpoints"]) == 2
        disabled = await http.patch(f"{debug_url}/breakpoints/bp2", json={"enabled": False})
        assert disabled.json()["debug"]["breakpoints"][1]["enabled"] is False
        removed = await http.delete(f"{debug_url}/breakpoints/bp2")
        assert len(removed.json()["debug"]["breakpoints"]) == 1

        resumed = await http.post(f"{debug_url}/commands", json={"action": "continue"})
        assert resumed.status_code == 200, resumed.text
        detail = await _until(http, f"/executions/{execution}", lambda body: body["status"] == "completed")
        assert detail["output"] == {"b": 5}

        # on_error: pause through the API: the step fails on 2, the operator fails it, then resumes.
        started = await http.post(f"/definitions/{definition_id}/runs", json={"params": {"n": 1}})
        failing = started.json()["execution_id"]
        await _until(http, f"/executions/{failing}/debug", lambda body: body["awaiting_decision"])
        skipped_wrong = await http.post(
            f"/executions/{failing}/recovery/decision", json={"step": "a", "action": "skip"}
        )
        assert (
            skipped_wrong.status_code == 409
            and "not waiting for a decision" in skipped_wrong.json()["detail"]
        )
        failed = await http.post(
            f"/executions/{failing}/recovery/decision", json={"step": "b", "action": "fail"}
        )
        assert failed.status_code == 200, failed.text
        await _until(http, f"/executions/{failing}", lambda body: body["status"] == "failed")

        resumed = await http.post(f"/executions/{failing}/resume")
        assert resumed.status_code == 202, resumed.text
        assert resumed.json()["new_execution_id"]
        bulk = await http.post(
            "/executions/recovery/bulk", json={"action": "retry", "ids": [failing, "no-such-execution"]}
        )
        assert bulk.status_code == 200, bulk.text
        results = {item["execution_id"]: item for item in bulk.json()["results"]}
        assert results[failing]["ok"] and results[failing]["new_execution_id"]
        assert results["no-such-execution"]["status"] == 404

        replay = await http.get(f"/executions/{execution}/debug/replay", params={"position": 1})
        assert replay.status_code == 200, replay.text
        assert replay.json()["total"] == 2 and replay.json()["frame"]["step_id"] == "b"
        assert replay.json()["frame"]["variables"]["steps"]["a"]["output"] == 2
