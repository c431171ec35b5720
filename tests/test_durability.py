"""Fault injection on real processes: workers killed or stopped mid-run, `rte up` losing its worker,
the Temporal server restarted (SIGTERM, then SIGKILL) under running, paused and waiting executions.

Each test prints its figure on one line (see them with `pytest -s`). Elsewhere: a paused execution
across a worker SIGKILL (tests/debug/test_durability.py), the dev server's SQLite settings under a
SIGKILL (tests/test_dev_server.py), and the scale-out run — two workers and two API replicas, one
of each SIGKILLed, the SSE client resuming on the other replica — in tests/test_scale_out.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
from temporalio.client import Client

from rte.config import Settings
from rte.executions import outcome, start_execution
from rte.temporal import connect, find_temporal_binary, persistent_dev_server_command
from tests.conftest import Engine
from tests.debug.support import command, wait_for, wait_paused
from tests.support.processes import (
    ROOT,
    activity_starts,
    engine_env,
    free_port,
    running_activities,
    start_worker,
    stop,
    wait_healthy,
    wait_until,
)
from workflows.state import Breakpoint, ExecutionConfig, RecoveryDecision

IN_FLIGHT = 40


def _address(client: Client) -> str:
    return client.service_client.config.target_host


def _start_worker(
    client: Client, settings: Settings, task_queue: str, log: Path, **extra: str
) -> subprocess.Popen[bytes]:
    """An `rte worker` process on the test session's Temporal server and data folder."""
    return start_worker(engine_env(_address(client), settings.data_dir, task_queue, **extra), log)


def _finished(markers: Path, name: str) -> list[Path]:
    return [path for path in markers.glob(f"{name}.*") if not path.name.endswith(".started")]


async def test_worker_killed_with_40_executions_in_flight_reruns_no_completed_step(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    task_queue = f"durability-{uuid.uuid4()}"
    # `slow` outlasts the kill; its timeout lets Temporal hand the lost attempt to the new worker.
    plan = Engine.compile(
        f"""
id: durable
inputs: {{type: object, properties: {{n: {{type: integer}}}}}}
steps:
  - id: first
    kind: python
    with: {{function: record_call, args: {{name: '${{ "first" + (.inputs.n | tostring) }}', marker_dir: "{markers}"}}}}
  - id: slow
    kind: python
    needs: [first]
    timeout: 20s
    with: {{function: sleep_then_mark, args: {{seconds: 12, name: '${{ "slow" + (.inputs.n | tostring) }}', marker_dir: "{markers}"}}}}
  - id: last
    kind: python
    needs: [slow]
    with: {{function: record_call, args: {{name: '${{ "last" + (.inputs.n | tostring) }}', marker_dir: "{markers}"}}}}
outputs: {{n: "${{ .inputs.n }}", last: "${{ .steps.last.output }}"}}
"""
    )
    log = tmp_path / "worker.log"
    worker = _start_worker(client, settings, task_queue, log)
    try:
        handles = [
            await start_execution(client, plan, {"n": n}, task_queue=task_queue) for n in range(IN_FLIGHT)
        ]

        async def all_slow_steps_running() -> bool:
            counts = await asyncio.gather(*(running_activities(handle) for handle in handles))
            return sum(counts) == IN_FLIGHT and len(list(markers.glob("first*"))) == IN_FLIGHT

        await wait_until(all_slow_steps_running, 90, "every execution running its slow step")
        in_flight = sum(await asyncio.gather(*(running_activities(handle) for handle in handles)))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert not _finished(markers, "last*"), "killed before any execution ended"
        worker = _start_worker(client, settings, task_queue, log)
        outcomes = await asyncio.wait_for(asyncio.gather(*(outcome(handle) for handle in handles)), 180)
    finally:
        stop(worker)
    completed = [output for ok, output in outcomes if ok]
    runs = {
        step: [len(_finished(markers, f"{step}{n}")) for n in range(IN_FLIGHT)]
        for step in ("first", "slow", "last")
    }
    rerun = sum(count - 1 for counts in runs.values() for count in counts if count > 1)
    print(
        f"worker SIGKILL: {len(completed)}/{IN_FLIGHT} completed, {rerun} completed steps re-run "
        f"({in_flight} steps in flight at the kill)"
    )
    assert in_flight == IN_FLIGHT
    assert sorted(output["n"] for output in completed) == list(range(IN_FLIGHT)), log.read_text()[-3000:]
    assert all(output["last"] == f"last{output['n']}" for output in completed)
    assert runs == {step: [1] * IN_FLIGHT for step in runs}  # no step that had completed ran again


SLOW_STEP = """
id: drain
steps:
  - {{id: slow, kind: python, timeout: 120s, with: {{function: sleep_then_mark, args: {{seconds: 4, name: slow, marker_dir: "{markers}"}}}}}}
outputs: {{slow: "${{ .steps.slow.output }}"}}
"""


async def test_sigterm_lets_the_worker_finish_its_in_flight_step_before_it_exits(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    markers, log = tmp_path / "markers", tmp_path / "worker.log"
    task_queue = f"drain-{uuid.uuid4()}"
    worker = _start_worker(client, settings, task_queue, log, RTE_WORKER_DRAIN_S="60")
    try:
        handle = await start_execution(
            client, Engine.compile(SLOW_STEP.format(markers=markers)), {}, task_queue=task_queue
        )
        await wait_until(lambda: running_activities(handle), 60, "the slow step running")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(90) == 0
        finished = _finished(markers, "slow")
        # The step finished in the worker that was told to stop, before it exited.
        assert [path.name.split(".")[1] for path in finished] == [str(worker.pid)], log.read_text()
        worker = _start_worker(client, settings, task_queue, log)  # runs the workflow's next task
        ok, output = await asyncio.wait_for(outcome(handle), 90)
    finally:
        stop(worker)
    starts = await activity_starts(handle)
    print(f"worker SIGTERM drain: step finished in the stopping worker, {len(starts)} attempt(s)")
    assert ok and output == {"slow": "slow"}
    assert [start["attempt"] for start in starts] == [1]
    assert "draining: in-flight steps have 60 s to finish" in log.read_text()


async def test_sigterm_hands_back_steps_that_outlast_the_drain_and_never_hangs(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    """A cancellable step and a sync one that ignores cancellation (a blocked thread): the worker
    exits soon after the drain anyway, and both steps are retried at once by the next worker."""
    markers, log = tmp_path / "markers", tmp_path / "worker.log"
    task_queue = f"handback-{uuid.uuid4()}"
    plan = Engine.compile(
        f"""
id: handback
steps:
  - {{id: waits, kind: python, timeout: 300s, with: {{function: sleep_once, args: {{seconds: 120, name: waits, marker_dir: "{markers}"}}}}}}
  - {{id: blocks, kind: python, timeout: 300s, with: {{function: block_once, args: {{seconds: 120, name: blocks, marker_dir: "{markers}"}}}}}}
outputs: {{waits: "${{ .steps.waits.output }}", blocks: "${{ .steps.blocks.output }}"}}
"""
    )
    worker = _start_worker(client, settings, task_queue, log, RTE_WORKER_DRAIN_S="1")
    try:
        handle = await start_execution(client, plan, {}, task_queue=task_queue)
        await wait_until(lambda: _equals(running_activities(handle), 2), 60, "both steps running")
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        # Far less than the 120 s the blocked thread would need (an exit joining it would hang).
        assert worker.wait(45) == 0
        exited_after = time.monotonic() - signalled
        worker = _start_worker(client, settings, task_queue, log)
        ok, output = await asyncio.wait_for(outcome(handle), 240)
    finally:
        stop(worker)
    retried = [start for start in await activity_starts(handle) if start["attempt"] == 2]
    print(
        f"worker SIGTERM past the drain: exited {exited_after:.1f} s after the signal, "
        f"{len(retried)}/2 steps handed back"
    )
    assert ok and output == {"waits": "waits", "blocks": "blocks"}
    # Handed back by the stopping worker (not lost until their 300 s timeout).
    assert sorted(start["activity_id"] for start in retried) == ["handback/blocks", "handback/waits"]
    assert all("shutting down" in start["last_failure"] for start in retried), retried


async def _equals(value: Any, expected: Any) -> bool:
    return (await value) == expected


# `rte up` keeps the stack alive when its worker dies.


async def _rte(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rte", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, stdout.decode(), stderr.decode())


def _children(up: subprocess.Popen[bytes], *words: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(up.pid).children():
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if all(word in command for word in words) and child.status() != psutil.STATUS_ZOMBIE:
            found.append(child)
    return found


async def test_up_restarts_a_killed_worker_and_keeps_the_rest_of_the_stack(tmp_path: Path) -> None:
    ports = {"temporal": free_port(), "ui": free_port(), "api": free_port()}
    data = tmp_path / "data"
    env = os.environ | {
        "RTE_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "RTE_DATA_DIR": str(data),
        "PYTHONPATH": str(ROOT),
    }
    up = _start_up(data, ports, env)
    try:
        wait_healthy(f"http://127.0.0.1:{ports['api']}/health", up)
        temporal, api = _children(up, "server", "start-dev"), _children(up, "uvicorn")
        [worker] = _children(up, "rte", "worker")
        worker.kill()  # SIGKILL
        replacement = await wait_until(
            lambda: _new_worker(up, worker.pid), 60, "a new worker started by rte up"
        )
        assert up.poll() is None, "rte up went down with its worker"
        # The same server and API still serve; a run started now completes on the new worker.
        assert [p.pid for p in _children(up, "server", "start-dev")] == [p.pid for p in temporal]
        assert [p.pid for p in _children(up, "uvicorn")] == [p.pid for p in api]
        ran = await _rte("run", "examples/hello.yaml", "-p", "name=Ada", "--output", "json", env=env)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["message"] == "Hello, Ada."
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=90)
    text = output.decode()
    print(f"rte up worker SIGKILL: restarted as pid {replacement.pid}, stack kept, a new run completed")
    assert up.returncode == 0, text
    assert "worker exited with code -9" in text and "restarted (restart 1" in text, text
    assert "restarting in 1 s" in (data / "logs" / "worker.log").read_text()


def _start_up(data: Path, ports: dict[str, int], env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "rte", "up", "--data-dir", str(data), "--temporal-port", str(ports["temporal"]),
        "--ui-port", str(ports["ui"]), "--api-port", str(ports["api"]),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def _new_worker(up: subprocess.Popen[bytes], old_pid: int) -> psutil.Process | None:
    workers = [worker for worker in _children(up, "rte", "worker") if worker.pid != old_pid]
    return workers[0] if workers else None


# The Temporal server restarted under running, paused and waiting executions.

CHAIN = """
id: restart
inputs: {{type: object, properties: {{n: {{type: integer}}}}}}
steps:
{steps}
outputs: {{n: "${{ .inputs.n }}", last: "${{ .steps.s{last}.output }}"}}
"""
CHAIN_STEPS = 6


def _chain_plan(markers: Path) -> Any:
    steps = [
        f"  - {{id: s{i}, kind: python, timeout: 15s{f', needs: [s{i - 1}]' if i else ''}, with: {{function: "
        f"sleep_then_mark, args: {{seconds: 1, name: '${{ \"s{i}-\" + (.inputs.n | tostring) }}', "
        f'marker_dir: "{markers}"}}}}}}'
        for i in range(CHAIN_STEPS)
    ]
    return Engine.compile(CHAIN.format(steps="\n".join(steps), last=CHAIN_STEPS - 1))


def _start_server(database: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The dev server exactly as `rte up` runs it, keeping its state in `database`."""
    command = persistent_dev_server_command(find_temporal_binary(), database, port=port, ui_port=None)
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


async def _connect(address: str, server: subprocess.Popen[bytes], log: Path) -> Client:
    for _ in range(600):
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            return await connect(Settings(_env_file=None, temporal_address=address))
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"the dev server did not answer within 60 s:\n{log.read_text()[-3000:]}")


async def test_server_restarts_by_sigterm_then_sigkill_lose_nothing_running_paused_or_waiting(
    settings: Settings, tmp_path: Path
) -> None:
    """One dev server on a SQLite file, an `rte worker` process that stays up throughout. Running
    executions, one paused at a breakpoint and one awaiting a recovery decision go through a
    SIGTERM restart and then a SIGKILL restart of the server."""
    database, log, port = tmp_path / "temporal.db", tmp_path / "temporal.log", free_port()
    address, markers, task_queue = f"127.0.0.1:{port}", tmp_path / "markers", f"restart-{uuid.uuid4()}"
    running_count = 20
    server = _start_server(database, port, log)
    worker: subprocess.Popen[bytes] | None = None
    try:
        client = await _connect(address, server, log)
        worker = start_worker(engine_env(address, settings.data_dir, task_queue), tmp_path / "worker.log")
        plan = _chain_plan(markers)
        running = [
            (await start_execution(client, plan, {"n": n}, task_queue=task_queue)).id
            for n in range(running_count)
        ]
        paused = (
            await start_execution(
                client,
                plan,
                {"n": 1000},
                task_queue=task_queue,
                config=ExecutionConfig(breakpoints=[Breakpoint(step="s1")]),
            )
        ).id
        waiting = (
            await start_execution(
                client,
                Engine.compile(
                    "id: decide\nsteps:\n  - {id: bad, kind: python, on_error: pause, "
                    "with: {function: fail_on, args: {value: 1, bad: [1]}}}\n"
                ),
                {},
                task_queue=task_queue,
            )
        ).id
        progress = {"SIGTERM": 1, "SIGKILL": 3}  # finished steps each execution has before the signal
        in_flight: dict[str, int] = {}
        for name, signum in (("SIGTERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL)):
            await _wait_progress(markers, running_count, progress[name])
            await wait_paused(client.get_workflow_handle(paused), timeout_s=60)
            await wait_for(
                client.get_workflow_handle(waiting), lambda s: s.steps["decide/bad"].awaiting_decision, 60
            )
            in_flight[name] = sum(
                1 for n in range(running_count) if not _finished(markers, f"s{CHAIN_STEPS - 1}-{n}")
            )
            server.send_signal(signum)
            server.wait(30)
            server = _start_server(database, port, log)
            client = await _connect(address, server, log)
        # Both kept their state across both restarts; now let them go on.
        state = await wait_paused(client.get_workflow_handle(paused), timeout_s=60)
        assert state.debug.paused is not None and state.debug.paused.step_path == "restart/s1"
        await command(client.get_workflow_handle(paused), "continue")
        await client.get_workflow_handle(waiting).execute_update(
            "decide_recovery", RecoveryDecision(step="bad", action="skip", output="skipped")
        )
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(outcome(client.get_workflow_handle(id_)) for id_ in [*running, paused, waiting])
            ),
            180,
        )
    finally:
        if worker is not None:
            stop(worker)
        stop(server)
    completed = sum(1 for ok, _ in outcomes[:running_count] if ok)
    reruns = sum(
        max(len(_finished(markers, f"s{i}-{n}")) - 1, 0)
        for i in range(CHAIN_STEPS)
        for n in range(running_count)
    )
    print(
        f"dev server SIGTERM then SIGKILL restart ({in_flight['SIGTERM']} and {in_flight['SIGKILL']} "
        f"executions running at each): {completed}/{running_count} completed, "
        f"{running_count - completed} lost, {reruns} steps re-run; paused and awaiting-decision kept, then completed"
    )
    assert in_flight["SIGTERM"] == running_count and in_flight["SIGKILL"] > 0
    assert outcomes[:running_count] == [
        (True, {"n": n, "last": f"s{CHAIN_STEPS - 1}-{n}"}) for n in range(running_count)
    ]
    assert outcomes[running_count] == (True, {"n": 1000, "last": f"s{CHAIN_STEPS - 1}-1000"})
    assert outcomes[running_count + 1] == (True, {"bad": "skipped"})


async def _wait_progress(markers: Path, executions: int, steps: int) -> None:
    async def enough() -> bool:
        return all(
            any(_finished(markers, f"s{i}-{n}") for i in range(steps - 1, CHAIN_STEPS))
            for n in range(executions)
        )

    await wait_until(enough, 120, f"every execution past step {steps}")
