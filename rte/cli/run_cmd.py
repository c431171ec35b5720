"""`rte run`: compile a definition, start it on Temporal, show live progress, print the output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from api.visibility import temporal_ui_url
from rte import json_input
from rte.cli._common import (
    DataDirOpt,
    Output,
    OutputOpt,
    command_line,
    connect_client,
    err_console,
    fail,
    open_optional_store,
    run_async,
    settings_from,
)
from rte.cli.progress import ProgressView
from rte.config import Settings
from rte.errors import EngineError
from rte.executions import outcome, start_execution
from rte.store import Store
from rte.store.catalog import load_swf_catalog
from rte.watch import NoWorkerError, watch
from workflows.compiler import compile_file
from workflows.diagnostics import format_diagnostic
from workflows.params import ParamsError, parse_cli_params, validate_params
from workflows.plan import Plan
from workflows.swf import WorkflowCatalog


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    file: Annotated[Path, typer.Argument(help="Definition file (YAML or JSON).")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Run parameter key=value (repeatable).")
    ] = None,
    input_: Annotated[
        str | None, typer.Option("--input", help="Run parameters as JSON, or @file.json.")
    ] = None,
    output: OutputOpt = Output.TEXT,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start and print the execution id.")] = False,
    execution_id: Annotated[
        str | None, typer.Option("--id", help="Execution id (default: generated).")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Temporal address host:port.")] = None,
    namespace: Annotated[str | None, typer.Option(help="Temporal namespace.")] = None,
    task_queue: Annotated[str | None, typer.Option(help="Task queue of the workers.")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run a workflow and follow it live; exits 1 when the execution fails."""
    settings = settings_from(
        data_dir=data_dir,
        temporal_address=address,
        namespace=namespace,
        task_queue=task_queue,
        database_url=database_url,
    )
    run_async(_run(file, param or [], input_, output, detach, execution_id, settings))


def _load_params(schema: dict[str, Any], pairs: list[str], input_: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if input_:
        text = input_
        if input_.startswith("@"):
            path = Path(input_[1:])
            if not path.is_file():
                fail(f"--input file '{path}' does not exist")
            text = path.read_text()
        try:
            params = json_input.loads(text)
        except json.JSONDecodeError as error:
            fail(f"--input is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}")
        except json_input.JsonInputError as error:
            fail(f"--input is refused at {error.path}: {error.message}")
        if not isinstance(params, dict):
            fail("--input must be a JSON object of parameters")
    try:
        params |= parse_cli_params(schema, pairs)
        return validate_params(schema, params)
    except ParamsError as error:
        for violation in error.violations:
            err_console.print(
                f"[red]invalid parameter[/] {escape(violation['path'])}: {escape(violation['message'])}",
                highlight=False,
            )
        fail(
            "the run parameters do not match the workflow's input schema",
            hint="see `rte compile --format json` for the schema",
        )
    except ValueError as error:
        fail(str(error))


async def save_definition(store: Store, plan: Plan, source: str) -> str:
    """Record a definition's version (a new one when its plan changed); answers the version."""
    return await store.definitions.save(
        plan.definition_id,
        plan.name,
        plan.description or "",
        plan.source_format,
        source,
        plan.model_dump(mode="json", by_alias=True),
        plan.hash,
    )


async def _run(
    file: Path,
    pairs: list[str],
    input_: str | None,
    output: Output,
    detach: bool,
    execution_id: str | None,
    settings: Settings,
) -> int:
    if not file.is_file():
        fail(f"'{file}' does not exist or is not a file")
    # The store records the definition that runs and knows the workflows `run: workflow` may name;
    # without it the run still goes on (self-contained workflows only, nothing recorded).
    store = await open_optional_store(settings)
    try:
        return await _run_with(store, file, pairs, input_, output, detach, execution_id, settings)
    finally:
        if store:
            await store.close()


async def _run_with(
    store: Store | None,
    file: Path,
    pairs: list[str],
    input_: str | None,
    output: Output,
    detach: bool,
    execution_id: str | None,
    settings: Settings,
) -> int:
    catalog = await load_swf_catalog(store.definitions) if store else WorkflowCatalog()
    compilation = compile_file(file, catalog=catalog)
    for diagnostic in compilation.diagnostics:
        if diagnostic.severity == "error" or output == Output.TEXT:
            err_console.print(format_diagnostic(diagnostic, str(file)), highlight=False, markup=False)
    if not compilation.ok or compilation.plan is None:
        fail(f"{file} does not compile", hint=f"run `rte compile {file}` for details")
    params = _load_params(compilation.plan.input_schema, pairs, input_)
    version = await save_definition(store, compilation.plan, file.read_text()) if store else None
    plan = compilation.plan
    client = await connect_client(settings)
    # The store also holds large parameters and outputs (claim check: rte/claim_check.py).
    payloads = store.payloads if store else None
    try:
        handle = await start_execution(
            client,
            plan,
            params,
            task_queue=settings.task_queue,
            step_task_queues=settings.step_task_queues(),
            execution_id=execution_id,
            definition_version=version,
            payloads=payloads,
            offload_bytes=settings.payload_offload_bytes,
        )
    except EngineError as error:
        fail(error.message)
    ui = temporal_ui_url(settings, handle.id)
    if detach:
        if output == Output.JSON:
            print(json.dumps({"execution_id": handle.id, "run_id": handle.result_run_id}))
        else:
            print(handle.id)
        return 0
    err_console.print(f"execution [bold]{escape(handle.id)}[/] started — {ui}", highlight=False)
    try:
        with ProgressView(err_console, settings) as view:
            async for state in watch(client, handle.id):
                view.update(state)
    except NoWorkerError as error:
        fail(
            str(error),
            code=1,
            hint=f"the execution {handle.id} is durable and will run when a worker starts; follow it "
            f"then with `{command_line(settings, 'status', handle.id)}`",
        )
    try:
        ok, result = await outcome(handle, payloads)
    except EngineError as error:
        fail(f"the execution ended but its output cannot be read: {error.message}", code=1)
    if output == Output.JSON:
        print(json.dumps(result, indent=2, default=str))
    elif ok:
        err_console.print("[green]completed[/]")
        print(json.dumps(result, indent=2, default=str))
    else:
        # escape: `[category]` is not Rich markup.
        line = f"[{result.get('category')}] {result.get('message')}"
        err_console.print(f"[bold red]failed[/] {escape(line)}", highlight=False)
        err_console.print(f"  details: {command_line(settings, 'status', handle.id)} — {ui}", markup=False)
    return 0 if ok else 1
