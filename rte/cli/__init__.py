"""The `rte` command: one typer app, one module per group of commands."""

from __future__ import annotations

import typer

from rte.cli import (
    approve_cmd,
    compile_cmd,
    connections_cmd,
    control_cmd,
    debug_cmd,
    definitions_cmd,
    export_cmd,
    keys_cmd,
    list_cmd,
    logs_cmd,
    recover_cmd,
    run_cmd,
    status_cmd,
    up_cmd,
    worker_cmd,
)

app = typer.Typer(
    name="rte",
    help="Runtime Engine: compile workflows, run them durably on Temporal, watch them live.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (
    up_cmd,
    worker_cmd,
    compile_cmd,
    run_cmd,
    list_cmd,
    status_cmd,
    logs_cmd,
    control_cmd,
    approve_cmd,
    debug_cmd,
    recover_cmd,
    definitions_cmd,
    connections_cmd,
    keys_cmd,
    export_cmd,
):
    module.register(app)


def main() -> None:
    app()
