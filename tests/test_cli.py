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


async def _rte(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rte", *args, env=env, cwd=cwd,
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


async def test_run_prints_the_failure_with_its_category_in_brackets(
    client: Client, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    flow = tmp_path / "failing.yaml"
    flow.write_text(
        "id: failing\nsteps:\n  - id: boom\n    kind: http\n    with: {url: 'http://127.0.0.1:9/x'}\n"
        "    retry: {max_attempts: 1}\n"
    )
    result = await _rte("run", str(flow), env=_env(client, engine, settings))
    assert result.returncode == 1
    # `[network]` is text, not Rich markup: it used to vanish from this line.
    assert (
        "\nfailed [network] step 'failing/boom' failed [network]: GET http://127.0.0.1:9/x" in result.stderr
    )
    assert "  details: rte status failing-" in result.stderr
    assert f" — {settings.temporal_ui_url}/namespaces/default/workflows/failing-" in result.stderr


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


def _start_up(data: Path, ports: dict[str, int], env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "rte", "up", "--data-dir", str(data), "--temporal-port", str(ports["temporal"]),
        "--ui-port", str(ports["ui"]), "--api-port", str(ports["api"]),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def test_commands_in_another_terminal_find_the_stack_through_its_data_dir(tmp_path: Path) -> None:
    """`rte up --data-dir D` on ports of its own; another process, in another folder and with no RTE_*
    variable at all, names only D — and talks to that stack, its store and its Web UI."""
    ports = {"temporal": _free_port(), "ui": _free_port(), "api": _free_port()}
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean = {key: value for key, value in os.environ.items() if not key.upper().startswith("RTE_")}
    clean["PYTHONPATH"] = str(ROOT)
    up = _start_up(data, ports, clean)
    card = data / "stack.json"
    try:
        _wait_healthy(f"http://127.0.0.1:{ports['api']}/health", up)
        for _ in range(300):  # written as soon as the API listens
            if card.exists():
                break
            await asyncio.sleep(0.1)
        assert card.stat().st_mode & 0o777 == 0o600
        recorded = json.loads(card.read_text())
        assert recorded["temporal_address"] == f"127.0.0.1:{ports['temporal']}"
        assert recorded["temporal_ui_url"] == f"http://127.0.0.1:{ports['ui']}"
        assert recorded["api_url"] == f"http://127.0.0.1:{ports['api']}"

        ran = await _rte(
            "run", str(ROOT / "examples/hello.yaml"), "-p", "name=Ada", "--data-dir", str(data),
            env=clean, cwd=elsewhere,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert f"started — http://127.0.0.1:{ports['ui']}/namespaces/default/workflows/hello-" in ran.stderr
        assert "NEW store" not in ran.stderr and "warning" not in ran.stderr
        assert not (elsewhere / ".rte").exists()  # no stray store, no stray secret key

        by_variable = clean | {"RTE_DATA_DIR": str(data)}
        for _ in range(100):  # visibility is eventually consistent
            listed = await _rte("list", "-o", "json", env=by_variable, cwd=elsewhere)
            assert listed.returncode == 0, listed.stderr
            if items := json.loads(listed.stdout):
                break
            await asyncio.sleep(0.3)
        assert [item["definition_id"] for item in items] == ["hello"]
        assert items[0]["temporal_ui_url"].startswith(f"http://127.0.0.1:{ports['ui']}/")
        stored = await _rte("definitions", "list", "-o", "json", env=by_variable, cwd=elsewhere)
        assert [row["id"] for row in json.loads(stored.stdout)] == ["hello"]  # the stack's own store

        other_ports = [
            "--temporal-port",
            str(_free_port()),
            "--ui-port",
            str(_free_port()),
            "--api-port",
            str(_free_port()),
        ]
        second = await _rte("up", "--data-dir", str(data), *other_ports, env=clean, cwd=elsewhere)
        assert second.returncode == 2 and f"a stack is already running on {data}" in second.stderr
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    banner = output.decode()
    assert (
        f"  export RTE_DATA_DIR={data}\n" in banner
        and f"Web UI        http://127.0.0.1:{ports['ui']}" in banner
    )
    assert up.returncode == 0 and not card.exists()  # a clean stop takes the card away
