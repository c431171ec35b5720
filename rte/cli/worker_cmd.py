"""`rte worker`: run a worker process (the interpreter workflow and the step activities)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from rte.cli._common import exit_now, fail, settings_from


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    address: Annotated[str | None, typer.Option(help="Temporal address host:port.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Temporal namespace.")] = None,
    task_queue: Annotated[str | None, typer.Option(help="Task queue to poll.")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    function_module: Annotated[
        list[str] | None,
        typer.Option("--function-module", "-m", help="Module registering python step functions."),
    ] = None,
) -> None:
    """Poll the task queue and run executions until stopped (Ctrl-C or SIGTERM)."""
    from activities.http import quiet_transport_logs
    from activities.outbound_policy import OutboundPolicy
    from worker.main import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # httpx logs every request's full URL at INFO, an api_key query parameter included.
    quiet_transport_logs()
    settings = settings_from(
        temporal_address=address,
        namespace=namespace,
        task_queue=task_queue,
        database_url=database_url,
        function_modules=function_module or None,
    )
    try:
        OutboundPolicy.from_settings(settings)
    except ValueError as error:
        fail(f"the outbound policy (RTE_OUTBOUND_ALLOW / RTE_OUTBOUND_DENY): {error}")
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run_worker(settings))
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:
        fail(f"the worker stopped: {error}", hint="is Temporal running? start everything with `rte up`")
    # Not asyncio.run: its teardown joins executor threads, and a step stuck in a thread (a sync
    # python function ignoring its cancellation) would keep a drained worker alive forever.
    exit_now(0)
