"""Executions through the API: history lists, statistics, export, bulk actions, detail, payloads,
approvals and control — all read from a real Temporal server."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError

from rte.config import Settings
from rte.executions import start_execution
from rte.store import Store
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.support.http_server import Reply, TestServer
from worker.main import build_worker
from workflows.compiler import compile_source

QUICK = """
id: {id}
inputs: {{type: object, properties: {{fail: {{type: boolean, default: false}}}}}}
steps:
  - id: check
    kind: set
    with: {{ok: "${{ .inputs.fail | not }}"}}
  - id: boom
    kind: python
    with: {{function: fail_on, args: {{value: 1, bad: "${{ if .inputs.fail then [1] else [] end }}"}}}}
    retry: {{max_attempts: 1}}
"""

APPROVAL = """
id: {id}
steps:
  - id: prepare
    kind: set
    with: {{n: 1}}
  - id: sign_off
    kind: approval
    needs: [prepare]
    with: {{message: Ship it?}}
outputs: "${{ .steps.sign_off.output }}"
"""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(check: Callable[[], Awaitable[Any]]) -> Any:
    """Visibility and workflow state trail the action that changed them by a little."""
    deadline = time.monotonic() + 15
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


async def define(api_server: ApiServer, text: str) -> None:
    async with api_server.client(Role.ADMIN) as admin:
        response = await admin.post("/definitions", json={"source": text})
        assert response.status_code in (200, 201), response.text


async def start(http: httpx.AsyncClient, definition_id: str, params: dict[str, Any] | None = None) -> str:
    response = await http.post(f"/definitions/{definition_id}/runs", json={"params": params or {}})
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


async def finish(client: Client, execution_id: str) -> None:
    with contextlib.suppress(WorkflowFailureError):
        await client.get_workflow_handle(execution_id).result()


@pytest.fixture
async def quick_runs(api_server: ApiServer, client: Client) -> tuple[str, list[str], list[str]]:
    """A definition with 4 completed executions and 1 failed one, all visible in the lists."""
    definition_id = new_id("hist")
    await define(api_server, QUICK.format(id=definition_id))
    async with api_server.client(Role.OPERATOR) as http:
        completed = [await start(http, definition_id) for _ in range(4)]
        failed = [await start(http, definition_id, {"fail": True})]
        for execution_id in completed + failed:
            await finish(client, execution_id)

        async def all_closed() -> bool:
            page = (await http.get("/executions", params={"definition_id": definition_id})).json()
            return len(page["items"]) == 5 and all(item["status"] != "running" for item in page["items"])

        await eventually(all_closed)
    return definition_id, completed, failed


async def test_the_list_filters_and_pages_with_an_opaque_cursor(
    api_server: ApiServer, quick_runs: tuple[str, list[str], list[str]]
) -> None:
    definition_id, completed, failed = quick_runs
    async with api_server.client(Role.VIEWER) as http:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"definition_id": definition_id, "page_size": 2}
            if cursor:
                params["cursor"] = cursor
            response = await http.get("/executions", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            pages += 1
            seen += [item["execution_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(completed + failed) and pages == 3

        only_failed = (
            await http.get("/executions", params={"definition_id": definition_id, "status": "failed"})
        ).json()
        assert [item["execution_id"] for item in only_failed["items"]] == failed
        item = only_failed["items"][0]
        assert item["definition_version"] == "1" and item["trigger"] == "manual" and item["duration_ms"] >= 0
        assert item["temporal_ui_url"].endswith(f"/workflows/{failed[0]}/{item['run_id']}/history")
        by_prefix = (await http.get("/executions", params={"id_prefix": completed[0]})).json()
        assert [item["execution_id"] for item in by_prefix["items"]] == [completed[0]]
        future = (
            await http.get(
                "/executions",
                params={"definition_id": definition_id, "started_after": "2999-01-01T00:00:00Z"},
            )
        ).json()
        assert future["items"] == []

        first = (
            await http.get("/executions", params={"definition_id": definition_id, "page_size": 2})
        ).json()
        for bad, why in (
            ("%%%not-base64", "not valid base64"),
            ("AAAAAAAAAAAAAAAA", "not issued for these filters"),
        ):
            response = await http.get("/executions", params={"definition_id": definition_id, "cursor": bad})
            assert response.status_code == 400 and why in response.json()["detail"], response.text
        other_filters = await http.get(
            "/executions", params={"status": "failed", "cursor": first["next_cursor"]}
        )
        assert other_filters.status_code == 400
        assert other_filters.headers["content-type"] == "application/problem+json"


async def test_filter_values_are_quoted_and_cannot_change_the_query(api_server: ApiServer) -> None:
    async with api_server.client(Role.VIEWER) as http:
        for prefix in ("x' OR WorkflowId != '", 'x" OR 1=1', "back\\slash"):
            response = await http.get("/executions", params={"id_prefix": prefix})
            assert response.status_code == 200, response.text
            assert response.json()["items"] == []
        injected = await http.get("/executions", params={"definition_id": "a' OR 'b"})
        assert injected.status_code == 422  # ids have a strict pattern


async def test_child_executions_are_hidden_unless_asked_for(api_server: ApiServer, client: Client) -> None:
    definition_id = new_id("kids")
    plan = compile_source(QUICK.format(id=definition_id)).plan
    assert plan is not None
    child = await start_execution(
        client, plan, {}, task_queue=api_server.settings.task_queue, trigger="child"
    )
    await finish(client, child.id)
    async with api_server.client(Role.VIEWER) as http:

        async def listed(include: bool) -> list[str]:
            params = {"definition_id": definition_id, "include_children": str(include).lower()}
            return [
                item["execution_id"]
                for item in (await http.get("/executions", params=params)).json()["items"]
            ]

        assert await eventually(lambda: listed(True)) == [child.id]
        assert await listed(False) == []


async def test_statistics_count_by_status_with_durations_and_a_daily_series(
    api_server: ApiServer, quick_runs: tuple[str, list[str], list[str]]
) -> None:
    definition_id, _completed, _failed = quick_runs
    async with api_server.client(Role.VIEWER) as http:
        stats = (await http.get("/executions/stats", params={"definition_id": definition_id})).json()
    assert stats["total"] == 5 and stats["by_status"] == {"completed": 4, "failed": 1}
    assert stats["success_rate"] == pytest.approx(0.8)
    assert 0 < stats["average_duration_ms"] <= stats["p95_duration_ms"]
    assert sum(day["total"] for day in stats["per_day"]) == 5
    assert stats["sampled"] == 5 and stats["sample_complete"] is True


async def test_export_streams_the_filtered_list_as_csv_and_json(
    api_server: ApiServer, quick_runs: tuple[str, list[str], list[str]]
) -> None:
    definition_id, completed, failed = quick_runs
    async with api_server.client(Role.VIEWER) as http:
        as_csv = await http.get(
            "/executions/export", params={"definition_id": definition_id, "format": "csv"}
        )
        as_json = await http.get(
            "/executions/export",
            params={"definition_id": definition_id, "format": "json", "status": "completed"},
        )
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert sorted(row["execution_id"] for row in rows) == sorted(completed + failed)
    assert {row["status"] for row in rows} == {"completed", "failed"}
    assert sorted(item["execution_id"] for item in as_json.json()) == sorted(completed)


async def test_detail_shows_steps_payloads_data_flow_item_samples_and_the_critical_path(
    api_server: ApiServer, client: Client, http_server: TestServer
) -> None:
    big = {"items": [{"n": index, "text": "x" * 40} for index in range(600)]}  # ~30 KB
    http_server.route("GET", "/big", Reply(200, big))
    definition_id = new_id("detail")
    await define(
        api_server,
        f"""
id: {definition_id}
steps:
  - id: fetch
    kind: http
    timeout: 10s  # short: a local activity, whose result history keeps in a marker
    with: {{url: "{http_server.url}/big"}}
  - id: shape
    kind: set
    needs: [fetch]
    with: {{count: "${{ .steps.fetch.output.items | length }}", all: "${{ .steps.fetch.output.items }}"}}
  - id: add_one
    kind: python
    needs: [fetch]
    for_each: {{items: "${{ [.steps.fetch.output.items[:3][] | .n] }}"}}
    with: {{function: add, args: {{a: "${{ .item }}", b: 1}}}}
outputs: "${{ .steps.add_one.output }}"
""",
    )
    async with api_server.client(Role.OPERATOR) as http:
        execution_id = await start(http, definition_id)
    assert await client.get_workflow_handle(execution_id).result() == [1, 2, 3]
    async with api_server.client(Role.VIEWER) as http:
        detail = (await http.get(f"/executions/{execution_id}")).json()
        steps = {step["id"]: step for step in detail["steps"]}
        assert detail["status"] == "completed" and detail["warnings"] == []
        assert detail["temporal_ui_url"].startswith(api_server.settings.temporal_ui_url)
        fetch = steps["fetch"]
        assert fetch["status"] == "completed" and fetch["attempts"] == 1 and fetch["duration_ms"] >= 0
        assert fetch["output_truncated"] is True and fetch["output"]["_truncated"] is True
        assert fetch["output_bytes"] > 16_384
        assert steps["shape"]["output_truncated"] is True
        flow = {(edge["source"], edge["target"]): edge["bytes"] for edge in detail["data_flow"]}
        assert flow[(fetch["path"], steps["shape"]["path"])] == fetch["output_bytes"]
        assert (fetch["path"], steps["add_one"]["path"]) in flow
        samples = steps["add_one"]["item_samples"]
        assert sorted((sample["index"], sample["output"]) for sample in samples) == [(0, 1), (1, 2), (2, 3)]
        assert steps["add_one"]["items"]["completed"] == 3
        assert detail["critical_path"][0] == fetch["path"]

        full = await http.get(fetch["payload_url"])
        assert full.status_code == 200 and full.json() == big
        request = (await http.get(fetch["payload_url"], params={"part": "input"})).json()
        assert request["url"] == f"{http_server.url}/big"
        shaped = (await http.get(steps["shape"]["payload_url"])).json()
        assert shaped == {"count": 600, "all": big["items"]}
        item = await http.get(steps["add_one"]["payload_url"], params={"item": 2})
        assert item.json() == 3
        for url, params in (
            (f"/executions/{execution_id}/steps/{definition_id}/nope/payload", {}),
            (steps["add_one"]["payload_url"], {"item": 99}),
            (fetch["payload_url"], {"item": 0}),
            ("/executions/no-such-execution/steps/x/payload", {}),
        ):
            missing = await http.get(url, params=params)
            assert missing.status_code == 404, (url, missing.text)
            assert missing.headers["content-type"] == "application/problem+json"


async def wait_for_approval(http: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    async def waiting() -> dict[str, Any] | None:
        detail = (await http.get(f"/executions/{execution_id}")).json()
        return detail if detail.get("waiting_approvals") else None

    return await eventually(waiting)


async def test_approving_and_rejecting_waiting_steps(api_server: ApiServer, client: Client) -> None:
    definition_id = new_id("approve")
    await define(api_server, APPROVAL.format(id=definition_id))
    async with api_server.client(Role.OPERATOR) as http:
        approved_id = await start(http, definition_id)
        rejected_id = await start(http, definition_id)
        detail = await wait_for_approval(http, approved_id)
        assert detail["waiting_approvals"] == [f"{definition_id}/sign_off"]
        sign_off = next(step for step in detail["steps"] if step["id"] == "sign_off")
        assert sign_off["status"] == "waiting" and sign_off["approval"]["message"] == "Ship it?"

        wrong = await http.post(f"/executions/{approved_id}/approve", json={"step": "prepare"})
        assert wrong.status_code == 409 and "not waiting for approval" in wrong.json()["detail"]
        yes = await http.post(
            f"/executions/{approved_id}/approve", json={"step": "sign_off", "comment": "ok"}
        )
        assert yes.status_code == 200, yes.text
        assert yes.json()["by"] == "test operator"
        output = await client.get_workflow_handle(approved_id).result()
        assert output["approved"] is True and output["comment"] == "ok" and output["by"] == "test operator"
        again = await http.post(f"/executions/{approved_id}/approve", json={"step": "sign_off"})
        assert again.status_code == 409 and "completed" in again.json()["detail"]

        await wait_for_approval(http, rejected_id)
        no = await http.post(
            f"/executions/{rejected_id}/reject", json={"step": "sign_off", "comment": "not today"}
        )
        assert no.status_code == 200
        with pytest.raises(WorkflowFailureError) as failure:
            await client.get_workflow_handle(rejected_id).result()
        assert "not today" in str(failure.value.cause)


async def test_a_decision_without_a_worker_is_a_prompt_503(
    api_server: ApiServer, client: Client, store: Store, settings: Settings
) -> None:
    definition_id = new_id("noworker")
    plan = compile_source(APPROVAL.format(id=definition_id)).plan
    assert plan is not None
    task_queue = f"lonely-{uuid.uuid4()}"
    async with build_worker(client, store, settings, task_queue):
        handle = await start_execution(client, plan, {}, task_queue=task_queue)
        async with api_server.client(Role.OPERATOR) as http:
            await wait_for_approval(http, handle.id)
    async with api_server.client(Role.OPERATOR) as http:
        started = time.monotonic()
        response = await http.post(f"/executions/{handle.id}/approve", json={"step": "sign_off"})
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["title"] == "No worker available" and "rte worker" in response.json()["detail"]
        assert elapsed < 10
        assert (
            await http.post(f"/executions/{handle.id}/terminate", json={"reason": "test over"})
        ).status_code == 200


async def test_cancel_terminate_rerun_and_delete_single_executions(
    api_server: ApiServer, client: Client
) -> None:
    definition_id = new_id("control")
    await define(api_server, APPROVAL.format(id=definition_id))
    async with api_server.client(Role.OPERATOR) as http:
        to_cancel, to_terminate = await start(http, definition_id), await start(http, definition_id)
        await wait_for_approval(http, to_cancel)
        assert (await http.post(f"/executions/{to_cancel}/cancel")).status_code == 202
        terminated = await http.post(f"/executions/{to_terminate}/terminate", json={"reason": "wrong input"})
        assert terminated.status_code == 200 and "wrong input" in terminated.json()["message"]

        async def closed(execution_id: str, status: str) -> bool:
            return (await http.get(f"/executions/{execution_id}")).json()["status"] == status

        await eventually(lambda: closed(to_cancel, "cancelled"))
        await eventually(lambda: closed(to_terminate, "terminated"))
        again = await http.post(f"/executions/{to_terminate}/cancel")
        assert again.status_code == 409 and "already terminated" in again.json()["detail"]

        rerun = await http.post(f"/executions/{to_terminate}/rerun")
        assert rerun.status_code == 202, rerun.text
        new_id_ = rerun.json()["new_execution_id"]
        assert new_id_ != to_terminate
        rerun_detail = (await http.get(f"/executions/{new_id_}")).json()
        assert rerun_detail["trigger"] == "retry" and rerun_detail["definition_version"] == "1"
        await http.post(f"/executions/{new_id_}/terminate")

        deleted = await http.delete(f"/executions/{to_cancel}")
        assert deleted.status_code == 200 and "deletion requested" in deleted.json()["message"]
        # Temporal removes it in the background (about 30 s on the dev server): not waited for here.
        assert (await http.delete("/executions/no-such-execution")).status_code == 404
        for verb in ("cancel", "terminate", "rerun"):
            unknown = await http.post(f"/executions/no-such-execution/{verb}")
            assert unknown.status_code == 404 and "no execution with id" in unknown.json()["detail"]


async def test_bulk_actions_by_ids_and_by_filter_answer_per_execution(
    api_server: ApiServer, client: Client, quick_runs: tuple[str, list[str], list[str]]
) -> None:
    definition_id, completed, failed = quick_runs
    waiting_definition = new_id("bulk")
    await define(api_server, APPROVAL.format(id=waiting_definition))
    async with api_server.client(Role.OPERATOR) as http:
        waiting = [await start(http, waiting_definition) for _ in range(2)]
        by_ids = await http.post(
            "/executions/bulk",
            json={"action": "terminate", "ids": [*waiting, "no-such-execution", completed[0]]},
        )
        assert by_ids.status_code == 200, by_ids.text
        result = by_ids.json()
        assert (result["matched"], result["succeeded"], result["failed"]) == (4, 2, 2)
        statuses = {item["execution_id"]: item["status"] for item in result["results"]}
        assert statuses == {waiting[0]: 200, waiting[1]: 200, "no-such-execution": 404, completed[0]: 409}

        retried = await http.post(
            "/executions/bulk",
            json={"action": "retry", "filter": {"definition_id": definition_id, "status": ["failed"]}},
        )
        assert retried.status_code == 200, retried.text
        (only,) = retried.json()["results"]
        assert only["execution_id"] == failed[0] and only["ok"] and only["new_execution_id"]
        neither = await http.post("/executions/bulk", json={"action": "cancel"})
        assert neither.status_code == 422


_DURATION = re.compile(r'"(?:[a-z0-9]+_)*duration_ms":\s*([-0-9.eE+]+)')


async def test_durations_are_answered_to_a_tenth_of_a_millisecond(
    api_server: ApiServer, quick_runs: tuple[str, list[str], list[str]]
) -> None:
    definition_id, completed, _failed = quick_runs
    async with api_server.client(Role.VIEWER) as http:
        answers = [
            await http.get("/executions", params={"definition_id": definition_id}),
            await http.get("/executions/stats", params={"definition_id": definition_id}),
            await http.get(f"/executions/{completed[0]}"),
        ]
    durations = [value for answer in answers for value in _DURATION.findall(answer.text)]
    assert len(durations) >= 5 + 2 + 1, durations  # every listed execution, the stats, the detail
    noisy = [value for value in durations if "e" in value.lower() or len(value.partition(".")[2]) > 1]
    assert noisy == [], noisy
