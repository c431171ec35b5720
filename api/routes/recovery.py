"""Failure recovery (operator role): decide a step paused on its error, retry an execution from
scratch, resume it from its failure — one at a time or in bulk (ids or a filter, answered per
execution). The logic lives in `rte.recovery` (shared with the CLI and error analysis)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, status

from api.bulk import bulk_targets, run_bulk
from api.connection_guard import bound_connection, is_admin, refused
from api.deps import OffloadDep, OperatorKey, SettingsDep, TemporalClientDep
from api.errors import Problem
from api.models import (
    ActionOut,
    BulkResult,
    DebugView,
    RecoveryBulkRequest,
    RecoveryDecisionIn,
    problems,
)
from api.routes.debug import _view
from api.routes.executions import ExecutionId, _describe, send_update
from rte.recovery import RecoveryError, resume_from_failure, retry_from_scratch
from workflows.state import RecoveryDecision

router = APIRouter(prefix="/executions", tags=["recovery"], responses=problems(401, 403, 404, 409, 422, 503))

Recover = Callable[..., Awaitable[str]]


@router.post("/{execution_id}/recovery/decision", response_model=DebugView)
async def decide(
    execution_id: ExecutionId,
    body: RecoveryDecisionIn,
    client: TemporalClientDep,
    offload: OffloadDep,
    key: OperatorKey,
) -> DebugView:
    """Retry (optionally with an edited input or timeout), skip (with a substitute output) or fail a
    step that waits after its error (on_error: pause); for a for_each, retry reruns only failed items.
    Below admin, a retry with an edited input of a step bound to a connection is refused (403)."""
    if body.action == "retry" and body.input is not None and not is_admin(key):
        connection = await bound_connection(client, execution_id, body.step)
        if connection:
            raise refused(key, "retrying with an edited input", body.step, connection)
    decision = RecoveryDecision(**body.model_dump(), by=key.name)
    return _view(execution_id, await send_update(client, execution_id, "decide_recovery", decision, offload))


@router.post("/{execution_id}/resume", response_model=ActionOut, status_code=status.HTTP_202_ACCEPTED)
async def resume(
    execution_id: ExecutionId, client: TemporalClientDep, settings: SettingsDep, _: OperatorKey
) -> ActionOut:
    """A new execution that reuses the outputs of the steps that succeeded and starts at the failure."""
    return await _one(client, settings.task_queue, execution_id, resume_from_failure, "resumed")


@router.post("/{execution_id}/retry", response_model=ActionOut, status_code=status.HTTP_202_ACCEPTED)
async def retry(
    execution_id: ExecutionId, client: TemporalClientDep, settings: SettingsDep, _: OperatorKey
) -> ActionOut:
    """A new execution from scratch with the same parameters and configuration."""
    return await _one(client, settings.task_queue, execution_id, retry_from_scratch, "retried")


@router.post("/recovery/bulk", response_model=BulkResult)
async def bulk(
    body: RecoveryBulkRequest, client: TemporalClientDep, settings: SettingsDep, _: OperatorKey
) -> BulkResult:
    """Retry or resume every execution given by ids or matching a filter; answers per execution."""
    ids = await bulk_targets(client, body.ids, body.filter, body.limit)
    action: Recover = resume_from_failure if body.action == "resume" else retry_from_scratch
    return await run_bulk(
        body.action,
        ids,
        lambda execution_id: _one(client, settings.task_queue, execution_id, action, body.action),
        ok_status=201,
    )


async def _one(
    client: TemporalClientDep, default_queue: str, execution_id: str, action: Recover, verb: str
) -> ActionOut:
    description = await _describe(client, execution_id)  # 404 / 503 as the rest of the API answers
    try:
        new_id = await action(client, execution_id, task_queue=description.task_queue or default_queue)
    except RecoveryError as error:
        raise Problem(error.status, "Cannot recover", error.message) from None
    return ActionOut(execution_id=execution_id, message=f"{verb} as '{new_id}'", new_execution_id=new_id)
