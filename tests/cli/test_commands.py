"""`rte list|status|logs|cancel|terminate|definitions` and the commands the live view hints at, as
people run them: real processes against the session's Temporal dev server and a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from rte.config import Settings
from rte.executions import outcome, start_execution
from tests.conftest import Engine
from tests.debug.support import wait_for, wait_paused
from tests.support.processes import wait_until
from tests.test_cli import ROOT, _env, _rte
from workflows.state import Breakpoint, ExecutionConfig, ExecutionState

FAILING = """
id: {id}
steps:
  - id: boom
    kind: http
    with: {{url: 'http://127.0.0.1:9/x'}}
    retry: {{max_attempts: 1}}
"""
PASSING = "id: {id}\nsteps:\n  - {{id: greet, kind: set, with: {{text: hi}}}}\n"
GATED = """
id: {id}
steps:
  - {{id: sign_off, kind: approval, with: {{message: 'ok?', timeout: 1h}}}}
  - id: boom
    kind: http
    needs: [sign_off]
    with: {{url: 'http://127.0.0.1:9/x'}}
    retry: {{max_attempts: 1}}
"""
DEBUGGED = """
id: {id}
steps:
  - {{id: a, kind: python, with: {{function: add, args: {{a: 1, b: 2}}}}}}
  - {{id: b, kind: python, needs: [a], with: {{function: fail_on, args: {{value: "${{ .steps.a.output }}", bad: [3]}}}}, on_error: pause}}
"""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def listed(client: Client, definition_id: str, count: int) -> None:
    """Visibility is eventually consistent: wait until Temporal lists the executions."""

    async def seen() -> bool:
        found = [item async for item in client.list_workflows(f"RteDefinitionId = '{definition_id}'")]
        return len(found) >= count and all(item.status != WorkflowExecutionStatus.RUNNING for item in found)

    await wait_until(seen, 60, f"{count} closed executions of {definition_id} listed")


async def waiting(handle: WorkflowHandle[Any, Any]) -> None:
    await wait_for(handle, lambda state: state.status.value == "waiting")


def hints(text: str) -> list[str]:
    """The commands the output hints at (`→ why: rte …   or: rte …`), first of each line."""
    return [
        "rte " + line.split(": rte ", 1)[1].split("   ")[0]
        for line in text.splitlines()
        if line.startswith("→")
    ]


async def test_list_filters_by_definition_status_and_start_time(
    client: Client, engine: Engine, settings: Settings
) -> None:
    definition = new_id("listed")
    env = _env(client, engine, settings)
    await engine.run(PASSING.format(id=definition))
    ok, _, failed = await engine.run(FAILING.format(id=definition))
    assert not ok
    await listed(client, definition, 2)

    everything = await _rte("list", "--definition", definition, "-o", "json", env=env)
    assert everything.returncode == 0, everything.stderr
    items = json.loads(everything.stdout)
    assert sorted(item["status"] for item in items) == ["completed", "failed"]
    assert all(item["temporal_ui_url"].startswith(settings.temporal_ui_url) for item in items)
    only_failed = await _rte("list", "-d", definition, "--status", "failed", "-o", "json", env=env)
    assert [item["execution_id"] for item in json.loads(only_failed.stdout)] == [failed.execution_id]
    newest = await _rte("list", "-d", definition, "--limit", "1", "-o", "json", env=env)
    assert [item["execution_id"] for item in json.loads(newest.stdout)] == [failed.execution_id]
    future = await _rte("list", "-d", definition, "--since", "2099-01-01T00:00", "-o", "json", env=env)
    assert json.loads(future.stdout) == []
    table = await _rte("list", "-d", definition, "--since", "1h", env=env)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["execution", "definition", "status", "started"]
    assert [row.split()[3] for row in rows] == ["failed", "completed"]  # newest first (after "id vN")
    assert f"{definition} v" in rows[0] and "1 error" in rows[0]

    bad = await _rte("list", "--status", "failed,bogus", env=env)
    assert bad.returncode == 2 and "unknown status 'bogus'" in bad.stderr
    assert "hint: use running, completed, failed" in bad.stderr


async def test_status_shows_the_steps_and_the_error_with_its_category(
    client: Client, engine: Engine, settings: Settings
) -> None:
    definition = new_id("status")
    env = _env(client, engine, settings)
    ok, _, state = await engine.run(FAILING.format(id=definition))
    assert not ok
    shown = await _rte("status", state.execution_id, env=env)
    assert shown.returncode == 0, shown.stderr
    first, *rest = shown.stdout.splitlines()
    assert first.split() == [state.execution_id, "failed"]
    assert any(line.split()[:3] == ["│", "boom", "│"] and "failed" in line for line in rest)
    # `[network]` is printed as is, not taken for Rich markup.
    assert "error [network] GET http://127.0.0.1:9/x failed" in shown.stdout
    assert f"{settings.temporal_ui_url}/namespaces/default/workflows/{state.execution_id}/" in shown.stdout
    as_json = json.loads((await _rte("status", state.execution_id, "-o", "json", env=env)).stdout)
    assert as_json["summary"]["status"] == "failed"
    assert as_json["state"]["steps"][f"{definition}/boom"]["status"] == "failed"
    assert as_json["state"]["error"]["category"] == "network"

    unknown = await _rte("status", "no-such-execution", env=env)
    assert unknown.returncode == 1 and "no execution 'no-such-execution'" in unknown.stderr


async def test_without_a_worker_status_shows_the_summary_and_commands_fail_at_once(
    client: Client, engine: Engine, settings: Settings
) -> None:
    plan = engine.compile(PASSING.format(id=new_id("orphan")))
    queue = f"nobody-{uuid.uuid4()}"
    handle = await start_execution(client, plan, {}, task_queue=queue)
    try:
        shown = await _rte("status", handle.id, env=_env(client, engine, settings))
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines()[0].split() == [handle.id, "running"]
        assert f"no worker polls the task queue '{queue}'" in shown.stdout
        # A command the worker must answer says so at once instead of waiting for one.
        approve = await _rte("approve", handle.id, "greet", env=_env(client, engine, settings))
        assert approve.returncode == 1
        assert f"no worker polls the task queue '{queue}' of '{handle.id}'" in approve.stderr
    finally:
        await handle.terminate("test over")


async def test_the_commands_status_hints_at_unblock_a_debugger_pause_and_a_paused_failure(
    client: Client, engine: Engine, settings: Settings
) -> None:
    env = _env(client, engine, settings)
    where = f"--data-dir {settings.data_dir.resolve()}"
    handle = await engine.start(
        DEBUGGED.format(id=new_id("hinted")), config=ExecutionConfig(breakpoints=[Breakpoint(step="b")])
    )
    await wait_paused(handle)
    shown = await _rte("status", handle.id, env=env)
    assert shown.returncode == 0, shown.stderr
    [resume] = hints(shown.stdout)
    assert resume == f"rte debug continue {handle.id} {where}"
    continued = await _rte(*shlex.split(resume)[1:], env=env)  # exactly what was printed
    assert continued.returncode == 0, continued.stderr

    await wait_for(handle, lambda state: any(step.awaiting_decision for step in state.steps.values()))
    shown = await _rte("status", handle.id, env=env)
    [decide] = hints(shown.stdout)
    assert decide == f"rte recover decide {handle.id} b retry {where}"
    assert "b failed and waits for a decision" in shown.stdout
    decided = await _rte(*shlex.split(decide)[1:], env=env)
    assert decided.returncode == 0, decided.stderr

    def retried_and_failed_again(state: ExecutionState) -> bool:
        step = state.steps[f"{state.definition_id}/b"]
        return [decision.action for decision in step.decisions] == ["retry"] and step.awaiting_decision

    await wait_for(handle, retried_and_failed_again)  # it ran again (the same input: it failed again)

    ended = await _rte("terminate", handle.id, "--reason", "seen enough", env=env)
    assert ended.returncode == 0, ended.stderr
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.TERMINATED
    again = await _rte("terminate", handle.id, env=env)
    assert again.returncode == 1 and "it has already been terminated" in again.stderr


async def test_run_prints_the_approve_command_while_it_waits_and_that_command_works(
    client: Client, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    definition = new_id("waits")
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        f"id: {definition}\nsteps:\n  - {{id: sign_off, kind: approval, with: {{message: 'ok?'}}}}\n"
    )
    env = _env(client, engine, settings)
    execution = f"{definition}-run"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rte", "run", str(flow), "--id", execution, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    seen: list[str] = []
    try:
        while not seen or not seen[-1].startswith("→"):
            line = await asyncio.wait_for(process.stderr.readline(), 60)
            assert line, f"rte run ended before hinting: {seen}"
            seen.append(line.decode().rstrip("\n"))
        where = f"--data-dir {settings.data_dir.resolve()}"
        assert seen[-1] == (
            f"→ sign_off waits for approval: rte approve {execution} sign_off {where}"
            f"   or: rte reject {execution} sign_off {where}"
        )
        approved = await _rte(*shlex.split(hints(seen[-1])[0])[1:], env=env)
        assert approved.returncode == 0, approved.stderr
        stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert json.loads(stdout)["sign_off"]["approved"] is True


async def test_logs_print_filter_and_follow_until_the_execution_ends(
    client: Client, engine: Engine, settings: Settings
) -> None:
    env = _env(client, engine, settings)
    ok, _, state = await engine.run(FAILING.format(id=new_id("logged")))
    assert not ok
    execution, step = state.execution_id, f"{state.definition_id}/boom"
    text = await _rte("logs", execution, env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines and all(f"[{step} #1]" in line for line in lines)
    assert any(" ERROR " in line and "[network]" in line for line in lines)
    as_json = [
        json.loads(line)
        for line in (await _rte("logs", execution, "-o", "json", env=env)).stdout.splitlines()
    ]
    assert len(as_json) == len(lines) and {row["execution_id"] for row in as_json} == {execution}
    errors = await _rte("logs", execution, "--level", "error", "--step", "boom", "-o", "json", env=env)
    assert [row["level"] for row in map(json.loads, errors.stdout.splitlines())] == ["error"]
    other_step = await _rte("logs", execution, "--step", "nope", env=env)
    assert (
        other_step.returncode == 0
        and other_step.stdout == ""
        and "no log lines of step nope" in other_step.stderr
    )
    unknown = await _rte("logs", "no-such-execution", env=env)
    assert unknown.returncode == 1 and "no execution 'no-such-execution'" in unknown.stderr
    bad = await _rte("logs", execution, "--level", "loud", env=env)
    assert bad.returncode == 2 and "unknown level 'loud'" in bad.stderr

    handle = await engine.start(GATED.format(id=new_id("followed")))
    await waiting(handle)
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rte", "logs", handle.id, "--follow", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert follower.stderr is not None
        started = await asyncio.wait_for(follower.stderr.readline(), 60)
        assert b"following the logs of" in started
        await _rte("approve", handle.id, "sign_off", env=env)  # the http step then fails, writing logs
        stdout, stderr = await asyncio.wait_for(follower.communicate(), 60)
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()
    assert follower.returncode == 0, stderr
    assert b"/boom #1] http: GET http://127.0.0.1:9/x" in stdout
    assert f"{handle.id} has ended".encode() in stderr


async def test_cancel_waits_for_the_end_and_refuses_a_closed_execution(
    client: Client, engine: Engine, settings: Settings
) -> None:
    env = _env(client, engine, settings)
    handle = await engine.start(GATED.format(id=new_id("cancelled")))
    await waiting(handle)
    cancelled = await _rte("cancel", handle.id, "--wait", env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"{handle.id} has been cancelled" in cancelled.stderr
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    again = await _rte("cancel", handle.id, env=env)
    assert again.returncode == 1 and "it has already been cancelled" in again.stderr
    unknown = await _rte("cancel", "no-such-execution", env=env)
    assert unknown.returncode == 1 and "no execution 'no-such-execution'" in unknown.stderr
    ok, error = await outcome(handle)
    assert not ok and error["category"] == "cancelled"


async def test_definitions_push_stores_versions_and_list_shows_them(
    client: Client, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    env = _env(client, engine, settings)
    definition = new_id("pushed")
    flow = tmp_path / "flow.yaml"
    flow.write_text(PASSING.format(id=definition))
    first = await _rte("definitions", "push", str(flow), env=env)
    assert (first.returncode, first.stdout) == (0, "1\n"), first.stderr
    assert f"stored {definition} version 1" in first.stderr
    flow.write_text(PASSING.format(id=definition) + "# only a comment changed\n")
    same = await _rte("definitions", "push", str(flow), env=env)
    assert same.stdout == "1\n" and "unchanged" in same.stderr
    flow.write_text(PASSING.format(id=definition).replace("text: hi", "text: hello"))
    second = await _rte("definitions", "push", str(flow), "-o", "json", env=env)
    pushed = json.loads(second.stdout)
    assert (pushed["id"], pushed["version"], pushed["changed"]) == (definition, "2", True)

    latest = json.loads((await _rte("definitions", "list", "-o", "json", env=env)).stdout)
    assert [row["version"] for row in latest if row["id"] == definition] == ["2"]
    versions = await _rte("definitions", "list", definition, env=env)
    assert [line.split()[0] for line in versions.stdout.splitlines()] == ["version", "2", "1"]
    unknown = await _rte("definitions", "list", "no-such-definition", env=env)
    assert unknown.returncode == 1 and "no definition 'no-such-definition'" in unknown.stderr

    flow.write_text(f"id: {definition}\nsteps:\n  - {{id: a, kind: set, needs: [ghost], with: {{}}}}\n")
    broken = await _rte("definitions", "push", str(flow), env=env)
    assert broken.returncode == 1 and "error E103" in broken.stderr and "nothing was stored" in broken.stderr
    missing = await _rte("definitions", "push", str(tmp_path / "nope.yaml"), env=env)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


async def test_a_command_about_to_create_a_new_store_says_where_and_a_reader_refuses(tmp_path: Path) -> None:
    env = _env_without_rte() | {"PYTHONPATH": str(ROOT)}
    fresh = tmp_path / "fresh"
    created = await _rte("keys", "create", "--name", "ci", "--data-dir", str(fresh), env=env)
    assert created.returncode == 0, created.stderr
    assert f"warning: creating a NEW store at {fresh.resolve() / 'rte.db'}" in created.stderr
    assert "--data-dir DIR or `export RTE_DATA_DIR=DIR`" in created.stderr
    again = await _rte("keys", "create", "--name", "ci2", "--data-dir", str(fresh), env=env)
    assert again.returncode == 0 and "NEW store" not in again.stderr
    empty = tmp_path / "empty"
    listed_keys = await _rte("keys", "list", "--data-dir", str(empty), env=env)
    assert (
        listed_keys.returncode == 1
        and f"there is no store at {empty.resolve() / 'rte.db'}" in listed_keys.stderr
    )
    assert not empty.exists()  # a reader leaves nothing behind


def _env_without_rte() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.upper().startswith("RTE_")}


def test_help_lists_every_command() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "rte", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for command in ("list", "status", "logs", "cancel", "terminate", "definitions"):
        assert f"│ {command} " in shown.stdout
