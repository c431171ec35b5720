"""The workflows a Serverless Workflow `run: workflow` task may name, loaded from the definitions store.

A child's plan is embedded in its parent's at compile time, so whoever compiles (the API, the CLI)
hands the compiler every stored Serverless Workflow version.
"""

from __future__ import annotations

from rte.store.repositories import DefinitionRepository
from workflows.plan import Plan
from workflows.swf import WorkflowCatalog


async def load_swf_catalog(definitions: DefinitionRepository) -> WorkflowCatalog:
    catalog = WorkflowCatalog()
    for latest in await definitions.list_latest():
        if latest.format != "swf":
            continue
        for row in await definitions.list_versions(latest.id):
            catalog.add(Plan.model_validate(row.plan))
    return catalog
