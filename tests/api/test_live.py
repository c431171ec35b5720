"""Live monitor over real HTTP: execution state, the per-execution SSE stream (read by a real SSE
client against uvicorn), resuming with Last-Event-ID, keep-alives, and the dashboard stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api.routes import live
from rte.executions import start_execution
from rte.store.api_keys import Role
from rte.watch import open_watches
from tests.api.conftest import ApiServer
from tests.support.http_server import Reply, TestServer
from workflows.compiler import compile_source
from workflows.state import ApprovalDecision


@dataclass
class SseEvent:
    event: str
    id: str | None
    data: Any


@dataclass
class SseStream:
    """A real SSE client: parses `id:`/`event:`/`data:` lines and keeps `: comment` lines."""

    response: httpx.Response
    comments: list[str] = field(default_factory=list)
    lines: AsyncIterator[str] | None = None

    async def events(self) -> AsyncIterator[SseEvent]:
        """The events from here on; iterate again after a `break` to read on."""
        self.lines = self.lines or self.response.aiter_lines()
        name, event_id, data = "message", None, []
        async for line in self.lines:
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                text = "\n".join(data)
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError:
                    parsed = text
                yield SseEvent(name, event_id, parsed)
                name, event_id, data = "message", None, []


@asynccontextmanager
async def sse(
    server: ApiServer, path: str, role: Role = Role.VIEWER, headers: dict[str, str] | None = None
) -> AsyncIterator[SseStream]:
    async with (
        server.client(role) as http,
        http.stream("GET", path, headers=headers or {}) as response,
    ):
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseStream(response)


async def collect(
    server: ApiServer, path: str, until: str = "execution-complete", headers: dict[str, str] | None = None
) -> list[SseEvent]:
    events: list[SseEvent] = []
    async with sse(server, path, headers=headers) as stream:
        async with asyncio.timeout(30):
            async for event in stream.events():
                events.append(event)
                if event.event == until:
                    break
    return events


async def start(client: Client, server: ApiServer, source: str, params: dict[str, Any] | None = None) -> Any:
    plan = compile_source(source.replace("ID", f"live-{uuid.uuid4().hex[:8]}")).plan
    assert plan is not None
    return await start_execution(client, plan, params or {}, task_queue=server.settings.task_queue)


CHAIN = """
id: ID
steps:
  - {id: a, kind: python, with: {function: slow_double, args: {value: 1, seconds: 0.3}}}
  - {id: b, kind: python, needs: [a], with: {function: slow_double, args: {value: 2, seconds: 0.3}}}
  - {id: c, kind: python, needs: [b], with: {function: slow_double, args: {value: 3, seconds: 0.3}}}
outputs: "${ .steps.c.output }"
"""


async def test_state_shows_a_running_execution_step_by_step(api_server: ApiServer, client: Client) -> None:
    handle = await start(client, api_server, CHAIN)
    async with api_server.client(Role.VIEWER) as http:
        response = await http.get(f"/executions/{handle.id}/state")
        assert response.status_code == 200, response.text
        state = response.json()
        assert state["execution_id"] == handle.id and state["status"] == "running"
        assert [step["id"] for step in state["steps"].values()] == ["a", "b", "c"]
        await handle.result()
        final = (await http.get(f"/executions/{handle.id}/state")).json()
    assert final["status"] == "completed" and final["output"] == 6
    assert all(step["status"] == "completed" and step["ended_at"] for step in final["steps"].values())


async def test_unknown_execution_is_a_404_problem(api_server: ApiServer) -> None:
    async with api_server.client(Role.VIEWER) as http:
        for path in ("/executions/nope-123/state", "/executions/nope-123/events"):
            response = await http.get(path)
            assert response.status_code == 404, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert "no execution 'nope-123'" in response.json()["detail"]


async def test_no_worker_is_a_prompt_503_problem(api_server: ApiServer, client: Client) -> None:
    plan = compile_source(CHAIN.replace("ID", "orphan")).plan
    assert plan is not None
    handle = await start_execution(client, plan, {}, task_queue=f"nobody-{uuid.uuid4()}")
    try:
        async with api_server.client(Role.VIEWER) as http:
            for path in (f"/executions/{handle.id}/state", f"/executions/{handle.id}/events"):
                began = time.monotonic()
                response = await http.get(path)
                assert time.monotonic() - began < 2
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["title"] == "No worker available"
    finally:
        await handle.terminate("test done")


async def test_stream_tells_each_step_start_and_end_with_timestamps(
    api_server: ApiServer, client: Client
) -> None:
    handle = await start(client, api_server, CHAIN)
    events = await collect(api_server, f"/executions/{handle.id}/events")
    names = [(event.event, event.data.get("step", "").rsplit("/", 1)[-1]) for event in events]
    assert names == [
        ("execution-start", ""),
        ("step-start", "a"),
        ("step-complete", "a"),
        ("step-start", "b"),
        ("step-complete", "b"),
        ("step-start", "c"),
        ("step-complete", "c"),
        ("execution-complete", ""),
    ]
    assert len({event.id for event in events}) == len(events)
    assert all(event.data["emitted_at"] and event.data["execution_id"] == handle.id for event in events)
    completed = [event.data for event in events if event.event == "step-complete"]
    assert [data["output"] for data in completed] == [2, 4, 6]
    assert all(data["duration_ms"] >= 300 and data["metrics"]["duration_ms"] >= 300 for data in completed)
    assert events[-1].data["status"] == "completed" and events[-1].data["output"] == 6


async def test_stream_reports_item_progress_up_to_100_percent(api_server: ApiServer, client: Client) -> None:
    handle = await start(
        client,
        api_server,
        """
id: ID
steps:
  - id: each
    kind: python
    for_each: {items: "${ .inputs.values }", concurrency: 2}
    with: {function: slow_double, args: {value: "${ .item }", seconds: 0.2}}
""",
        {"values": [1, 2, 3, 4, 5, 6]},
    )
    events = await collect(api_server, f"/executions/{handle.id}/events")
    progress = [event.data for event in events if event.event == "progress"]
    assert progress, [event.event for event in events]
    assert progress[-1]["processed"] == progress[-1]["total"] == 6 and progress[-1]["percent"] == 100.0
    assert [data["processed"] for data in progress] == sorted({data["processed"] for data in progress})
    assert [event.event for event in events][-2:] == ["step-complete", "execution-complete"]


async def test_stream_reports_retries_then_the_step_error(
    api_server: ApiServer, client: Client, http_server: TestServer
) -> None:
    http_server.route("GET", "/down", Reply(503, {"error": "down"}))
    handle = await start(
        client,
        api_server,
        f"""
id: ID
steps:
  - id: call
    kind: http
    with: {{url: "{http_server.url}/down"}}
    retry: {{max_attempts: 3, initial_interval: 300ms, backoff: 1}}
""",
    )
    events = await collect(api_server, f"/executions/{handle.id}/events")
    names = [event.event for event in events]
    assert names == [
        "execution-start",
        "step-start",
        "step-retry",
        "step-retry",
        "step-error",
        "execution-complete",
    ]
    assert [event.data["attempt"] for event in events if event.event == "step-retry"] == [2, 3]
    error = events[-2].data["error"]
    assert error["category"] == "http_5xx" and "503" in error["message"]
    assert events[-1].data["status"] == "failed"


async def test_stream_says_when_a_step_waits_for_approval(api_server: ApiServer, client: Client) -> None:
    handle = await start(
        client,
        api_server,
        """
id: ID
steps:
  - {id: sign_off, kind: approval, with: {message: "Ship it?", timeout: 1h}}
""",
    )
    events: list[Any] = []
    async with sse(api_server, f"/executions/{handle.id}/events") as stream:
        async with asyncio.timeout(30):
            async for event in stream.events():
                events.append(event)
                if event.event == "waiting":
                    await handle.execute_update(
                        "decide_approval", ApprovalDecision(step="sign_off", approved=True, by="ada")
                    )
                if event.event == "execution-complete":
                    break
    assert [event.event for event in events] == [
        "execution-start",
        "step-start",
        "waiting",
        "step-complete",
        "execution-complete",
    ]
    assert events[2].data["approval"]["message"] == "Ship it?"
    assert events[3].data["output"]["by"] == "ada"


async def test_reconnecting_with_last_event_id_sends_only_what_was_missed(
    api_server: ApiServer, client: Client
) -> None:
    handle = await start(client, api_server, CHAIN)
    path = f"/executions/{handle.id}/events"
    before = await collect(api_server, path, until="step-complete")
    assert [event.event for event in before][-1] == "step-complete"
    await handle.result()  # the rest happens while the client is away
    after = await collect(api_server, path, headers={"Last-Event-ID": before[-1].id or ""})
    replay = await collect(api_server, path)
    assert [(e.event, e.id) for e in before + after] == [(e.event, e.id) for e in replay]
    assert after[0].event == "step-start" and after[0].data["step"].endswith("/b")
    async with api_server.client(Role.VIEWER) as http:
        done = await http.get(path, headers={"Last-Event-ID": replay[-1].id or ""})
        assert done.status_code == 204  # nothing left: an EventSource stops reconnecting


async def test_streams_send_keep_alives_and_share_then_close_the_long_poll(
    api_server: ApiServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "PING_INTERVAL_S", 0.2)
    handle = await start(
        client, api_server, "id: ID\nsteps:\n  - {id: gate, kind: approval, with: {timeout: 1h}}\n"
    )
    path = f"/executions/{handle.id}/events"
    try:
        async with sse(api_server, path) as first, sse(api_server, path) as second:
            for stream in (first, second):
                async with asyncio.timeout(10):
                    async for event in stream.events():
                        if event.event == "waiting":
                            break
            assert open_watches() == 1  # two clients, one history long-poll
            async with asyncio.timeout(1):
                async for _ in first.events():
                    pass  # nothing happens: only keep-alive comments arrive
        pytest.fail("the stream ended while the execution was waiting")
    except TimeoutError:
        pass
    assert len(first.comments) >= 3 and all(comment.startswith("ping") for comment in first.comments)
    for _ in range(100):  # the clients left: the long-poll is cancelled
        if not open_watches():
            break
        await asyncio.sleep(0.05)
    assert open_watches() == 0
    await handle.terminate("test done")


async def test_terminated_execution_ends_its_stream_with_that_status(
    api_server: ApiServer, client: Client
) -> None:
    handle = await start(
        client, api_server, "id: ID\nsteps:\n  - {id: gate, kind: approval, with: {timeout: 1h}}\n"
    )
    events: list[Any] = []
    async with sse(api_server, f"/executions/{handle.id}/events") as stream:
        async with asyncio.timeout(30):
            async for event in stream.events():
                events.append(event)
                if event.event == "waiting":
                    await handle.terminate("operator gave up")
    assert events[-1].event == "execution-complete" and events[-1].data["status"] == "terminated"


async def test_dashboard_stream_reports_new_executions_and_their_status_changes(
    api_server: ApiServer, client: Client
) -> None:
    definition = f"dash-{uuid.uuid4().hex[:8]}"
    plan = compile_source(CHAIN.replace("ID", definition)).plan
    assert plan is not None
    seen: list[dict[str, Any]] = []
    async with sse(api_server, f"/executions/stream?definition_id={definition}") as stream:
        handle = await start_execution(
            client, plan, {}, task_queue=api_server.settings.task_queue, trigger="webhook"
        )
        async with asyncio.timeout(20):
            async for event in stream.events():
                assert event.event == "execution"
                seen.append(event.data)
                if event.data["status"] == "completed":
                    break
    assert {item["execution_id"] for item in seen} == {handle.id}
    assert seen[0]["definition_id"] == definition and seen[0]["trigger"] == "webhook"
    assert seen[-1]["close_time"] is not None and seen[-1]["duration_ms"] > 0
