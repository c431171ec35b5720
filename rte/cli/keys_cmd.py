"""`rte keys create|list|revoke`: API keys with roles (viewer, operator, admin)."""

from __future__ import annotations

from typing import Annotated

import typer

from rte.cli._common import DataDirOpt, err_console, fail, open_store, run_async, settings_from
from rte.store.api_keys import Role

keys = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(keys, name="keys")


@keys.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator or admin.")] = "viewer",
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a key and print it (shown only this once)."""
    if role not in {r.value for r in Role}:
        fail(f"--role must be one of viewer, operator, admin — not '{role}'")

    async def go() -> int:
        store = await open_store(settings_from(database_url=database_url, data_dir=data_dir), create=True)
        try:
            created = await store.api_keys.create(name, role)
        finally:
            await store.close()
        err_console.print(
            f"created {role} key '{name}' (id {created.info.id}); it is shown only once:", markup=False
        )
        print(created.key)
        return 0

    run_async(go())


@keys.command("list")
def list_keys(
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List keys (never their secrets)."""

    async def go() -> int:
        store = await open_store(settings_from(database_url=database_url, data_dir=data_dir), create=False)
        try:
            for info in await store.api_keys.list():
                state = "revoked" if info.revoked_at else "active"
                print(f"{info.id}  {info.role.value:8}  {state:7}  {info.name}")
        finally:
            await store.close()
        return 0

    run_async(go())


@keys.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `rte keys list`).")],
    database_url: Annotated[str | None, typer.Option(help="SQL store URL.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key at once."""

    async def go() -> int:
        store = await open_store(settings_from(database_url=database_url, data_dir=data_dir), create=False)
        try:
            if not await store.api_keys.revoke(key_id):
                fail(f"no active key with id '{key_id}'", code=1)
        finally:
            await store.close()
        err_console.print(f"revoked {key_id}", markup=False)
        return 0

    run_async(go())
