"""Helpers every command shares: settings from flags and the running stack, clean exits, the error
console, opening the store and the Temporal client with clear errors."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Coroutine
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url

from rte.cli.stack import SHARED_FIELDS, StackCard, StaleCard, fingerprint, read_card, store_label
from rte.config import DEFAULT_DATA_DIR, Settings

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowExecutionDescription

    from rte.store import Store

err_console = Console(stderr=True, soft_wrap=True)  # messages keep whole lines (paths, URLs)
# Bounds every single call to Temporal a command makes (the long waits have their own progress).
RPC_TIMEOUT = timedelta(seconds=10)

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="The data folder of the stack to talk to (as given to `rte up`); default RTE_DATA_DIR, else .rte.",
        show_default=False,
    ),
]


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text, or json for scripts.")]

POINT_AT_STACK = (
    "if `rte up` runs with another data folder, point this command at it with --data-dir DIR "
    "or `export RTE_DATA_DIR=DIR` (the banner of `rte up` prints the exact line)"
)


def settings_from(**overrides: Any) -> Settings:
    """Settings for a command: its flags (when given) > RTE_* variables > the running stack's card
    (`rte up` writes it into the data folder) > defaults."""
    given = {key: value for key, value in overrides.items() if value is not None}
    settings = Settings(**given)
    try:
        card = read_card(settings.data_dir)
    except StaleCard as stale:
        warn(f"{stale}; ignoring it (start the stack again with `rte up --data-dir {settings.data_dir}`)")
        return settings
    if card is None:
        return settings
    from_card = {
        name: getattr(card, name) for name in SHARED_FIELDS if name not in given and not _env_has(name)
    }
    return Settings(**given, **from_card) if from_card else settings


def _env_has(field: str) -> bool:
    # pydantic-settings matches RTE_* names case-insensitively.
    name = f"RTE_{field}".upper()
    return any(key.upper() == name for key in os.environ)


def running_stack(settings: Settings) -> StackCard | None:
    try:
        return read_card(settings.data_dir)
    except StaleCard:
        return None  # settings_from has said so already


def command_line(settings: Settings, *args: str) -> str:
    """A command to type, exactly: quoted, with --data-dir when the stack's folder is not the default."""
    words = ["rte", *args]
    if settings.data_dir.resolve() != DEFAULT_DATA_DIR.resolve():
        words += ["--data-dir", str(settings.data_dir.resolve())]
    return shlex.join(words)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def fail(message: str, code: int = 2, hint: str | None = None) -> NoReturn:
    """Print the error (and a hint) and exit: 2 for bad input, 1 for an operation that failed."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint:
        err_console.print(f"  [dim]hint:[/] {escape(hint)}", highlight=False)
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Exit without running interpreter teardown.

    Short-lived processes holding a Temporal client can crash in teardown
    (temporalio/sdk-python#300); flushing and leaving with os._exit keeps the exit code and no
    crash text.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_async(coroutine: Coroutine[Any, Any, int]) -> NoReturn:
    try:
        code = asyncio.run(coroutine)
    except KeyboardInterrupt:
        code = 130
    exit_now(code)


async def connect_client(settings: Settings) -> Client:
    from rte.temporal import connect

    try:
        return await connect(settings)
    except Exception as error:  # noqa: BLE001 - any connection failure gets the same advice
        fail(
            f"cannot reach Temporal at {settings.temporal_address}: {error}",
            code=1,
            hint=f"start the stack with `rte up`; {POINT_AT_STACK}",
        )


def store_file(settings: Settings) -> Path | None:
    """The SQLite file of the store, or None for a server database (PostgreSQL)."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).expanduser().resolve()


async def open_store(settings: Settings, *, create: bool) -> Store:
    """The SQL store. A command that only reads refuses to make an empty one (`create=False`); one
    that writes says loudly when it starts a new store, since the running stack may live elsewhere."""
    from rte.errors import EngineError

    _check_new_store(settings, create)
    try:
        return await _open(settings)
    except EngineError as error:
        fail(error.message, code=1)


async def open_optional_store(settings: Settings) -> Store | None:
    """The store when it can be opened; a warning and None otherwise (for commands that only record)."""
    _check_new_store(settings, create=True)
    try:
        return await _open(settings)
    except Exception as error:  # noqa: BLE001 - the store is a record here, not a requirement
        warn(f"the store is unavailable, nothing will be recorded: {error}")
        return None


async def _open(settings: Settings) -> Store:
    from rte.store import Store

    return await Store.open(settings)


def _check_new_store(settings: Settings, create: bool) -> None:

    path = store_file(settings)
    if path is not None and not path.exists():
        if not create:
            fail(f"there is no store at {path}: nothing was ever recorded there", code=1, hint=POINT_AT_STACK)
        warn(
            f"creating a NEW store at {path}, with a secret key of its own: definitions, connections "
            f"and keys saved now go there, not to a stack running elsewhere; {POINT_AT_STACK}"
        )
    _check_same_store(settings)


def _check_same_store(settings: Settings) -> None:
    card = running_stack(settings)
    if card is None:
        return
    if card.store_fingerprint != fingerprint(settings.resolved_database_url):
        warn(
            f"this command uses the store {store_label(settings)}, but the stack running on "
            f"{card.data_dir} uses {card.store}: it will not see what this command writes. Set "
            "RTE_DATABASE_URL as in the terminal of `rte up`"
        )
    ours = fingerprint(settings.secret_key) if settings.secret_key else None
    if ours != card.secret_key_fingerprint:
        theirs = "RTE_SECRET_KEY" if card.secret_key_fingerprint else "the key file in its data folder"
        warn(
            f"the stack running on {card.data_dir} encrypts connection secrets with {theirs}, this "
            f"command with {'another RTE_SECRET_KEY' if ours else 'the key file'}: its workers could not "
            "read secrets saved here. Use the same RTE_SECRET_KEY (or none) in both terminals"
        )


async def describe_execution(
    client: Client, execution: str, settings: Settings
) -> WorkflowExecutionDescription:
    """The engine's execution with this id, or a clear error and exit 1."""
    from temporalio.service import RPCError, RPCStatusCode

    from rte.temporal import WORKFLOW_TYPE

    try:
        description = await client.get_workflow_handle(execution).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        if error.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            fail(f"cannot read execution '{execution}': {error.message}", code=1)
        description = None
    if description is None or description.workflow_type != WORKFLOW_TYPE:
        fail(
            f"no execution '{execution}' in Temporal at {settings.temporal_address}",
            code=1,
            hint=f"see the executions with `rte list`; {POINT_AT_STACK}",
        )
    return description


async def connect_to_worker_of(execution: str, settings: Settings) -> Client:
    """A client for a command the execution's worker must answer (an update or a query): a clear
    exit 1 at once when the execution is unknown or no worker polls its task queue, not a wait."""
    from rte.watch import worker_available

    client = await connect_client(settings)
    description = await describe_execution(client, execution, settings)
    if not await worker_available(client, description.task_queue):
        fail(
            f"no worker polls the task queue '{description.task_queue}' of '{execution}', so nothing "
            "can answer this command",
            code=1,
            hint=f"start one with `rte up` or `rte worker`; the execution is durable and waits; {POINT_AT_STACK}",
        )
    return client
