"""The `rte` command: one typer app, one module per group of commands."""

from __future__ import annotations

import typer

from rte.cli import (
    approve_cmd,
    compile_cmd,
    connections_cmd,
    debug_cmd,
    export_cmd,
    keys_cmd,
    recover_cmd,
    run_cmd,
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
    approve_cmd,
    debug_cmd,
    recover_cmd,
    connections_cmd,
    keys_cmd,
    export_cmd,
):
    module.register(app)


def main() -> None:
    app()
