"""Scheduled runs: cron and interval schedules of a definition, kept by Temporal Schedules.

Reading schedules is for viewers; creating, pausing, triggering and deleting them is for operators
(it starts runs, like POST /definitions/{id}/runs). A schedule runs the plan of the definition
version it was created with, with parameters validated once, at creation: editing the definition
later does not change it (create a new schedule to pick up a new version). Every run it starts
carries `RteTriggerType = 'schedule'`. The list comes from Temporal visibility, which is eventually
consistent: a schedule just created may take a moment to be listed (GET /schedules/{id} sees it at once).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionResult,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from api.deps import OperatorKey, SettingsDep, StoreDep, TemporalClientDep, ViewerKey
from api.errors import Problem, rpc_problem
from api.models import DEFINITION_ID, VERSION, RunConfig
from api.routes.definitions import load_definition
from api.routes.runs import customised_plan
from rte import temporal as sa
from rte.claim_check import refuse_references
from rte.executions import execution_search_attributes, offload_params
from rte.store import Store
from workflows.durations import parse_duration
from workflows.params import validate_params
from workflows.plan import Plan
from workflows.state import ExecutionConfig, ExecutionInput

router = APIRouter(prefix="/schedules", tags=["triggers"])

SCHEDULE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ScheduleId = Annotated[str, Path(pattern=SCHEDULE_ID, max_length=100, examples=["orders-nightly"])]
Overlap = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"]
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such schedule or definition (problem+json)"},
    422: {"description": "Invalid parameters, cron expression, interval or time zone (problem+json)"},
}


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented (api.models._In)

    id: str | None = Field(
        None,
        pattern=SCHEDULE_ID,
        max_length=100,
        description="Default: `<definition>-<random>`. Runs get ids `<schedule id>-<time>`.",
        examples=["orders-nightly"],
    )
    definition_id: str = Field(pattern=DEFINITION_ID, max_length=200, examples=["orders"])
    version: str | None = Field(
        None, pattern=VERSION, max_length=20, description="The version every run uses; default: the latest."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Validated now, against the input schema.", examples=[{"limit": 50}]
    )
    config: RunConfig | None = None
    cron: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Cron expressions (5 fields, or @daily, @hourly…), in `time_zone`.",
        examples=[["0 6 * * MON-FRI"]],
    )
    every: str | float | None = Field(
        None, description="An interval: seconds, or 30s, 15m, 1h, PT1H…", examples=["15m"]
    )
    time_zone: str = Field("UTC", max_length=100, examples=["Europe/Paris"])
    overlap: Overlap = Field("skip", description="What to do when a run is due while the previous one runs.")
    paused: bool = False
    note: str | None = Field(None, max_length=1000, examples=["paused during the CRM migration"])

    @model_validator(mode="after")
    def _when(self) -> ScheduleIn:
        if not self.cron and self.every is None:
            raise ValueError("give `cron` expressions, an `every` interval, or both")
        return self


class ScheduleNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=1000, examples=["CRM maintenance window"])


class ScheduledRun(BaseModel):
    execution_id: str = Field(examples=["orders-nightly-2026-11-28T06:00:00Z"])
    run_id: str
    scheduled_at: datetime
    started_at: datetime


class ScheduleOut(BaseModel):
    id: str = Field(examples=["orders-nightly"])
    definition_id: str = Field(examples=["orders"])
    definition_version: str = Field(examples=["3"])
    params: dict[str, Any] = Field(examples=[{"limit": 50}])
    cron: list[str] = Field(examples=[["0 6 * * MON-FRI"]])
    every_s: float | None = Field(examples=[900.0])
    time_zone: str = Field(examples=["UTC"])
    overlap: str = Field(examples=["skip"])
    paused: bool
    note: str | None = None
    next_runs: list[datetime] = Field(description="The next few times a run is due; empty while paused.")
    recent_runs: list[ScheduledRun] = Field(description="The latest runs it started, oldest first.")
    created_at: datetime | None = Field(None, description="Not included in lists.")


MAX_EVERY_S = 3650 * 86400


def _rpc_problem(error: RPCError, schedule_id: str) -> Problem:
    if error.status == RPCStatusCode.NOT_FOUND:
        return Problem(404, "Not found", f"no schedule '{schedule_id}'")
    if error.status == RPCStatusCode.INVALID_ARGUMENT:
        return Problem(422, "Invalid schedule", error.message)
    return rpc_problem(error, f"the call on schedule '{schedule_id}' failed")


def _runs(actions: list[ScheduleActionResult]) -> list[ScheduledRun]:
    return [
        ScheduledRun(
            execution_id=result.action.workflow_id,
            run_id=result.action.first_execution_run_id,
            scheduled_at=result.scheduled_at,
            started_at=result.started_at,
        )
        for result in actions
        if isinstance(result.action, ScheduleActionExecutionStartWorkflow)
    ]


def _out(schedule_id: str, memo: dict[str, Any], **fields: Any) -> ScheduleOut:
    if fields.get("paused"):
        fields["next_runs"] = []  # Temporal still computes them, but none is due while paused
    return ScheduleOut(
        id=schedule_id,
        definition_id=memo["definition_id"],
        definition_version=memo["definition_version"],
        params=memo.get("params") or {},
        cron=memo.get("cron") or [],
        every_s=memo.get("every_s"),
        time_zone=memo.get("time_zone") or "UTC",
        overlap=memo.get("overlap") or "skip",
        **fields,
    )


async def _describe(handle: ScheduleHandle) -> ScheduleOut:
    try:
        description = await handle.describe()
    except RPCError as error:
        raise _rpc_problem(error, handle.id) from None
    memo = await description.memo()
    if "definition_id" not in memo:
        raise Problem(404, "Not found", f"no schedule '{handle.id}' of this engine")
    return _out(
        handle.id,
        memo,
        paused=description.schedule.state.paused,
        note=description.schedule.state.note or None,
        next_runs=list(description.info.next_action_times),
        recent_runs=_runs(list(description.info.recent_actions)),
        created_at=description.info.created_at,
    )


async def _existing(client: Client, schedule_id: str) -> ScheduleHandle:
    handle = client.get_schedule_handle(schedule_id)
    await _describe(handle)  # 404 unless it exists and is one of ours
    return handle


async def _action(
    store: Store, body: ScheduleIn, task_queue: str, offload_bytes: int, step_task_queues: dict[str, str]
) -> tuple[ScheduleActionStartWorkflow, dict[str, Any]]:
    row = await load_definition(store, body.definition_id, body.version)
    plan = Plan.model_validate(row.plan)
    params = validate_params(plan.input_schema, body.params)
    refuse_references(params, "$.params")
    # The schedule keeps its action (and memo) in Temporal: large parameters go by reference.
    params = await offload_params(params, store.payloads, offload_bytes)
    config = body.config or RunConfig()
    plan = await customised_plan(store, plan, {}, config)
    try:
        every_s = parse_duration(body.every) if body.every is not None else None
    except ValueError as error:
        raise Problem(
            422, "Invalid schedule", str(error), violations=[{"path": "$.every", "message": str(error)}]
        ) from None
    if every_s is not None and not 1 <= every_s <= MAX_EVERY_S:
        # Beyond ten years the interval overflowed timedelta: a 500, now a 422.
        why = "must be at least 1 s" if every_s < 1 else f"must be at most {MAX_EVERY_S // 86400} days"
        raise Problem(
            422, "Invalid schedule", f"`every` {why}", violations=[{"path": "$.every", "message": why}]
        )
    timeout_s = config.timeout_s or plan.timeout_s
    run_input = ExecutionInput(
        plan=plan,
        params=params,
        trigger="schedule",
        config=ExecutionConfig(
            error_mode=config.error_mode,
            max_concurrency=config.max_concurrency,
            timeout_s=config.timeout_s,
            debug=config.debug,
        ),
        step_task_queues=step_task_queues,
        definition_version=row.version,
    )
    attributes = execution_search_attributes(plan, "schedule", row.version)
    action = ScheduleActionStartWorkflow(
        sa.WORKFLOW_TYPE,
        run_input,
        id=body.id or "",
        task_queue=task_queue,
        execution_timeout=timedelta(seconds=timeout_s) if timeout_s else None,
        typed_search_attributes=attributes,
    )
    memo = {
        "definition_id": row.id,
        "definition_version": row.version,
        "params": params,
        "cron": body.cron,
        "every_s": every_s,
        "time_zone": body.time_zone,
        "overlap": body.overlap,
    }
    return action, memo


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    responses={409: {"description": "A schedule with this id exists (problem+json)"}, **_PROBLEMS},
)
async def create_schedule(
    body: ScheduleIn, store: StoreDep, client: TemporalClientDep, settings: SettingsDep, _: OperatorKey
) -> ScheduleOut:
    """Schedule runs of a definition on cron expressions and/or a fixed interval."""
    schedule_id = body.id or f"{body.definition_id}-{secrets.token_hex(4)}"
    action, memo = await _action(
        store,
        body.model_copy(update={"id": schedule_id}),
        settings.task_queue,
        settings.payload_offload_bytes,
        settings.step_task_queues(),
    )
    every = memo["every_s"]
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(
            cron_expressions=body.cron,
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every))] if every else [],
            time_zone_name=body.time_zone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy[body.overlap.upper()]),
        state=ScheduleState(paused=body.paused, note=body.note),
    )
    attributes = TypedSearchAttributes(
        [
            SearchAttributePair(sa.DEFINITION_ID, memo["definition_id"]),
            SearchAttributePair(sa.DEFINITION_VERSION, memo["definition_version"]),
        ]
    )
    try:
        handle = await client.create_schedule(schedule_id, schedule, memo=memo, search_attributes=attributes)
    except ScheduleAlreadyRunningError:
        raise Problem(409, "Schedule exists", f"a schedule with id '{schedule_id}' already exists") from None
    except RPCError as error:
        raise _rpc_problem(error, schedule_id) from None
    return await _describe(handle)


@router.get("", response_model=list[ScheduleOut])
async def list_schedules(
    client: TemporalClientDep,
    _: ViewerKey,
    definition_id: Annotated[str | None, Query(pattern=DEFINITION_ID, max_length=200)] = None,
) -> list[ScheduleOut]:
    """List the engine's schedules (of one definition, if given), by id."""
    found: list[ScheduleOut] = []
    try:
        async for item in await client.list_schedules():
            memo = await item.memo()
            if "definition_id" not in memo or (definition_id and memo["definition_id"] != definition_id):
                continue
            state, info = item.schedule.state if item.schedule else None, item.info
            found.append(
                _out(
                    item.id,
                    memo,
                    paused=bool(state and state.paused),
                    note=(state.note if state else None) or None,
                    next_runs=list(info.next_action_times) if info else [],
                    recent_runs=_runs(list(info.recent_actions)) if info else [],
                )
            )
    except RPCError as error:
        raise rpc_problem(error, "listing schedules failed") from None
    return sorted(found, key=lambda schedule: schedule.id)


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=_PROBLEMS)
async def get_schedule(schedule_id: ScheduleId, client: TemporalClientDep, _: ViewerKey) -> ScheduleOut:
    """One schedule: its spec, state, next due times and latest runs."""
    return await _describe(client.get_schedule_handle(schedule_id))


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, responses=_PROBLEMS)
async def pause_schedule(
    schedule_id: ScheduleId, client: TemporalClientDep, _: OperatorKey, body: ScheduleNote | None = None
) -> ScheduleOut:
    """Pause a schedule: no run starts until it is unpaused."""
    handle = await _existing(client, schedule_id)
    try:
        await handle.pause(note=(body.note if body else None) or "paused through the API")
    except RPCError as error:
        raise _rpc_problem(error, schedule_id) from None
    return await _describe(handle)


@router.post("/{schedule_id}/unpause", response_model=ScheduleOut, responses=_PROBLEMS)
async def unpause_schedule(
    schedule_id: ScheduleId, client: TemporalClientDep, _: OperatorKey, body: ScheduleNote | None = None
) -> ScheduleOut:
    """Resume a paused schedule (runs missed while paused are not made up)."""
    handle = await _existing(client, schedule_id)
    try:
        await handle.unpause(note=(body.note if body else None) or "unpaused through the API")
    except RPCError as error:
        raise _rpc_problem(error, schedule_id) from None
    return await _describe(handle)


@router.post(
    "/{schedule_id}/trigger",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ScheduleOut,
    responses=_PROBLEMS,
)
async def trigger_schedule(schedule_id: ScheduleId, client: TemporalClientDep, _: OperatorKey) -> ScheduleOut:
    """Start a run now, as the schedule would (also when paused); it appears in `recent_runs`."""
    handle = await _existing(client, schedule_id)
    try:
        await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    except RPCError as error:
        raise _rpc_problem(error, schedule_id) from None
    return await _describe(handle)


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_PROBLEMS)
async def delete_schedule(schedule_id: ScheduleId, client: TemporalClientDep, _: OperatorKey) -> Response:
    """Delete a schedule; the runs it already started are not affected."""
    handle = await _existing(client, schedule_id)
    try:
        await handle.delete()
    except RPCError as error:
        raise _rpc_problem(error, schedule_id) from None
    return Response(status_code=204)
