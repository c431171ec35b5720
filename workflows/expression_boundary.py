"""Where an expression is evaluated while a workflow runs: the one boundary between the workflow
thread and the guarded evaluator.

- In place: a template whose programs are all plain paths (`.item`, `.inputs.x`) is read by walking
  the data, whatever its size.
- In the thread: a template whose programs are all provably cheap (`is_cheap`, a linear-time subset
  of jq) on a document under `IN_THREAD_MAX_INPUT_BYTES` with no claim-check reference. It costs
  microseconds, needs no history event, and gives the same answer on every replay.
- Outside: everything else, as the `rte.expression` local activity (`activities/expression.py`),
  which evaluates in a child process with a time and a memory limit. Its answer is recorded in
  history, so a replay reads it back instead of evaluating again: no process, lock or wall clock
  ever decides anything in workflow code, and a runaway program fails its own step within seconds
  while the worker's other executions go on.

Both answers are the same kind of value: the result, or an `ExpressionError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from rte.errors import ExpressionError
    from workflows.expressions import (
        NOT_WALKED,
        Document,
        ExpressionOutcome,
        ExpressionRequest,
        evaluate_program,
        evaluate_template_in,
        fits_in_thread,
        plain_path,
        program_fits_in_thread,
        truthy,
        walk_path,
        walk_template,
    )

EXPRESSION_ACTIVITY = "rte.expression"
# Long enough to wait for a free evaluator child behind other runaways; each evaluation itself is
# limited (a couple of seconds) by the evaluator.
OUTSIDE_TIMEOUT = timedelta(seconds=30)
# Executions recorded before the boundary existed evaluated every program in the thread; their
# histories hold no expression activity, so replaying them must not schedule one.
_PATCH = "rte-expression-boundary"


async def evaluate_template(template: Any, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """Every `${ }` of a template, evaluated against `data` with named `variables`."""
    walked = walk_template(template, data)
    if walked is not NOT_WALKED:  # plain paths: read in place, whatever the document's size
        return walked
    document = Document(data, variables)
    if fits_in_thread(template, document) or not workflow.patched(_PATCH):
        return evaluate_template_in(template, document)
    return await _outside(ExpressionRequest(template=template, data=data, variables=_plain(variables)))


async def evaluate(program: str, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """One bare jq program (no `${ }`), evaluated against `data`."""
    fields = plain_path(program)
    if fields is not None:
        walked = walk_path(fields, data)
        if walked is not NOT_WALKED:
            return walked
    document = Document(data, variables)
    if program_fits_in_thread(program, document) or not workflow.patched(_PATCH):
        return evaluate_program(program, document)
    return await _outside(ExpressionRequest(program=program, data=data, variables=_plain(variables)))


async def holds(program: str, data: Any, variables: Mapping[str, Any] | None = None) -> bool:
    """A condition: the program's value is true in jq's sense."""
    return truthy(await evaluate(program, data, variables))


async def _outside(request: ExpressionRequest) -> Any:
    outcome = await workflow.execute_local_activity(
        EXPRESSION_ACTIVITY,
        request,
        start_to_close_timeout=OUTSIDE_TIMEOUT,
        retry_policy=RetryPolicy(maximum_attempts=1),
        result_type=ExpressionOutcome,
    )
    if not outcome.ok:
        raise ExpressionError(outcome.error or "the expression failed", expression=outcome.details.get("expression"))
    return outcome.value


def _plain(variables: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(variables) if variables else None
