"""`rte connections set|list|delete`: credentials for the services steps call.

Secrets are given as `--secret key=value` (or `--secret key=@file`, or `--secret key=-` to read it
from stdin, so it never shows in shell history); they are encrypted at rest and never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rte.cli._common import DataDirOpt, err_console, fail, open_store, run_async, settings_from
from rte.errors import EngineError

connections = typer.Typer(help="Connections (credentials) for http and ai steps.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(connections, name="connections")


def _pairs(values: list[str], option: str, secret: bool) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            fail(f"{option} takes key=value, got '{value if not secret else key + '=…'}'")
        if secret and raw == "-":
            raw = sys.stdin.readline().rstrip("\n")
        elif secret and raw.startswith("@"):
            path = Path(raw[1:])
            if not path.is_file():
                fail(f"{option} {key}: file '{path}' does not exist")
            raw = path.read_text().strip()
        pairs[key] = raw
    return pairs


@connections.command("set")
def set_connection(
    connection_id: Annotated[str, typer.Argument(help="Connection id, e.g. crm.")],
    type_: Annotated[str, typer.Option("--type", help="bearer, api_key, basic or openai.")],
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            help="Non-secret setting key=value, e.g. base_url=https://…, or allowed_origins=https://a,https://b "
            "(the only origins the credentials go to; default: base_url's origin).",
        ),
    ] = None,
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="Secret key=value, key=@file or key=- (stdin).")
    ] = None,
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create or replace a connection."""
    config_values = _pairs(config or [], "--config", secret=False)
    secret_values = _pairs(secret or [], "--secret", secret=True)

    async def go() -> int:
        store = await open_store(settings_from(database_url=database_url, data_dir=data_dir), create=True)
        try:
            info = await store.connections.put(connection_id, type_, config_values, secret_values)
        except EngineError as error:
            fail(error.message)
        finally:
            await store.close()
        err_console.print(
            f"saved connection '{info.id}' ({info.type}); secret fields set: {', '.join(info.secret_fields)}",
            markup=False,
        )
        return 0

    run_async(go())


@connections.command("list")
def list_connections(
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List connections (never their secrets)."""

    async def go() -> int:
        store = await open_store(settings_from(database_url=database_url, data_dir=data_dir), create=False)
        try:
            for info in await store.connections.list_public():
                print(f"{info.id}  {info.type:8}  {info.config}  secrets: {', '.join(info.secret_fields)}")
        finally:
            await store.close()
        return 0

    run_async(go())


@connections.command("delete")
def delete_connection(
    connection_id: Annotated[str, typer.Argument(help="Connection id.")],
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete a connection."""

    async def go() -> int:
        store = await open_store(settings_from(database_url=database_url, data_dir=data_dir), create=False)
        try:
            if not await store.connections.delete(connection_id):
                fail(f"no connection '{connection_id}'", code=1)
        finally:
            await store.close()
        err_console.print(f"deleted connection '{connection_id}'", markup=False)
        return 0

    run_async(go())
