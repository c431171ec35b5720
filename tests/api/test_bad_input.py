"""Bad input is a clear 4xx problem and never changes what is stored: malformed JSON, wrong types,
unknown fields, huge bodies, unknown ids, invalid cursors, deep nesting, lone surrogates; and what
once answered a 5xx (issue 9) answers a problem that says what happened and what to do."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from api.errors import RPC_RETRY_AFTER_S, rpc_problem
from api.main import create_app
from rte import json_input
from rte.config import Settings
from rte.executions import start_execution
from rte.store import Store
from rte.store.api_keys import Role
from rte.watch import worker_available
from tests.api.conftest import ApiServer, serve
from tests.support.broken_workflows import StateQueryRaises, TaskFailsAfterSignal
from workflows.compiler import compile_source

ROOT = Path(__file__).resolve().parents[2]

SOURCE = """
id: {id}
steps:
  - id: hello
    kind: set
    with: {{text: hello}}
"""


def assert_problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    for word in words:
        assert word in problem["detail"], (word, problem["detail"])


@pytest.fixture
async def stored(api_server: ApiServer) -> AsyncIterator[dict[str, str]]:
    """A definition, a connection and a preset that the bad requests aim at."""
    suffix = uuid.uuid4().hex[:8]
    names = {"definition": f"bad-{suffix}", "connection": f"conn-{suffix}"}
    async with api_server.client(Role.ADMIN) as http:
        assert (
            await http.post("/definitions", json={"source": SOURCE.format(id=names["definition"])})
        ).status_code == 201
        connection = {
            "type": "bearer",
            "config": {"base_url": "https://a.example"},
            "secret": {"token": "keep-me"},
        }
        assert (await http.put(f"/connections/{names['connection']}", json=connection)).status_code == 200
        preset = await http.post(
            "/presets", json={"definition_id": names["definition"], "name": "kept", "params": {"a": 1}}
        )
        names["preset"] = preset.json()["id"]
    yield names


async def snapshot(http: httpx.AsyncClient, names: dict[str, str]) -> list[object]:
    return [
        (await http.get(f"/definitions/{names['definition']}/versions")).json(),
        (await http.get(f"/definitions/{names['definition']}")).json()["source"],
        (await http.get(f"/connections/{names['connection']}")).json(),
        (await http.get(f"/presets/{names['preset']}")).json(),
    ]


async def test_malformed_json_wrong_types_and_unknown_fields_are_422_problems(
    api_server: ApiServer, stored: dict[str, str], store: Store
) -> None:
    async with api_server.client(Role.ADMIN) as http:
        before = await snapshot(http, stored)
        definition, connection, preset = stored["definition"], stored["connection"], stored["preset"]
        malformed = await http.put(
            f"/connections/{connection}",
            content=b'{"type": "bearer", "secret": {',
            headers={"content-type": "application/json"},
        )
        assert_problem(malformed, 422, "JSON")
        wrong_type = await http.post("/definitions", json={"source": 42})
        assert_problem(wrong_type, 422)
        assert wrong_type.json()["violations"][0]["path"] == "$.source"
        unknown_field = await http.patch(f"/presets/{preset}", json={"params": {}, "colour": "red"})
        assert_problem(unknown_field, 422)
        assert unknown_field.json()["violations"][0]["path"] == "$.colour"
        wrong_nested = await http.patch(f"/presets/{preset}", json={"config": {"timeout_s": "soon"}})
        assert_problem(wrong_nested, 422)
        assert wrong_nested.json()["violations"][0]["path"] == "$.config.timeout_s"
        bad_secret = await http.put(f"/connections/{connection}", json={"type": "bearer", "secret": {}})
        assert_problem(bad_secret, 422, "token")
        broken = await http.put(f"/definitions/{definition}", json={"source": "id: [unclosed"})
        assert_problem(broken, 422)
        not_a_list = await http.post("/executions/bulk", json={"action": "cancel", "ids": "abc"})
        assert_problem(not_a_list, 422)
        # JSON types as the schema says: 0 is not a boolean, "5" not an integer.
        zero = await http.patch(
            f"/presets/{preset}", json={"config": {"breakpoints": [{"step": "hello", "enabled": 0}]}}
        )
        assert_problem(zero, 422)
        assert zero.json()["violations"][0]["path"] == "$.config.breakpoints.0.enabled"
        text = await http.patch(f"/presets/{preset}", json={"config": {"max_concurrency": "5"}})
        assert_problem(text, 422)
        assert text.json()["violations"][0]["path"] == "$.config.max_concurrency"
        assert await snapshot(http, stored) == before
    assert (await store.connections.resolve(connection)).secret == {"token": "keep-me"}


async def test_bodies_over_the_limit_are_413_problems_with_or_without_a_length(
    api_server: ApiServer, stored: dict[str, str]
) -> None:
    limit = api_server.settings.api_max_body_bytes
    huge = b'{"source": "' + b"x" * limit + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 65_536):
            yield huge[start : start + 65_536]

    async with api_server.client(Role.ADMIN) as http:
        before = await snapshot(http, stored)
        declared = await http.put(
            f"/definitions/{stored['definition']}", content=huge, headers={"content-type": "application/json"}
        )
        assert_problem(declared, 413, f"{limit:,} bytes")
        streamed = await http.put(
            f"/definitions/{stored['definition']}",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert_problem(streamed, 413, "limit")
        assert await snapshot(http, stored) == before
        small = await http.post("/compilations", json={"source": SOURCE.format(id="small")})
        assert small.status_code == 201  # the limit leaves ordinary bodies alone


async def test_unknown_ids_are_404_problems_that_name_what_was_not_found(api_server: ApiServer) -> None:
    async with api_server.client(Role.ADMIN) as http:
        for path in (
            "/definitions/no-such-definition",
            "/definitions/no-such-definition/versions",
            "/definitions/no-such-definition/input",
            "/compilations/no-such-compilation",
            "/presets/no-such-preset",
            "/connections/no-such-connection",
            "/executions/no-such-execution",
        ):
            assert_problem(await http.get(path), 404, "no-such-")
        assert_problem(
            await http.post("/definitions/no-such-definition/runs", json={}), 404, "no-such-definition"
        )
        assert_problem(await http.post("/connections/no-such-connection/verify"), 404, "no-such-connection")
        assert_problem(await http.post("/executions/no-such-execution/cancel"), 404, "no-such-execution")
        invalid_id = await http.get("/definitions/Not Valid!")
        assert_problem(invalid_id, 422)


async def test_invalid_cursors_and_filters_are_4xx_problems(api_server: ApiServer) -> None:
    async with api_server.client(Role.VIEWER) as http:
        assert_problem(await http.get("/executions", params={"cursor": "!!!"}), 400, "cursor")
        assert_problem(await http.get("/executions", params={"cursor": "QUJDREVGR0hJSktM"}), 400, "cursor")
        assert_problem(await http.get("/executions", params={"status": "sleeping"}), 422)
        assert_problem(await http.get("/executions", params={"page_size": 0}), 422)
        assert_problem(await http.get("/executions", params={"started_after": "yesterday"}), 422)
        # Date-times are ISO 8601 text, as documented: not Unix seconds, not a bare date.
        for value in ("1700000000", "0.5", "2026-11-28"):
            unix = await http.get("/executions/stats", params={"started_before": value})
            assert_problem(unix, 422, "ISO 8601")
        assert_problem(await http.get("/errors", params={"since": "1700000000"}), 422, "ISO 8601")
        # Log cursors beyond SQL's BIGINT could not be compared in the query (a 500 OverflowError).
        huge = str(2**64)
        assert_problem(await http.get("/executions/any/logs", params={"after_id": huge}), 422)
        stream = await http.get("/executions/any/logs/stream", headers={"Last-Event-ID": huge})
        assert_problem(stream, 422, "not a log line id")
        assert_problem(await http.get("/executions/export", params={"format": "xml"}), 422)


# Server errors found by fuzzing and by hand (issue 9): each is a clear 4xx problem now ------------


def nested(depth: int) -> object:
    """`depth` objects, one inside the other."""
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_start_dates_before_year_1000_filter_and_out_of_range_dates_are_422(
    api_server: ApiServer,
) -> None:
    async with api_server.client(Role.VIEWER) as http:
        # %Y does not zero-pad years below 1000: Temporal refused '78-10-11T…' and the API said 503.
        stats = await http.get("/executions/stats", params={"started_before": "0078-10-11T13:46:47Z"})
        assert stats.status_code == 200, stats.text
        assert stats.json()["total"] == 0
        listed = await http.get("/executions", params={"started_after": "0999-12-31T23:59:59Z"})
        assert listed.status_code == 200, listed.text
        # Year 1 at +01:00 is before year 1 in UTC: it cannot be converted (was a 500 OverflowError).
        for path, name in (
            ("/executions", "started_after"),
            ("/errors", "since"),
            ("/executions/x/logs", "until"),
        ):
            out_of_range = await http.get(path, params={name: "0001-01-01T00:00:00+01:00"})
            assert_problem(out_of_range, 422, name, "out of range")


async def test_renaming_a_preset_to_a_name_in_use_is_a_409_that_changes_nothing(
    api_server: ApiServer, stored: dict[str, str]
) -> None:
    async with api_server.client(Role.OPERATOR) as http:
        other = await http.post("/presets", json={"definition_id": stored["definition"], "name": "other"})
        assert other.status_code == 201, other.text
        renamed = await http.patch(f"/presets/{other.json()['id']}", json={"name": "kept"})
        assert_problem(renamed, 409, "already has a preset named 'kept'")
        assert (await http.get(f"/presets/{other.json()['id']}")).json()["name"] == "other"
        assert (await http.get(f"/presets/{stored['preset']}")).json()["name"] == "kept"


async def test_params_nested_too_deeply_are_422_problems_naming_where(
    api_server: ApiServer, stored: dict[str, str]
) -> None:
    runs = f"/definitions/{stored['definition']}/runs"
    async with api_server.client(Role.OPERATOR) as http:
        for depth in (300, 900, 10_000):  # 300: "maximum serialization depth"; 900: RecursionError
            body = json.dumps({"params": nested(depth)}) if depth < 900 else deep_json(depth)
            refused = await http.post(runs, content=body, headers={"content-type": "application/json"})
            assert_problem(refused, 422, "nested too deeply")
            assert refused.json()["violations"][0]["path"].startswith("$")
        preset = await http.post(
            "/presets", json={"definition_id": stored["definition"], "name": "deep", "params": nested(100)}
        )
        assert_problem(preset, 422, "$.params.a.a")
        # Everything up to the limit still runs, to the end.
        deepest = nested(json_input.MAX_DEPTH - 1)
        started = await http.post(runs, json={"params": deepest})
        assert started.status_code == 202, started.text
        execution = await wait_closed(http, started.json()["execution_id"])
        assert execution["status"] == "completed", execution
        assert execution["params"] == deepest


def deep_json(depth: int) -> str:
    # Built as text: json.dumps itself recurses too deep for 10,000 levels.
    return '{"params": ' + '{"a": ' * depth + '"leaf"' + "}" * depth + "}"


async def wait_closed(http: httpx.AsyncClient, execution_id: str) -> dict[str, object]:
    for _ in range(300):
        detail = (await http.get(f"/executions/{execution_id}")).json()
        if detail["status"] != "running":
            return detail
        await asyncio.sleep(0.1)
    raise AssertionError(f"{execution_id} is still running")


async def test_lone_surrogates_are_422_problems_and_pairs_are_text(
    api_server: ApiServer, stored: dict[str, str]
) -> None:
    runs = f"/definitions/{stored['definition']}/runs"
    json_headers = {"content-type": "application/json"}
    async with api_server.client(Role.OPERATOR) as http:
        escaped = await http.post(runs, content=rb'{"params": {"a": "x\ud800"}}', headers=json_headers)
        assert_problem(escaped, 422, "lone UTF-16 surrogate")
        assert escaped.json()["violations"] == [
            {"path": "$.params.a", "message": escaped.json()["violations"][0]["message"]}
        ]
        in_a_key = await http.post(runs, content=rb'{"params": {"\udfff": 1}}', headers=json_headers)
        assert_problem(in_a_key, 422, "surrogate")
        raw = await http.post(runs, content=b'{"params": {"a": "\xed\xa0\x80"}}', headers=json_headers)
        assert_problem(raw, 422, "surrogate")
        in_a_preset = await http.patch(
            f"/presets/{stored['preset']}", content=rb'{"params": {"b": ["\ud83d"]}}', headers=json_headers
        )
        assert_problem(in_a_preset, 422, "$.params.b[0]")
        assert (await http.get(f"/presets/{stored['preset']}")).json()["params"] == {"a": 1}
        pair = await http.post(runs, content=rb'{"params": {"a": "\ud83d\ude00"}}', headers=json_headers)
        assert pair.status_code == 202, pair.text  # a proper pair is one character (😀)


async def test_rte_run_refuses_input_nested_10000_deep_with_a_message_and_exit_2(
    settings: Settings, tmp_path: Path
) -> None:
    definition = tmp_path / "flow.yaml"
    definition.write_text(SOURCE.format(id="deep-input"))
    (tmp_path / "deep.json").write_text(deep_json(10_000).removeprefix('{"params": ').removesuffix("}"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rte", "run", str(definition), "--input", f"@{tmp_path / 'deep.json'}",
        env=os.environ | {"RTE_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 2, stderr.decode()
    message = stderr.decode()
    assert "--input is refused at $: nested too deeply" in message
    assert "Traceback" not in message and not stdout


async def test_405_answers_say_which_methods_are_allowed(api_server: ApiServer) -> None:
    async with api_server.client(Role.ADMIN) as http:
        for method, path, allowed in (
            ("PUT", "/health", {"GET"}),
            # The statistics, not an execution named "stats" (DELETE /executions/{execution_id}).
            ("POST", "/executions/stats", {"GET"}),
            ("GET", "/executions/bulk", {"POST"}),
            ("PATCH", "/definitions", {"GET", "POST"}),
        ):
            answer = await http.request(method, path)
            assert_problem(answer, 405)
            assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed


async def test_a_bug_answers_a_logged_500_problem_and_keeps_the_connection(
    api_settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(api_settings, store)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug on purpose")

    with serve(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with caplog.at_level(logging.ERROR), socket.create_connection((host, int(port)), timeout=30) as conn:
            reader = conn.makefile("rb")
            status, headers, body = http_exchange(conn, reader, "/boom")
            assert status == 500 and headers["content-type"] == "application/problem+json"
            assert json.loads(body) == {
                "type": "about:blank",
                "title": "Internal error",
                "status": 500,
                "detail": "an unexpected error occurred; it has been logged",
                "instance": "/boom",
            }
            # The same connection still answers: the server did not drop it after the 500.
            status, _headers, body = http_exchange(conn, reader, "/health")
            assert status == 200, body
    logged = [record for record in caplog.records if record.exc_info and record.name == "rte.api"]
    assert len(logged) == 1 and "GET /boom" in logged[0].getMessage()
    assert "a bug on purpose" in str(logged[0].exc_info[1])  # type: ignore[index]
    assert not [record for record in caplog.records if "Exception in ASGI application" in record.getMessage()]


def http_exchange(conn: socket.socket, reader: object, path: str) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a kept-alive connection; the status, headers and body of the answer."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\n\r\n".encode())
    status_line = reader.readline()  # type: ignore[attr-defined]
    assert status_line, f"the server closed the connection instead of answering GET {path}"
    headers: dict[str, str] = {}
    while (line := reader.readline().decode().strip()) != "":  # type: ignore[attr-defined]
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))  # type: ignore[attr-defined]
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (RPCStatusCode.INVALID_ARGUMENT, 400),
        (RPCStatusCode.OUT_OF_RANGE, 400),
        (RPCStatusCode.NOT_FOUND, 404),
        (RPCStatusCode.ALREADY_EXISTS, 409),
        (RPCStatusCode.FAILED_PRECONDITION, 409),
        (RPCStatusCode.ABORTED, 409),
        (RPCStatusCode.RESOURCE_EXHAUSTED, 429),
        (RPCStatusCode.UNAVAILABLE, 503),
        (RPCStatusCode.DEADLINE_EXCEEDED, 503),
        (RPCStatusCode.INTERNAL, 503),
        (RPCStatusCode.PERMISSION_DENIED, 503),
    ],
)
def test_temporal_rpc_errors_are_answered_by_what_their_status_means(
    code: RPCStatusCode, status: int
) -> None:
    problem = rpc_problem(RPCError("what Temporal said", code, b""), "listing executions failed")
    assert problem.status == status
    assert problem.detail.startswith("listing executions failed: what Temporal said")
    if status in (429, 503) and code != RPCStatusCode.PERMISSION_DENIED:
        assert problem.headers == {"Retry-After": str(RPC_RETRY_AFTER_S)}


@asynccontextmanager
async def broken_execution(
    client: Client, workflow: type, source: str = SOURCE.format(id="broken")
) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """An execution of the engine's workflow type on a worker running `workflow` instead."""
    task_queue = f"broken-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[workflow]):
        plan = compile_source(source, "broken.yaml").plan
        assert plan is not None
        handle = await start_execution(client, plan, {}, task_queue=task_queue)
        try:
            # Ready as the API sees it: the worker has polled, and the first workflow task is done.
            for _ in range(300):
                description = await handle.describe()
                first_task_done = not description.raw_description.HasField("pending_workflow_task")
                if first_task_done and await worker_available(client, task_queue):
                    break
                await asyncio.sleep(0.1)
            yield handle
        finally:
            await handle.terminate("test over")


async def test_a_failing_state_query_is_a_clear_problem_not_a_500(
    api_server: ApiServer, client: Client
) -> None:
    async with broken_execution(client, StateQueryRaises) as handle, api_server.client(Role.VIEWER) as http:
        state = await http.get(f"/executions/{handle.id}/state")
        assert_problem(state, 409, "the execution's code raised", "the state cannot be built")
        # The detail still shows what Temporal knows, and says why step progress is missing.
        detail = await http.get(f"/executions/{handle.id}")
        assert detail.status_code == 200, detail.text
        assert detail.json()["status"] == "running"
        assert any("the state cannot be built" in warning for warning in detail.json()["warnings"])
        payload = await http.get(f"/executions/{handle.id}/steps/hello/payload")
        assert_problem(payload, 404, "the state cannot be built")
        async with http.stream("GET", f"/executions/{handle.id}/events") as stream:
            assert stream.status_code == 200
            text = (await stream.aread()).decode()  # the stream ends after its error event
        assert "event: error" in text and "State unavailable" in text


async def test_an_execution_whose_workflow_task_keeps_failing_is_a_409_stuck(
    api_server: ApiServer, client: Client
) -> None:
    async with (
        broken_execution(client, TaskFailsAfterSignal) as handle,
        api_server.client(Role.OPERATOR) as http,
    ):
        await handle.signal("break")
        # Temporal refuses updates as "Workflow Task in failed state" from the third attempt (~10 s);
        # before that, the update and the query wait for the task and time out.
        for _ in range(600):
            description = await handle.describe()
            if description.raw_description.pending_workflow_task.attempt >= 3:
                break
            await asyncio.sleep(0.1)
        approve = await http.post(f"/executions/{handle.id}/approve", json={"step": "hello"})
        assert_problem(approve, 409, "Workflow Task in failed state", "workflow task keeps failing")
        assert approve.json()["title"] == "Execution stuck"
        state = await http.get(f"/executions/{handle.id}/state")  # the query times out: a stuck task
        assert_problem(state, 409, "workflow task keeps failing")
        assert state.json()["title"] == "Execution stuck"
