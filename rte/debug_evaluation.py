"""Evaluating an expression at a paused execution's scope, for the API and the CLI alike.

The workflow answers the `debug_evaluate` query itself only when the program is provably cheap on
the paused scope; otherwise this process reads the scope (`debug_variables`) and runs the program
in its own guarded evaluator (time and memory limits), so neither a query nor the workflow thread
ever runs a costly program.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from activities.expression import evaluate_guarded
from workflows.expressions import ExpressionRequest
from workflows.state import EvaluateRequest, EvaluateResult, bounded

Query = Callable[[str, BaseModel | None, Any], Awaitable[Any]]


async def evaluate_at_pause(query: Query, expression: str) -> EvaluateResult:
    """`query(name, argument, result_type)` asks the execution; the answer is bounded in size."""
    result: EvaluateResult = await query("debug_evaluate", EvaluateRequest(expression=expression), EvaluateResult)
    if not result.outside:
        return result
    variables = await query("debug_variables", None, dict[str, Any])
    outcome = await evaluate_guarded(ExpressionRequest(program=expression, data=variables))
    if not outcome.ok:
        return EvaluateResult(ok=False, error=outcome.error)
    return EvaluateResult(ok=True, value=bounded(outcome.value))
