"""Error analysis end to end: executions fail in different ways on the real dev server, and the API
groups them into patterns with counts, trend and suggestions, and applies a retry."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from temporalio.client import Client

from rte.executions import outcome, start_execution
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.support.http_server import Reply, TestServer
from workflows.compiler import compile_source

TOKEN = "tok-analysis-SECRET-9931"

CALL = """
id: {id}
connections: [{conn}]
inputs: {{type: object, properties: {{path: {{type: string}}}}}}
steps:
  - id: call
    kind: http
    connection: {conn}
    with: {{url: "${{ .inputs.path }}"}}
    retry: {{max_attempts: 2, initial_interval: 100ms}}
"""

SLOW = """
id: {id}
steps:
  - id: call
    kind: http
    with: {{url: "{url}/slow", timeout_s: 0.3}}
    retry: {{max_attempts: 1}}
"""

CALC = """
id: {id}
inputs: {{type: object, properties: {{value: {{type: string}}}}}}
steps:
  - id: parse
    kind: transform
    with: {{jq: ".inputs.value | tonumber"}}
"""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def define(http: httpx.AsyncClient, source: str) -> Any:
    answer = await http.post("/definitions", json={"source": source, "filename": "d.yaml"})
    assert answer.status_code in (200, 201), answer.text
    compilation = compile_source(source, "d.yaml")
    assert compilation.plan is not None
    return compilation.plan


async def run(client: Client, api_server: ApiServer, plan: Any, params: dict[str, Any]) -> tuple[str, bool]:
    handle = await start_execution(client, plan, params, task_queue=api_server.settings.task_queue)
    ok, _result = await outcome(handle)
    return handle.id, ok


async def patterns(
    http: httpx.AsyncClient, workflow: str, expect: str | None = None
) -> dict[str, dict[str, Any]]:
    """The workflow's patterns by category; waits briefly for `expect` (visibility trails a run)."""
    for _ in range(50):
        answer = await http.get("/errors/patterns", params={"workflow": workflow, "window": "1h"})
        assert answer.status_code == 200, answer.text
        found = {pattern["category"]: pattern for pattern in answer.json()["patterns"]}
        if expect is None or expect in found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {expect} pattern for {workflow}: {found}")


async def test_failures_form_patterns_with_counts_trend_suggestions_and_redacted_excerpts(
    api_server: ApiServer, client: Client, http_server: TestServer
) -> None:
    conn, api, slow, calc = new_id("conn"), new_id("errs-api"), new_id("errs-slow"), new_id("errs-calc")
    http_server.route("GET", "/flaky", Reply(503, {"error": "busy"}), Reply(200, {"ok": True}))
    http_server.route("GET", "/limited", Reply(429, {"error": "slow down"}, headers={"Retry-After": "0"}))
    http_server.route("GET", "/secret", Reply(401, {"error": f"token {TOKEN} was revoked"}))
    http_server.route("GET", "/missing", Reply(404, {"error": "no such order"}))
    http_server.route("GET", "/slow", Reply(200, {"ok": True}, delay_s=1.5))
    http_server.route("GET", "/", Reply(401, {"error": "who are you"}))
    async with api_server.client(Role.ADMIN) as admin, api_server.client(Role.VIEWER) as viewer:
        answer = await admin.put(
            f"/connections/{conn}",
            json={"type": "bearer", "config": {"base_url": http_server.url}, "secret": {"token": TOKEN}},
        )
        assert answer.status_code == 200, answer.text
        api_plan = await define(admin, CALL.format(id=api, conn=conn))
        slow_plan = await define(admin, SLOW.format(id=slow, url=http_server.url))
        calc_plan = await define(admin, CALC.format(id=calc))

        runs = await asyncio.gather(
            run(client, api_server, api_plan, {"path": "/flaky"}),
            run(client, api_server, api_plan, {"path": "/limited"}),
            run(client, api_server, api_plan, {"path": "/limited"}),
            run(client, api_server, api_plan, {"path": "/secret"}),
            run(client, api_server, api_plan, {"path": "/missing"}),
            run(client, api_server, slow_plan, {}),
            run(client, api_server, calc_plan, {"value": "abc"}),
            run(client, api_server, calc_plan, {"value": "x1"}),
        )
        assert [ok for _id, ok in runs] == [True, False, False, False, False, False, False, False]

        found = await patterns(viewer, api)
        assert set(found) == {"http_5xx", "rate_limit", "auth", "http_4xx"}
        # 503 then success: one failed attempt, recovered by the retry in the same execution.
        flaky = found["http_5xx"]
        assert (flaky["count"], flaky["recovered"], flaky["target"]) == (1, 1, conn)
        assert flaky["suggestions"][0]["id"] == "retry"
        assert flaky["suggestions"][0]["confidence"] == round((1 + 2 * 0.7) / 3, 3)
        # 429 twice per execution, two executions; both still failing.
        limited = found["rate_limit"]
        assert (limited["count"], limited["execution_count"], limited["recovered"]) == (4, 2, 0)
        assert sorted(limited["executions"]) == sorted([runs[1][0], runs[2][0]])
        assert limited["first_seen"] <= limited["last_seen"]
        assert limited["trend"]["bucket"] == "hour" and limited["trend"]["direction"] == "new"
        assert sum(point["count"] for point in limited["trend"]["counts"]) == 4
        assert limited["suggestions"][0]["id"] == "lower_concurrency"
        assert "429" in limited["message"] and "/<path>" in limited["message"]
        # 401 and 404 are not retried: one attempt each.
        assert found["auth"]["count"] == 1 and not found["auth"]["retryable"]
        assert found["auth"]["suggestions"][0]["id"] == "verify_connection"
        assert "retry" not in [s["id"] for s in found["auth"]["suggestions"]]
        assert found["http_4xx"]["suggestions"][0]["id"] == "fix_definition"

        # Detail: samples keep the response excerpt, with the connection's secret redacted.
        detail = await viewer.get(f"/errors/patterns/{found['auth']['fingerprint']}")
        assert detail.status_code == 200, detail.text
        sample = detail.json()["samples"][0]
        assert "revoked" in sample["details"]["body_excerpt"]
        assert TOKEN not in detail.text and "***" in sample["details"]["body_excerpt"]
        assert sample["http_status"] == 401 and sample["execution_id"] == runs[3][0]

        # A timeout, and an expression error that never reached an activity (read from Temporal).
        timeout = (await patterns(viewer, slow, "timeout"))["timeout"]
        assert timeout["kind"] == "http" and "raise_timeout" in [s["id"] for s in timeout["suggestions"]]
        expression = (await patterns(viewer, calc, "expression"))["expression"]
        assert (expression["count"], expression["kind"], expression["retryable"]) == (2, "transform", False)
        assert expression["steps"] == [f"{calc}/parse"]
        assert expression["suggestions"][0]["id"] == "fix_definition"

        # GET /errors lists failures with filters; per execution, the final failure gets suggestions.
        listed = await viewer.get(
            "/errors", params={"workflow": api, "category": "rate_limit", "window": "1h"}
        )
        assert listed.status_code == 200
        assert {item["category"] for item in listed.json()["items"]} == {"rate_limit"}
        assert len(listed.json()["items"]) == 4
        mine = await viewer.get(f"/executions/{runs[3][0]}/errors")
        assert mine.status_code == 200, mine.text
        assert [f["category"] for f in mine.json()["failures"]] == ["auth"]
        assert mine.json()["suggestions"][0]["id"] == "verify_connection"

        # Applying: verify the connection (it refuses), and compute then save a longer timeout.
        async with api_server.client(Role.OPERATOR) as operator:
            verified = await operator.post(
                f"/errors/patterns/{found['auth']['fingerprint']}/apply",
                json={"suggestion": "verify_connection"},
            )
            assert verified.status_code == 200, verified.text
            (result,) = verified.json()["results"]
            assert result["target"] == conn and not result["ok"] and "refused" in result["message"]
            dry = await operator.post(
                f"/errors/patterns/{timeout['fingerprint']}/apply", json={"suggestion": "raise_timeout"}
            )
            assert dry.status_code == 200, dry.text
            (change,) = dry.json()["results"]
            assert change["patch"][0] == {
                "op": "replace",
                "path": "/steps/0/with/timeout_s",
                "value": 0.6,
                "old": 0.3,
            }
            assert change["definition_version"] is None
            refused = await operator.post(
                f"/errors/patterns/{expression['fingerprint']}/apply", json={"suggestion": "retry"}
            )
            assert refused.status_code == 409
        saved = await admin.post(
            f"/errors/patterns/{timeout['fingerprint']}/apply",
            json={"suggestion": "raise_timeout", "apply": True},
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["results"][0]["definition_version"] == "2"
        versions = await viewer.get(f"/definitions/{slow}/versions")
        assert [v["version"] for v in versions.json()] == ["1", "2"]
        latest = await viewer.get(f"/definitions/{slow}")
        assert latest.json()["plan"]["root"]["steps"][0]["with"]["timeout_s"] == 0.6


async def test_applying_retry_restarts_failed_executions_that_succeed_once_the_service_recovers(
    api_server: ApiServer, client: Client, http_server: TestServer
) -> None:
    conn, api = new_id("conn"), new_id("errs-down")
    http_server.route("GET", "/down", Reply(502, {"error": "upstream down"}))
    async with api_server.client(Role.ADMIN) as admin, api_server.client(Role.OPERATOR) as operator:
        answer = await admin.put(
            f"/connections/{conn}",
            json={"type": "bearer", "config": {"base_url": http_server.url}, "secret": {"token": TOKEN}},
        )
        assert answer.status_code == 200
        plan = await define(admin, CALL.format(id=api, conn=conn))
        runs = await asyncio.gather(*(run(client, api_server, plan, {"path": "/down"}) for _ in range(2)))
        assert [ok for _id, ok in runs] == [False, False]
        before = (await patterns(operator, api))["http_5xx"]
        assert (before["count"], before["recovered"]) == (4, 0)

        http_server.route("GET", "/down", Reply(200, {"ok": True}))
        applied = await operator.post(
            f"/errors/patterns/{before['fingerprint']}/apply", json={"suggestion": "retry"}
        )
        assert applied.status_code == 200, applied.text
        body = applied.json()
        assert body["applied"] and sorted(r["target"] for r in body["results"]) == sorted(i for i, _ in runs)
        new_ids = [r["new_execution_id"] for r in body["results"]]
        assert all(r["ok"] for r in body["results"]) and all(new_ids)
        for new_id_ in new_ids:
            ok, _result = await outcome(client.get_workflow_handle(new_id_))
            assert ok

        # The retries succeeded, so the same failures now count as recovered: retry confidence rises.
        after = (await patterns(operator, api))["http_5xx"]
        assert after["recovered"] == 4
        retry_before = next(s for s in before["suggestions"] if s["id"] == "retry")["confidence"]
        retry_after = next(s for s in after["suggestions"] if s["id"] == "retry")["confidence"]
        assert retry_after > retry_before
