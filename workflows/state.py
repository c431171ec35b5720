"""What an execution is given and what it reports: the workflow input and the queryable state."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from workflows.plan import Plan

MAX_STATE_VALUE_BYTES = 16_384
MAX_ITEM_RECORDS = 50


class ExecutionConfig(BaseModel):
    """How to run, chosen per execution (the API's run form, the CLI's flags)."""

    error_mode: Literal["definition", "fail_fast", "continue", "pause"] = Field(
        "definition",
        description="Override every step's on_error: keep it, fail fast, continue, or pause for an operator.",
    )
    max_concurrency: int | None = Field(None, ge=1, le=1000)
    timeout_s: float | None = Field(None, gt=0)
    debug: bool = False
    breakpoints: list[Breakpoint] = Field(
        default_factory=list, description="Initial breakpoints (debug mode)."
    )
    max_transitions: int = Field(
        10_000,
        ge=10,
        le=10_000,
        description="`then` jumps can loop: a task list that makes this many transitions stops with an error.",
    )
    slice_items: int = Field(
        1000,
        ge=10,
        le=1000,
        description="A for_each over more items than this runs them in child workflows of this many each.",
    )


class Breakpoint(BaseModel):
    """Pause at a step boundary: before it runs, after it completes, or when it fails.

    On a for_each step a breakpoint with a `condition` or `items` is checked at every item;
    otherwise it fires once, at the step itself.
    """

    id: str = Field("", max_length=80, description="Given by the engine when empty.")
    step: str = Field(description="Step path or id.", max_length=500)
    when: Literal["before", "after", "error"] = "before"
    condition: str | None = Field(
        None, max_length=2000, description="jq over the step's scope (inputs, steps, item, index, input)."
    )
    items: list[int] | None = Field(None, description="Only these for_each item indexes.")
    enabled: bool = True
    hits: int = 0


class ResumeSpec(BaseModel):
    """A resumed execution reuses the recorded outputs of the steps that succeeded in the original."""

    from_execution: str
    from_run: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict, description="Step path → recorded output.")


class ForEachSlice(BaseModel):
    """A child execution's share of a large for_each: run one step over items[offset:offset+len]."""

    step_path: str
    offset: int
    items: list[Any]
    scope: dict[str, Any]
    concurrency: int


class ExecutionInput(BaseModel):
    plan: Plan
    params: dict[str, Any] = Field(default_factory=dict)
    trigger: str = "manual"
    config: ExecutionConfig = Field(default_factory=ExecutionConfig)
    slice: ForEachSlice | None = None
    resume: ResumeSpec | None = None
    # The stored definition's version (what the API and the CLI show); the plan's own `version` is
    # only the compiled document's, so this one wins when given.
    definition_version: str | None = None
    # Step kind → task queue for its activities (e.g. `script` on sandbox workers); others use the
    # execution's own task queue.
    step_task_queues: dict[str, str] = Field(default_factory=dict)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    PAUSED = "paused"  # the debugger holds it, or it failed and waits for an operator decision


FINISHED_STEP_STATUSES = frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED})


class ErrorInfo(BaseModel):
    category: str
    message: str
    retryable: bool = False
    step_path: str | None = None
    item_index: int | None = None
    attempts: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ItemRecord(BaseModel):
    index: int
    status: Literal["completed", "failed", "skipped"]
    attempts: int = 1
    output: Any = None
    error: ErrorInfo | None = None


class ItemsProgress(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0
    running: int = 0


class ApprovalRequest(BaseModel):
    message: str | None = None
    approvers: list[str] = Field(default_factory=list)
    requested_at: datetime
    timeout_s: float | None = None


class ApprovalDecision(BaseModel):
    step: str = Field(description="Step id or path of the approval step.")
    item_index: int | None = None
    approved: bool
    by: str = "anonymous"
    comment: str | None = None
    payload: Any = None


class AuditEntry(BaseModel):
    """One operator change to a running execution: who, when, what, old → new."""

    at: datetime
    by: str
    action: str
    target: str | None = None
    old: Any = None
    new: Any = None


class RecoveryDecision(BaseModel):
    """What an operator decides for a step that failed with on_error: pause."""

    step: str = Field(description="Step id or path of the paused step.", max_length=500)
    action: Literal["retry", "skip", "fail"]
    input: dict[str, Any] | None = Field(None, description="retry: the step's input to use instead.")
    timeout_s: float | None = Field(None, gt=0, le=86_400, description="retry: a new timeout.")
    output: Any = Field(None, description="skip: the output dependants see instead.")
    by: str = "anonymous"
    reason: str | None = None


class RecoveryRecord(RecoveryDecision):
    decided_at: datetime
    failed_items: list[int] = Field(default_factory=list)


class StepState(BaseModel):
    id: str
    path: str
    kind: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    skipped_reason: str | None = None
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    items: ItemsProgress | None = None
    item_samples: list[ItemRecord] = Field(default_factory=list)
    approval: ApprovalRequest | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    awaiting_decision: bool = False
    failed_items: list[int] = Field(
        default_factory=list, description="for_each items that failed (first 1,000)."
    )
    decisions: list[RecoveryRecord] = Field(default_factory=list)
    reused_from: str | None = Field(None, description="Execution whose recorded output this step reused.")


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class Frame(BaseModel):
    kind: Literal["workflow", "step", "item"]
    name: str
    index: int | None = None


class PauseInfo(BaseModel):
    """Where and why the debugger holds the execution."""

    step_path: str
    item_index: int | None = None
    when: Literal["before", "after", "error"]
    reason: str = Field(description="breakpoint <id>, pause, step_over, step_into, step_out, run_to <step>")
    breakpoint_id: str | None = None
    paused_at: datetime
    call_stack: list[Frame] = Field(default_factory=list)
    next_input: Any = None


class DebugState(BaseModel):
    enabled: bool = False
    status: Literal["running", "paused"] = "running"
    breakpoints: list[Breakpoint] = Field(default_factory=list)
    paused: PauseInfo | None = None
    stepping: str | None = Field(None, description="The command being carried out (step_over…).")
    audit: list[AuditEntry] = Field(default_factory=list)


class ExecutionState(BaseModel):
    execution_id: str
    run_id: str
    definition_id: str
    definition_version: str
    plan_hash: str
    trigger: str
    status: ExecutionStatus = ExecutionStatus.RUNNING
    started_at: datetime
    ended_at: datetime | None = None
    current_steps: list[str] = Field(default_factory=list)
    steps: dict[str, StepState] = Field(default_factory=dict)
    items_processed: int = 0
    items_total: int = 0
    error_count: int = 0
    params: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    debug: DebugState = Field(default_factory=DebugState)
    resumed_from: str | None = None


class DebugCommand(BaseModel):
    """pause, continue, step_over, step_into, step_out, run_to (with `target`)."""

    action: Literal["pause", "continue", "step_over", "step_into", "step_out", "run_to"]
    target: str | None = Field(None, max_length=500, description="run_to: the step path or id.")
    by: str = "anonymous"


class BreakpointChange(BaseModel):
    action: Literal["add", "enable", "disable", "remove"]
    breakpoint: Breakpoint | None = Field(None, description="add: the breakpoint.")
    id: str | None = Field(None, description="enable, disable, remove: the breakpoint id.")
    by: str = "anonymous"


class VariableEdit(BaseModel):
    """Set a variable in the paused scope: `inputs.x`, `steps.<id>.output`, `item`, or `input`
    (the input the next step is about to receive)."""

    path: str = Field(max_length=500)
    value: Any = None
    by: str = "anonymous"


class EvaluateRequest(BaseModel):
    expression: str = Field(max_length=10_000)


class EvaluateResult(BaseModel):
    ok: bool
    value: Any = None
    error: str | None = None
    # The program is not provably cheap on the paused scope: the workflow did not run it; the caller
    # evaluates it in its guarded evaluator over the `debug_variables` query.
    outside: bool = False


def bounded(value: Any, limit: int = MAX_STATE_VALUE_BYTES) -> Any:
    """The value itself when small, else a marker with its size and a text preview."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = json.dumps(value, separators=(",", ":"), default=str)
    if len(text) <= limit:
        return value
    return {"_truncated": True, "size": len(text), "preview": text[: limit // 4]}
