"""The `rte` command as people and scripts use it: real processes, real exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from temporalio.client import Client

from rte.config import Settings
from tests.conftest import Engine

ROOT = Path(__file__).resolve().parents[1]


def _env(client: Client, engine: Engine, settings: Settings) -> dict[str, str]:
    return os.environ | {
        "RTE_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "RTE_TASK_QUEUE": engine.task_queue,
        "RTE_DATA_DIR": str(settings.data_dir),
        "PYTHONPATH": str(ROOT),
    }


async def _rte(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rte", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, stdout.decode(), stderr.decode())


async def test_run_json_prints_only_the_output_and_exits_zero(
    client: Client, engine: Engine, settings: Settings
) -> None:
    result = await _rte(
        "run", "examples/hello.yaml", "--param", "name=Ada", "-p", "tone=excited", "--output", "json",
        env=_env(client, engine, settings),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"tone": "excited", "message": "HELLO, ADA!"}
    assert "shout: completed" in result.stderr  # progress goes to stderr


async def test_run_of_a_failing_execution_prints_the_error_and_exits_one(
    client: Client, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    flow = tmp_path / "failing.yaml"
    flow.write_text(
        "id: failing\nsteps:\n  - id: boom\n    kind: http\n    with: {url: 'http://127.0.0.1:9/x'}\n"
        "    retry: {max_attempts: 1}\n"
    )
    result = await _rte("run", str(flow), "--output", "json", env=_env(client, engine, settings))
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["category"] == "network" and error["step_path"] == "failing/boom"


async def test_run_with_parameters_that_do_not_match_lists_every_violation(
    client: Client, engine: Engine, settings: Settings
) -> None:
    result = await _rte("run", "examples/hello.yaml", "-p", "tone=loud", env=_env(client, engine, settings))
    assert result.returncode == 2
    assert "$.name: is required" in result.stderr
    assert '$.tone: "loud" is not one of' in result.stderr
    assert "Traceback" not in result.stderr


async def test_run_detach_then_approve_from_the_cli(
    client: Client, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    flow = tmp_path / "approval.yaml"
    flow.write_text(
        "id: gated\nsteps:\n  - {id: sign_off, kind: approval, with: {message: 'ok?', timeout: 1h}}\n"
    )
    env = _env(client, engine, settings)
    started = await _rte("run", str(flow), "--detach", "--output", "json", env=env)
    assert started.returncode == 0, started.stderr
    execution_id = json.loads(started.stdout)["execution_id"]
    handle = client.get_workflow_handle(execution_id)
    for _ in range(100):
        if (await handle.query("state"))["status"] == "waiting":
            break
        await asyncio.sleep(0.1)
    wrong = await _rte("approve", execution_id, "nope", env=env)
    assert wrong.returncode == 1 and "not waiting for approval" in wrong.stderr
    approved = await _rte(
        "approve", execution_id, "sign_off", "--by", "ada", "--payload", '{"n": 1}', env=env
    )
    assert approved.returncode == 0, approved.stderr
    output = await handle.result()
    assert output["sign_off"]["approved"] is True and output["sign_off"]["payload"] == {"n": 1}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "rte up exited early"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("rte up did not become healthy")


async def test_up_starts_the_stack_stops_on_ctrl_c_and_keeps_executions(tmp_path: Path) -> None:
    ports = {"temporal": _free_port(), "ui": _free_port(), "api": _free_port()}
    data = tmp_path / "data"
    command = [
        sys.executable, "-m", "rte", "up", "--data-dir", str(data), "--temporal-port", str(ports["temporal"]),
        "--ui-port", str(ports["ui"]), "--api-port", str(ports["api"]),
    ]  # fmt: skip
    env = os.environ | {"RTE_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}", "RTE_DATA_DIR": str(data)}

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        _wait_healthy(f"http://127.0.0.1:{ports['api']}/health", process)
        return process

    def stop(process: subprocess.Popen[bytes]) -> str:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        return output.decode()

    first = start()
    try:
        ran = await _rte("run", "examples/hello.yaml", "-p", "name=Ada", "--output", "json", env=env)
        assert ran.returncode == 0, ran.stderr
        async with httpx.AsyncClient() as http:  # the Temporal Web UI answers too
            assert (await http.get(f"http://127.0.0.1:{ports['ui']}/", timeout=5)).status_code == 200
    finally:
        log = stop(first)
    assert "stopped: Temporal, the worker and the API" in log
    for port in ports.values():  # every process is gone
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    second = start()
    try:
        client = await Client.connect(env["RTE_TEMPORAL_ADDRESS"])
        found = [execution.id async for execution in client.list_workflows("RteDefinitionId = 'hello'")]
        assert len(found) == 1  # the execution of the first run survived the restart
    finally:
        stop(second)
