"""Serverless Workflow 1.0 (CNCF, `document.dsl: 1.0.x`): the second front end of the engine.

`compile_swf` lowers a document to the same Plan the native format compiles to (see `lower.py` for
the mapping and `unsupported.py` for what is refused, and why); `workflows/swf/flow.py` runs such a
plan with the spec's data flow; `export_swf` writes a native plan back as a Serverless Workflow
document where the plan allows it.
"""

from workflows.swf.catalog import WorkflowCatalog, default_catalog
from workflows.swf.lower import compile_swf

__all__ = ["WorkflowCatalog", "compile_swf", "default_catalog"]
