"""`rte worker`: run a worker process (the interpreter workflow and the step activities)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from rte.cli._common import DataDirOpt, err_console, exit_now, fail, settings_from
from rte.config import Settings

console = Console()


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    address: Annotated[str | None, typer.Option(help="Temporal address host:port.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Temporal namespace.")] = None,
    task_queue: Annotated[
        str | None,
        typer.Option(
            help="Task queue to poll (default: RTE_TASK_QUEUE, or with --kinds the queue those kinds are routed to)."
        ),
    ] = None,
    kinds: Annotated[
        str | None,
        typer.Option(
            help="Run only these step kinds (comma-separated, e.g. `script`) and no workflows: a worker "
            "for the task queue they are routed to (RTE_SCRIPT_TASK_QUEUE)."
        ),
    ] = None,
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    function_module: Annotated[
        list[str] | None,
        typer.Option("--function-module", "-m", help="Module registering python step functions."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Do not run: exit 0 if the worker of this machine or container reported itself healthy "
            "recently (RTE_WORKER_HEALTH_FILE), 1 otherwise. For container healthchecks.",
        ),
    ] = False,
    max_age: Annotated[
        float, typer.Option(help="With --check: how old the last report may be (seconds).")
    ] = 30.0,
    data_dir: DataDirOpt = None,
) -> None:
    """Poll the task queue and run executions until stopped (Ctrl-C or SIGTERM, which drains)."""
    settings = settings_from(
        data_dir=data_dir,
        temporal_address=address,
        namespace=namespace,
        task_queue=task_queue if kinds is None else None,
        database_url=database_url,
        function_modules=function_module or None,
    )
    if check:
        _check(settings, max_age)
    from activities.http import quiet_transport_logs
    from activities.outbound_policy import OutboundPolicy
    from worker.main import run_worker

    step_kinds = _kinds(kinds)
    queue = _task_queue(settings, task_queue, step_kinds)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # httpx logs every request's full URL at INFO, an api_key query parameter included.
    quiet_transport_logs()
    try:
        OutboundPolicy.from_settings(settings)
    except ValueError as error:
        fail(f"the outbound policy (RTE_OUTBOUND_ALLOW / RTE_OUTBOUND_DENY): {error}")
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run_worker(settings, queue, step_kinds))
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:
        fail(f"the worker stopped: {error}", hint="is Temporal running? start everything with `rte up`")
    # Not asyncio.run: its teardown joins executor threads, and a step stuck in a thread (a sync
    # python function ignoring its cancellation) would keep a drained worker alive forever.
    exit_now(0)


def _kinds(value: str | None) -> list[str] | None:
    if value is None:
        return None
    from activities.runtime import HANDLERS

    kinds = [kind.strip() for kind in value.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in HANDLERS]
    if unknown or not kinds:
        fail(
            f"--kinds: unknown step kind {', '.join(unknown) or '(none)'}",
            hint=f"choose from {', '.join(HANDLERS)}",
        )
    return kinds


def _task_queue(settings: Settings, flag: str | None, kinds: list[str] | None) -> str:
    """The queue to poll: the flag, else the main queue, or with --kinds the one they are routed to."""
    if flag:
        return flag
    if kinds is None:
        return settings.task_queue
    routed = settings.step_task_queues()
    unrouted = [kind for kind in kinds if kind not in routed]
    if unrouted:
        fail(
            f"--kinds: {', '.join(unrouted)} steps run on the main task queue, not one of their own",
            hint="set RTE_SCRIPT_TASK_QUEUE (on the API and every worker), or pass --task-queue",
        )
    if len({routed[kind] for kind in kinds}) > 1:
        fail("--kinds: these kinds are routed to different task queues; start one worker per queue")
    return routed[kinds[0]]


def _check(settings: Settings, max_age: float) -> NoReturn:
    from worker.health import check

    if settings.worker_health_file is None:
        fail("--check needs RTE_WORKER_HEALTH_FILE: the file the worker writes its health to")
    healthy, message = check(settings.worker_health_file, max_age)
    (console if healthy else err_console).print(message, highlight=False)
    exit_now(0 if healthy else 1)
