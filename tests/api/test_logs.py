"""Execution logs over real HTTP: filtered pages with a cursor, the live tail (SSE) of a running
execution, and exports in NDJSON, CSV and plain text."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client

from rte.executions import start_execution
from rte.store import Store
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.api.test_live import SseEvent, sse
from tests.support.http_server import Reply, TestServer
from workflows.compiler import compile_source

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


async def seed(store: Store) -> str:
    """An execution (long gone from Temporal) that left six log lines."""
    execution_id = f"logs-{uuid.uuid4().hex[:8]}"
    lines = [
        ("orders/fetch", "debug", "http", "GET https://crm.example/orders"),
        ("orders/fetch", "warning", "http", "503 Service Unavailable, retrying"),
        ("orders/fetch", "info", "http", "GET https://crm.example/orders → 200"),
        ("orders/score", "info", "function", "scored 3 orders"),
        ("orders/score", "error", "function", 'order 7: "total" is missing, skipped'),
        ("orders/notify", "info", "http", "POST https://crm.example/notes → 201"),
    ]
    await store.logs.add_many(
        [
            {
                "execution_id": execution_id,
                "step_path": step,
                "level": level,
                "source": source,
                "message": message,
                "timestamp": T0 + timedelta(seconds=index),
            }
            for index, (step, level, source, message) in enumerate(lines)
        ]
    )
    return execution_id


async def messages(http: Any, path: str, **params: Any) -> list[str]:
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    return [item["message"] for item in response.json()["items"]]


async def test_logs_filter_by_level_source_text_step_and_time(api_server: ApiServer, store: Store) -> None:
    execution_id = await seed(store)
    path = f"/executions/{execution_id}/logs"
    async with api_server.client(Role.VIEWER) as http:
        assert len(await messages(http, path)) == 6
        assert await messages(http, path, level="warning") == [
            "503 Service Unavailable, retrying",
            'order 7: "total" is missing, skipped',
        ]
        assert await messages(http, path, source="function") == [
            "scored 3 orders",
            'order 7: "total" is missing, skipped',
        ]
        assert await messages(http, path, text="CRM.example/NOTES") == [
            "POST https://crm.example/notes → 201"
        ]
        assert await messages(http, path, step="orders/score", level="error") == [
            'order 7: "total" is missing, skipped'
        ]
        since, until = (T0 + timedelta(seconds=2)).isoformat(), (T0 + timedelta(seconds=4)).isoformat()
        assert await messages(http, path, since=since, until=until) == [
            "GET https://crm.example/orders → 200",
            "scored 3 orders",
        ]
        bad = await http.get(path, params={"level": "loud"})
        assert bad.status_code == 422 and bad.json()["violations"][0]["path"].endswith(".level")


async def test_logs_are_paged_with_an_after_id_cursor(api_server: ApiServer, store: Store) -> None:
    execution_id = await seed(store)
    seen: list[str] = []
    after_id = None
    pages = 0
    async with api_server.client(Role.VIEWER) as http:
        while True:
            params: dict[str, Any] = {"limit": 4} | ({"after_id": after_id} if after_id else {})
            page = (await http.get(f"/executions/{execution_id}/logs", params=params)).json()
            seen += [item["message"] for item in page["items"]]
            pages += 1
            after_id = page["next_after_id"]
            if after_id is None:
                break
    assert pages == 2 and len(seen) == len(set(seen)) == 6


async def test_logs_of_an_unknown_execution_are_a_404_problem(api_server: ApiServer) -> None:
    async with api_server.client(Role.VIEWER) as http:
        for suffix in ("", "/stream", "/export"):
            response = await http.get(f"/executions/never-ran-1/logs{suffix}")
            assert response.status_code == 404, (suffix, response.text)
            assert response.headers["content-type"] == "application/problem+json"


async def test_export_as_ndjson_csv_and_text_with_filters(api_server: ApiServer, store: Store) -> None:
    execution_id = await seed(store)
    path = f"/executions/{execution_id}/logs/export"
    async with api_server.client(Role.VIEWER) as http:
        ndjson = await http.get(path, params={"format": "ndjson"})
        csv_export = await http.get(path, params={"format": "csv", "source": "http"})
        text = await http.get(path, params={"format": "text", "level": "error"})
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert f'filename="{execution_id}-logs.ndjson"' in ndjson.headers["content-disposition"]
    rows = [json.loads(line) for line in ndjson.text.splitlines()]
    assert len(rows) == 6 and rows[0]["step_path"] == "orders/fetch" and rows[0]["level"] == "debug"
    assert csv_export.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(csv_export.text)))
    assert [row["source"] for row in table] == ["http"] * 4
    assert table[1]["message"] == "503 Service Unavailable, retrying" and table[1]["attempt"] == "1"
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == (
        f"{(T0 + timedelta(seconds=4)).isoformat()} ERROR [orders/score #1] function: "
        'order 7: "total" is missing, skipped\n'
    )


async def test_live_tail_follows_a_running_execution_until_it_ends(
    api_server: ApiServer, client: Client, store: Store, http_server: TestServer
) -> None:
    http_server.route("GET", "/flaky", Reply(503, {}), Reply(200, {"ok": True}))
    plan = compile_source(
        f"""
id: tail-{uuid.uuid4().hex[:6]}
steps:
  - id: fetch
    kind: http
    with: {{url: "{http_server.url}/flaky"}}
    retry: {{max_attempts: 3, initial_interval: 200ms}}
  - {{id: wait, kind: python, needs: [fetch], with: {{function: slow_double, args: {{value: 1, seconds: 1.5}}}}}}
"""
    ).plan
    assert plan is not None
    handle = await start_execution(client, plan, {}, task_queue=api_server.settings.task_queue)
    events: list[SseEvent] = []
    injected_at = 0.0
    arrived_after = None
    async with sse(api_server, f"/executions/{handle.id}/logs/stream") as stream:
        async with asyncio.timeout(30):
            async for event in stream.events():
                events.append(event)
                if event.event == "log" and event.data["step_path"].endswith("/fetch") and not injected_at:
                    # A line written while no history event happens (the python step is sleeping).
                    injected_at = time.monotonic()
                    await store.logs.add_many(
                        [{"execution_id": handle.id, "level": "info", "source": "test", "message": "hello"}]
                    )
                if event.event == "log" and event.data["message"] == "hello":
                    arrived_after = time.monotonic() - injected_at
                if event.event == "end":
                    break
    logs = [event.data for event in events if event.event == "log"]
    assert any("attempt 1 failed" in log["message"] and log["level"] == "error" for log in logs)
    assert any("→ 200" in log["message"] and log["attempt"] == 2 for log in logs)
    assert arrived_after is not None and arrived_after < 1.5
    ids = [int(event.id or 0) for event in events if event.event == "log"]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert events[-1].event == "end" and (await handle.describe()).close_time is not None


async def test_live_tail_applies_filters_and_resumes_after_last_event_id(
    api_server: ApiServer, store: Store
) -> None:
    execution_id = await seed(store)
    path = f"/executions/{execution_id}/logs/stream"
    async with sse(api_server, f"{path}?level=info&source=http") as stream:
        first = [event async for event in stream.events()]
    assert [event.event for event in first] == ["log", "log", "log", "end"]
    assert [event.data["message"] for event in first[:3]] == [
        "503 Service Unavailable, retrying",
        "GET https://crm.example/orders → 200",
        "POST https://crm.example/notes → 201",
    ]
    async with sse(api_server, path, headers={"Last-Event-ID": first[0].id or ""}) as stream:
        rest = [event async for event in stream.events()]
    assert [event.data["message"] for event in rest if event.event == "log"] == [
        "GET https://crm.example/orders → 200",
        "scored 3 orders",
        'order 7: "total" is missing, skipped',
        "POST https://crm.example/notes → 201",
    ]


async def test_the_step_filter_takes_a_bare_step_id_and_refuses_an_unknown_step(
    api_server: ApiServer, store: Store
) -> None:
    execution_id = await seed(store)  # gone from Temporal: its steps are the ones its logs name
    path = f"/executions/{execution_id}/logs"
    async with api_server.client(Role.VIEWER) as http:
        assert await messages(http, path, step="score") == await messages(http, path, step="orders/score")
        assert await messages(http, path, step="score") == [
            "scored 3 orders",
            'order 7: "total" is missing, skipped',
        ]
        for suffix in ("", "/export"):
            unknown = await http.get(f"{path}{suffix}", params={"step": "scores"})
            assert unknown.status_code == 422, unknown.text
            assert unknown.headers["content-type"] == "application/problem+json"
            detail = unknown.json()["detail"]
            assert "has no step 'scores'; did you mean 'score'?" in detail
            assert "orders/fetch, orders/notify, orders/score" in detail
            assert unknown.json()["violations"][0]["path"] == "$.query.step"
        async with sse(api_server, f"{path}/stream?step=fetch&level=info") as stream:
            tailed = [event async for event in stream.events()]
    assert [event.data["message"] for event in tailed if event.event == "log"] == [
        "503 Service Unavailable, retrying",
        "GET https://crm.example/orders → 200",
    ]


async def test_the_step_filter_knows_every_step_of_the_plan_even_before_it_logs(
    api_server: ApiServer, client: Client
) -> None:
    plan = compile_source(
        f"""
id: steps-{uuid.uuid4().hex[:6]}
steps:
  - {{id: first, kind: python, with: {{function: noop}}}}
  - {{id: later, kind: approval, needs: [first], with: {{message: never decided in this test}}}}
"""
    ).plan
    assert plan is not None
    handle = await start_execution(client, plan, {}, task_queue=api_server.settings.task_queue)
    try:
        async with api_server.client(Role.VIEWER) as http:
            # `later` has not run, so it logged nothing: an empty page, not an error.
            assert await messages(http, f"/executions/{handle.id}/logs", step="later") == []
            unknown = await http.get(f"/executions/{handle.id}/logs", params={"step": "nope"})
            assert unknown.status_code == 422, unknown.text
            assert (
                f"its steps: {plan.definition_id}/first, {plan.definition_id}/later"
                in unknown.json()["detail"]
            )
    finally:
        await handle.terminate("test over")
