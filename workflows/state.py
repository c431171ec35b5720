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

    error_mode: Literal["definition", "fail_fast", "continue"] = Field(
        "definition", description="Override every step's on_error: keep it, fail fast, or continue."
    )
    max_concurrency: int | None = Field(None, ge=1, le=1000)
    timeout_s: float | None = Field(None, gt=0)
    debug: bool = False


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


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


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
    status: Literal["completed", "failed"]
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


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"


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


def bounded(value: Any, limit: int = MAX_STATE_VALUE_BYTES) -> Any:
    """The value itself when small, else a marker with its size and a text preview."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = json.dumps(value, separators=(",", ":"), default=str)
    if len(text) <= limit:
        return value
    return {"_truncated": True, "size": len(text), "preview": text[: limit // 4]}
