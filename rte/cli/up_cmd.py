"""`rte up`: the whole local stack in one command — Temporal dev server, a worker, the API.

State lives under the data folder (the Temporal SQLite file, the SQL store, the secret key), so a
second `rte up` finds the earlier executions. A crashed worker or API is restarted with back-off
(`rte.cli._supervisor`); Ctrl-C stops every process cleanly.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from rte.cli._common import err_console, fail
from rte.cli._supervisor import Service, StackDown, Supervisor
from rte.cli.stack import StaleCard, card_for, read_card, remove_card, write_card
from rte.config import Settings
from rte.private_files import private_dir, private_file
from rte.temporal import TemporalBinaryNotFound, find_temporal_binary, persistent_dev_server_command

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


def register(app: typer.Typer) -> None:
    app.command("up")(up)


def up(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for all local state (default: RTE_DATA_DIR, else .rte).", show_default=False
        ),
    ] = None,
    temporal_port: Annotated[int, typer.Option(help="Temporal frontend (gRPC) port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port.")] = 8233,
    api_port: Annotated[int, typer.Option(help="API port.")] = 8000,
    function_module: Annotated[
        list[str] | None,
        typer.Option("--function-module", "-m", help="Module registering python step functions."),
    ] = None,
) -> None:
    """Start Temporal (with its Web UI), a worker and the API; Ctrl-C stops them all."""
    data_dir = (data_dir or Settings().data_dir).resolve()
    settings = Settings(
        data_dir=data_dir,
        temporal_address=f"127.0.0.1:{temporal_port}",
        temporal_ui_url=f"http://127.0.0.1:{ui_port}",
        api_url=f"http://127.0.0.1:{api_port}",
    )
    _refuse_second_stack(data_dir)
    for name, port in (("Temporal", temporal_port), ("Web UI", ui_port), ("API", api_port)):
        if _port_in_use(port):
            fail(
                f"port {port} for the {name} is already in use",
                hint="stop what uses it, or pick another with a flag",
            )
    try:
        temporal = find_temporal_binary()
    except TemporalBinaryNotFound as error:
        fail(str(error))
    # Everything under the data folder is private: the folder itself even when it already existed,
    # and whatever the stack creates from now on (umask 077 is inherited by Temporal's dev server,
    # which would otherwise create temporal.db 0644); a database left wider by an earlier run too.
    private_dir(data_dir)
    os.umask(0o077)
    for file in data_dir.glob("temporal.db*"):
        private_file(file)
    temporal_service: Service | None = None
    env = os.environ | {
        "RTE_DATA_DIR": str(settings.data_dir),
        "RTE_TEMPORAL_ADDRESS": settings.temporal_address,
        "RTE_TEMPORAL_UI_URL": settings.temporal_ui_url,
        "RTE_API_URL": settings.api_url,
    }
    # Local development: steps may call services on this machine (never the engine's own ports).
    env.setdefault("RTE_OUTBOUND_ALLOW", "127.0.0.0/8,::1")
    if function_module:
        env["RTE_FUNCTION_MODULES"] = ",".join(function_module)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    supervisor = Supervisor(
        env, lambda line: err_console.print(line, style="yellow", highlight=False, markup=False)
    )
    code = 0
    # Ctrl-C and SIGTERM both stop the stack cleanly, even when started from a script that
    # ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        temporal_service = supervisor.start(
            Service(
                "temporal",
                persistent_dev_server_command(
                    temporal, data_dir / "temporal.db", port=temporal_port, ui_port=ui_port
                ),
                logs / "temporal.log",
                restart=False,  # it holds the state; its end is the stack's end
                stop_signal=signal.SIGINT,
            )
        )
        _wait_for_port("Temporal", temporal_port, supervisor)
        # The worker and the API keep no state: when one crashes, it is restarted with back-off.
        supervisor.start(
            Service(
                "worker",
                [sys.executable, "-m", "rte", "worker"],
                logs / "worker.log",
                restart=True,
                stop_grace_s=settings.worker_drain_s + STOP_GRACE_S,  # it drains in-flight steps first
            )
        )
        if settings.step_task_queues():  # script steps routed to a queue of their own need its worker
            supervisor.start(
                Service(
                    "script worker",
                    [sys.executable, "-m", "rte", "worker", "--kinds", "script"],
                    logs / "script-worker.log",
                    restart=True,
                    stop_grace_s=settings.worker_drain_s + STOP_GRACE_S,
                )
            )
        supervisor.start(
            Service(
                "api",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "api.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(api_port),
                    "--log-level",
                    "warning",
                ],
                logs / "api.log",
                restart=True,
            )
        )
        _wait_for_port("API", api_port, supervisor)
        # Commands in other terminals find the stack through this card (rte/cli/stack.py).
        card = write_card(card_for(settings), data_dir)
        err_console.print(_banner(settings, card, logs), highlight=False, markup=False)
        supervisor.run()
    except StackDown as down:
        code = _died(down)
    except KeyboardInterrupt:
        err_console.print("stopping…")
    finally:
        remove_card(data_dir)
        supervisor.stop()
        if temporal_service is not None:
            err_console.print("stopped: Temporal, the worker and the API")
    raise typer.Exit(code)


def _refuse_second_stack(data_dir: Path) -> None:
    try:
        card = read_card(data_dir)
    except StaleCard:
        return  # left by a stack that died: this one takes its place
    if card is not None:
        fail(
            f"a stack is already running on {data_dir} (pid {card.pid}, Temporal {card.temporal_address}, "
            f"API {card.api_url})",
            hint="use it (every command reads its addresses from the data folder), stop it with Ctrl-C "
            "in its terminal, or start another stack with another --data-dir",
        )


def _banner(settings: Settings, card: Path, logs: Path) -> Text:
    data_dir = shlex.quote(str(settings.data_dir))
    text = Text()
    text.append("Runtime Engine is up\n", style="bold green")
    text.append(
        f"  Temporal      {settings.temporal_address}\n"
        f"  Web UI        {settings.temporal_ui_url}\n"
        f"  API           {settings.api_url}  (health: /health, docs: /docs)\n"
        f"  data          {settings.data_dir}  (logs in {logs})\n"
        f"In another terminal, point rte at this stack (it reads the addresses from {card}):\n"
    )
    text.append(f"  export RTE_DATA_DIR={data_dir}\n", style="bold")
    secrets = [name for name in ("RTE_DATABASE_URL", "RTE_SECRET_KEY") if os.environ.get(name)]
    if secrets:
        text.append(f"  export {' '.join(f'{name}=…' for name in secrets)}", style="bold")
        text.append("   # the same values as in this terminal (never written to disk by rte)\n")
    text.append("  rte run examples/hello.yaml\n", style="bold")
    text.append(
        f"  (or add --data-dir {data_dir} to each command)\n"
        "Ctrl-C stops everything. A crashed worker or API is restarted; the stack stops only if Temporal ends."
    )
    return text


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(name: str, port: int, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        supervisor.check()  # Temporal ending raises StackDown; a crashed API is restarted
        if _port_in_use(port):
            return
        time.sleep(0.2)
    # Not `fail` (it exits at once): the processes already started must be stopped first.
    err_console.print(
        f"[bold red]error:[/] the {name} did not start listening on port {port} within {READY_TIMEOUT_S:.0f} s",
        highlight=False,
    )
    raise typer.Exit(1)


def _died(down: StackDown) -> int:
    err_console.print(
        f"[bold red]{down.service.name} exited with code {down.code}[/]; see {down.service.log_file}",
        highlight=False,
    )
    return 1
