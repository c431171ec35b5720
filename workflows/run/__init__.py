"""The native interpreter, read top-down:

- `run.py` — `Run`: one execution's state and the life cycle every step goes through;
- `dag.py` — a block of steps started as their `needs` end; switches gate their targets;
- `for_each.py` — items, batches, child-workflow slices, failed-item decisions;
- `activity_call.py` — a step's activity: id, options, retries, task queue, local or regular;
- `kinds/` — one small handler per step kind;
- `failures.py`, `search_attributes.py` — how steps fail; coalesced search-attribute updates.

Expressions are evaluated through `workflows/expression_boundary.py` (in the thread or outside).
The Serverless Workflow front end (`workflows/swf/flow.py`) drives the same `Run`.
"""

from workflows.run.activity_call import checkpoint
from workflows.run.failures import StepFailed
from workflows.run.kinds.approval import approval_key
from workflows.run.run import Run

__all__ = ["Run", "StepFailed", "approval_key", "checkpoint"]
