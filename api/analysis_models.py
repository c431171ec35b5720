"""Request and response models of the error analysis API (`api/routes/errors.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rte import analysis

WINDOW = r"^[1-9]\d{0,3}[mhd]$"


class SuggestionOut(BaseModel):
    id: str = Field(
        description="What to do; `applicable` ones can be applied in one call.", examples=["retry"]
    )
    title: str
    detail: str
    confidence: float = Field(ge=0, le=1, description="From what happened before and the rule's prior.")
    applicable: bool = Field(description="POST /errors/patterns/{fingerprint}/apply can perform it.")
    evidence: str

    @classmethod
    def of(cls, suggestion: analysis.Suggestion) -> SuggestionOut:
        return cls(**suggestion.__dict__)


class FailureOut(BaseModel):
    at: datetime
    source: Literal["step_attempt", "execution"] = Field(
        description="step_attempt: recorded by the worker; execution: read from a failed execution in "
        "Temporal (pure steps, or failures that never reached an activity)."
    )
    execution_id: str
    run_id: str
    definition_id: str
    step_path: str
    kind: str
    item_index: int | None = None
    attempt: int
    category: str
    retryable: bool
    message: str = Field(description="Redacted.")
    fingerprint: str
    http_status: int | None = None
    connection_id: str | None = None
    host: str | None = None
    details: dict[str, Any] | None = Field(None, description="Redacted body excerpt, trimmed traceback…")
    recovered: bool = Field(description="The same step of the same workflow succeeded afterwards.")
    suggestions: list[SuggestionOut] = Field(default_factory=list)

    @classmethod
    def of(cls, failure: analysis.Failure, suggestions: list[analysis.Suggestion]) -> FailureOut:
        data = {key: value for key, value in failure.__dict__.items() if key != "at"}
        return cls(at=failure.at, **data, suggestions=[SuggestionOut.of(s) for s in suggestions])


class TrendPoint(BaseModel):
    start: datetime
    count: int


class TrendOut(BaseModel):
    bucket: Literal["hour", "day"]
    direction: Literal["new", "rising", "falling", "steady"]
    counts: list[TrendPoint]


class PatternOut(BaseModel):
    fingerprint: str = Field(examples=["3f2a9c1b7d4e5f60"])
    kind: str
    category: str
    target: str | None = Field(description="The connection, else the host the step called.")
    message: str = Field(description="Normalised: what varies is replaced by <n>, <id>, <uuid>, <path>…")
    retryable: bool
    count: int
    first_seen: datetime
    last_seen: datetime
    workflows: list[str]
    steps: list[str]
    executions: list[str] = Field(description="Affected executions, newest first (at most 100).")
    execution_count: int
    recovered: int = Field(description="Failures followed by a success of the same workflow step.")
    trend: TrendOut
    suggestions: list[SuggestionOut]


class PatternPage(BaseModel):
    since: datetime
    until: datetime
    patterns: list[PatternOut]
    failures_scanned: int
    sources: dict[str, int] = Field(description="How many failures came from each source.")


class PatternDetail(PatternOut):
    samples: list[FailureOut] = Field(description="The newest occurrences, with redacted excerpts.")


class FailurePage(BaseModel):
    since: datetime
    until: datetime
    items: list[FailureOut]


class ExecutionErrors(BaseModel):
    execution_id: str
    failures: list[FailureOut]
    suggestions: list[SuggestionOut] = Field(description="For the execution's final failure.")


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented (api.models._In)

    suggestion: Literal["retry", "verify_connection", "raise_timeout", "lower_concurrency"]
    apply: bool = Field(
        False,
        description="For definition changes: save a new definition version (admin role); "
        "otherwise only answer the change to make.",
    )
    window: str = Field("7d", pattern=WINDOW, description="Which occurrences count, e.g. 24h or 7d.")
    limit: int = Field(50, ge=1, le=500, description="At most this many executions are retried.")


class ActionResult(BaseModel):
    target: str = Field(description="The execution, connection or definition step acted on.")
    ok: bool
    message: str
    new_execution_id: str | None = None
    patch: list[dict[str, Any]] | None = Field(
        None, description="JSON-Patch-like operations on the definition source (with the old value)."
    )
    definition_version: str | None = None


class ApplyOut(BaseModel):
    fingerprint: str
    suggestion: str
    applied: bool = Field(description="Something was changed or started.")
    results: list[ActionResult]
