"""Request and response shapes of the API, separate from the store's rows and the engine's models.

Every model carries examples, so the OpenAPI document shows a caller what to send and what comes back.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, SecretStr

from rte.store.connections import ConnectionType

DEFINITION_ID = r"^[a-z0-9][a-z0-9_-]*$"
VERSION = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
EXECUTION_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?")


def _date_time_text(value: Any) -> Any:
    # pydantic also reads numbers ("0.5": Unix seconds) and bare dates; the API says ISO 8601 date-times.
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value.strip()):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-28T09:00:00Z")
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-28T09:00:00Z, not a number")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("is out of range once converted to UTC") from None


# A date-time given by a client: ISO 8601 text only, read as UTC when it has no zone, and held in UTC.
Timestamp = Annotated[datetime, BeforeValidator(_date_time_text), AfterValidator(_in_utc)]

# A duration in milliseconds, answered to a tenth: differences of timestamps carry float noise
# (412.50000000000006), and nothing here is measured finer than that.
Milliseconds = Annotated[float, PlainSerializer(lambda value: round(value, 1), return_type=float)]

EXAMPLE_SOURCE = """id: greet
inputs:
  type: object
  required: [name]
  properties:
    name: {type: string, title: Name, description: Who to greet}
steps:
  - id: hello
    kind: set
    with: {text: "Hello ${ .inputs.name }"}
outputs: "${ .steps.hello.output.text }"
"""


class ProblemDetails(BaseModel):
    """An error (RFC 9457), served as application/problem+json."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", examples=["about:blank"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no execution with id 'greet-3f2a9c1b7d4e'"])
    instance: str | None = Field(None, examples=["/executions/greet-3f2a9c1b7d4e"])
    violations: list[dict[str, str]] | None = Field(
        None,
        description="For 422: every invalid value, as {path, message}.",
        examples=[[{"path": "$.name", "message": "is required"}]],
    )


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for problem answers."""
    reasons = {
        400: "Bad request (e.g. an invalid cursor)",
        401: "No valid API key",
        403: "The API key's role is too low",
        404: "Not found",
        409: "Conflicts with the current state",
        413: "The request body is too large",
        422: "Invalid request: `violations` lists every problem",
        503: "Temporal or a worker is not available",
    }
    schema = ProblemDetails.model_json_schema()
    return {
        status: {"description": reasons[status], "content": {"application/problem+json": {"schema": schema}}}
        for status in statuses
    }


class _In(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored, and
    take JSON types as the schema says them: `0` is not a boolean nor `"5"` an integer (strict).
    Fields whose JSON form is text for a richer Python type (enums, date-times) opt out per field."""

    model_config = ConfigDict(extra="forbid", strict=True)


# Definitions and compilations ---------------------------------------------------------------------


class SourceIn(_In):
    source: str = Field(
        min_length=1,
        description="The definition text: the native YAML/JSON format or Serverless Workflow 1.0.",
        examples=[EXAMPLE_SOURCE],
    )
    filename: str = Field(
        "definition.yaml",
        max_length=500,
        description="Shown in diagnostics; a name ending in .json parses the source as strict JSON.",
        examples=["greet.yaml"],
    )


class DefinitionSummary(BaseModel):
    id: str = Field(examples=["greet"])
    version: str = Field(description="1, 2, … — a new one whenever the plan changes.", examples=["3"])
    name: str = Field(examples=["greet"])
    description: str = ""
    format: Literal["native", "swf"]
    plan_hash: str = Field(examples=["sha256:5d41402abc4b2a76b9719d911017c592…"])
    created_at: datetime


class DefinitionDetail(DefinitionSummary):
    source: str = Field(examples=[EXAMPLE_SOURCE])
    plan: dict[str, Any] = Field(description="The compiled plan this version runs.")


class DefinitionSaved(BaseModel):
    definition: DefinitionSummary
    changed: bool = Field(description="False when the plan equals the latest version's (no new version).")
    compilation_id: str = Field(description="The compilation record of this save: GET /compilations/{id}.")
    warnings: list[DiagnosticOut] = Field(default_factory=list)


class StageOut(BaseModel):
    name: str = Field(examples=["parse"])
    status: Literal["ok", "failed", "skipped"]
    duration_ms: Milliseconds = Field(examples=[0.4])


class DiagnosticOut(BaseModel):
    code: str = Field(examples=["E103"])
    severity: Literal["error", "warning", "info"]
    message: str = Field(examples=["step 'report' needs 'fetchh', which is not a step"])
    location: str | None = Field(None, description="line:column, 1-based.", examples=["12:13"])
    line: int | None = None
    column: int | None = None
    path: str = Field("", description="JSON pointer into the definition.", examples=["/steps/2/needs/0"])
    hint: str | None = Field(None, examples=["did you mean 'fetch'?"])


class PlanStats(BaseModel):
    steps: int
    levels: int
    parallel_width: int
    critical_path: list[str] = Field(examples=[["fetch", "score", "summary"]])


class CompilationArtifacts(BaseModel):
    plan: dict[str, Any] = Field(description="The plan (the program the interpreter runs).")
    input_schema: dict[str, Any] = Field(description="JSON Schema of the run parameters.")
    mermaid: str = Field(
        description="The step graph as a Mermaid flowchart.", examples=["flowchart TD\n  n0[hello]"]
    )
    code_preview: str = Field(description="What runs in which order, as Python-shaped pseudo code.")
    stats: PlanStats


class CompilationOut(BaseModel):
    id: str = Field(examples=["6f1c0c7e5b0a4a52a1d6a1b2c3d4e5f6"])
    ok: bool
    filename: str
    source_format: Literal["native", "swf"]
    definition_id: str | None = None
    created_at: datetime
    stages: list[StageOut]
    diagnostics: list[DiagnosticOut]
    artifacts: CompilationArtifacts | None = Field(None, description="Present when the source compiled.")


# Runs ----------------------------------------------------------------------------------------------


class InputField(BaseModel):
    """One form field, flattened from the input schema (nested objects give dotted names)."""

    name: str = Field(examples=["customer.email"])
    path: str = Field(description="JSON path of the value in the parameters.", examples=["$.customer.email"])
    type: str | list[str] | None = Field(None, examples=["string"])
    title: str = Field(examples=["Email"])
    description: str | None = None
    required: bool = False
    default: Any = None
    enum: list[Any] | None = None
    format: str | None = Field(None, examples=["email"])
    examples: list[Any] | None = None
    # JSON Schema's limits, as written: an integer limit stays an integer (`int` first: pydantic's
    # smart union keeps 1 as 1, not 1.0).
    minimum: int | float | None = Field(None, examples=[1])
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = None
    exclusive_maximum: int | float | None = None
    multiple_of: int | float | None = None
    min_length: int | None = Field(None, examples=[1])
    max_length: int | None = None
    pattern: str | None = None
    min_items: int | None = None
    max_items: int | None = None


class RunInput(BaseModel):
    definition_id: str = Field(examples=["greet"])
    version: str = Field(examples=["3"])
    input_schema: dict[str, Any] = Field(
        description="JSON Schema of the parameters; every property has a `title` for a form label."
    )
    fields: list[InputField] = Field(
        description="The schema's fields in declaration order, ready for a form."
    )


class RetryOverride(_In):
    """Replaces the retry policy of every I/O step (http, ai, script, python) for this run."""

    max_attempts: int = Field(ge=1, le=100, examples=[5])
    initial_interval_s: float = Field(1.0, gt=0, le=3600)
    backoff: float = Field(2.0, ge=1.0, le=100)
    max_interval_s: float = Field(60.0, gt=0, le=86_400)


class RunConfig(_In):
    error_mode: Literal["definition", "fail_fast", "continue", "pause"] = Field(
        "definition",
        description="definition: each step's own on_error; fail_fast: the first failure fails the run; "
        "continue: failed steps skip their dependants and the rest goes on; pause: a failed step "
        "waits for an operator to retry, skip or fail it.",
    )
    timeout_s: float | None = Field(None, gt=0, le=31_536_000, description="Limit on the whole run.")
    max_concurrency: int | None = Field(None, ge=1, le=1000, description="Steps running at once.")
    debug: bool = Field(False, description="Run in debug mode (breakpoints and step-through).")
    breakpoints: list[BreakpointIn] = Field(
        default_factory=list, max_length=200, description="Initial breakpoints (implies debug mode)."
    )
    retry: RetryOverride | None = None


class RunRequest(_In):
    version: str | None = Field(None, pattern=VERSION, max_length=20, description="Default: the latest.")
    params: dict[str, Any] | None = Field(
        None, description="Run parameters, validated against the input schema.", examples=[{"name": "Ada"}]
    )
    config: RunConfig | None = None
    connections: dict[str, str] | None = Field(
        None,
        description="Use another stored connection for a declared one: {declared id: connection id}.",
        examples=[{"crm": "crm-staging"}],
    )
    preset_id: str | None = Field(
        None,
        max_length=40,
        description="Start from a saved preset; params, config and connections given here override it.",
    )
    execution_id: str | None = Field(
        None,
        pattern=EXECUTION_ID,
        max_length=200,
        description="Choose the execution id (a second start with the same id is a 409): safe retries.",
    )


class RunStarted(BaseModel):
    execution_id: str = Field(examples=["greet-3f2a9c1b7d4e"])
    run_id: str
    definition_id: str
    version: str
    plan_hash: str
    url: str = Field(description="This execution in the API.", examples=["/executions/greet-3f2a9c1b7d4e"])
    temporal_ui_url: str


# Presets -------------------------------------------------------------------------------------------


class PresetIn(_In):
    definition_id: str = Field(pattern=DEFINITION_ID, max_length=200, examples=["greet"])
    name: str = Field(min_length=1, max_length=200, examples=["nightly"])
    description: str = Field("", max_length=2000)
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"name": "Ada"}])
    config: RunConfig = Field(default_factory=RunConfig)
    connections: dict[str, str] = Field(default_factory=dict, examples=[{"crm": "crm-staging"}])


class PresetUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    params: dict[str, Any] | None = None
    config: RunConfig | None = None
    connections: dict[str, str] | None = None


class PresetOut(BaseModel):
    id: str
    definition_id: str
    name: str
    description: str
    params: dict[str, Any]
    config: RunConfig
    connections: dict[str, str]
    created_at: datetime
    updated_at: datetime


# Connections ---------------------------------------------------------------------------------------


class ConnectionIn(_In):
    type: ConnectionType = Field(examples=["bearer"])
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Non-secret settings, e.g. base_url, header, username, and allowed_origins: the only "
        "origins (scheme://host[:port]) the credentials are ever sent to (default: base_url's origin; "
        "with neither, none).",
        examples=[{"base_url": "https://crm.example"}],
    )
    secret: dict[str, SecretStr] = Field(
        description="Write-only: encrypted at rest, never returned, never logged. bearer: token; "
        "api_key: key; basic: password; openai: api_key.",
        json_schema_extra={"writeOnly": True},
        examples=[{"token": "s3cr3t"}],
    )


class ConnectionOut(BaseModel):
    id: str = Field(examples=["crm"])
    type: ConnectionType
    config: dict[str, Any]
    secret_fields: list[str] = Field(description="Which secret fields are set (never their values).")
    created_at: datetime
    updated_at: datetime


class VerifyIn(_In):
    path: str = Field("/", max_length=2000, pattern=r"^/", description="Requested under the base_url.")
    method: Literal["GET", "HEAD", "OPTIONS"] = "GET"
    timeout_s: float = Field(10.0, gt=0, le=60)


class VerifyOut(BaseModel):
    ok: bool = Field(description="True when the service answered 2xx or 3xx with these credentials.")
    status_code: int | None = Field(None, examples=[200])
    duration_ms: Milliseconds
    url: str = Field(examples=["https://crm.example/"])
    message: str = Field(examples=["the service answered 200 OK"])


# Executions ----------------------------------------------------------------------------------------

ExecutionStatusName = Literal[
    "running", "completed", "failed", "cancelled", "terminated", "timed_out", "continued_as_new"
]


class ExecutionFilter(BaseModel):
    """Which executions: every field narrows the list; none means all (child executions hidden)."""

    definition_id: str | None = Field(None, pattern=DEFINITION_ID, max_length=200, examples=["greet"])
    version: str | None = Field(None, pattern=VERSION, max_length=20, examples=["3"])
    status: list[ExecutionStatusName] = Field(default_factory=list, examples=[["failed"]])
    trigger: str | None = Field(None, pattern=r"^[a-z_]{1,30}$", examples=["manual"])
    started_after: Timestamp | None = Field(None, description="Inclusive; ISO 8601, UTC when no zone.")
    started_before: Timestamp | None = Field(None, description="Exclusive.")
    id_prefix: str | None = Field(None, max_length=200, description="Execution ids starting with this text.")
    include_children: bool = Field(False, description="Also list the child executions of big for_each steps.")


class BulkFilter(ExecutionFilter):
    model_config = ConfigDict(extra="forbid")


class ExecutionSummary(BaseModel):
    execution_id: str = Field(examples=["greet-3f2a9c1b7d4e"])
    run_id: str
    definition_id: str | None = None
    definition_version: str | None = None
    trigger: str | None = Field(None, examples=["manual"])
    status: ExecutionStatusName
    start_time: datetime | None = None
    close_time: datetime | None = None
    duration_ms: Milliseconds | None = None
    current_step: str | None = None
    items_processed: int | None = None
    items_total: int | None = None
    error_count: int | None = None
    plan_hash: str | None = None
    temporal_ui_url: str


class ExecutionPage(BaseModel):
    items: list[ExecutionSummary]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last.")


class DayCount(BaseModel):
    date: date
    total: int
    by_status: dict[str, int]


class ExecutionStats(BaseModel):
    total: int
    by_status: dict[str, int] = Field(examples=[{"completed": 40, "failed": 2, "running": 1}])
    success_rate: float | None = Field(None, description="completed / closed, 0..1; null when none closed.")
    average_duration_ms: Milliseconds | None = None
    p95_duration_ms: Milliseconds | None = None
    items_processed: int
    per_day: list[DayCount]
    sampled: int = Field(description="Executions read for durations, items and the daily series.")
    sample_complete: bool = Field(description="False when more executions matched than were read.")


class BulkRequest(_In):
    action: Literal["cancel", "terminate", "retry", "delete"]
    ids: list[str] | None = Field(None, max_length=1000, examples=[["greet-3f2a9c1b7d4e"]])
    filter: BulkFilter | None = Field(None, description="Instead of ids: every execution that matches.")
    limit: int = Field(100, ge=1, le=1000, description="At most this many executions when using a filter.")
    reason: str | None = Field(None, max_length=1000, examples=["bad deploy"])


class BulkItemResult(BaseModel):
    execution_id: str
    ok: bool
    status: int = Field(description="What the single-execution call would have answered.", examples=[200])
    message: str
    new_execution_id: str | None = Field(None, description="For retry: the new execution.")


class BulkResult(BaseModel):
    action: str
    matched: int
    succeeded: int
    failed: int
    results: list[BulkItemResult]


class ItemsOut(BaseModel):
    total: int
    completed: int
    failed: int
    running: int


class ItemSample(BaseModel):
    index: int
    status: Literal["completed", "failed"]
    attempts: int
    output: Any = None
    error: dict[str, Any] | None = None


class StepDetail(BaseModel):
    id: str
    path: str = Field(examples=["greet/hello"])
    kind: str
    name: str | None = None
    status: str = Field(examples=["completed"])
    attempts: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: Milliseconds | None = None
    skipped_reason: str | None = None
    input: Any = Field(
        None,
        description="Bounded to 16 KB; `{_truncated: true, …}` when larger. Parts held in the payload "
        "store show as references `{$rte_ref, bytes, kind, preview}`.",
    )
    output: Any = Field(None, description="Bounded like `input`.")
    input_truncated: bool = Field(
        False, description="True when `input` is not the whole value: GET payload_url."
    )
    output_truncated: bool = False
    output_bytes: int | None = Field(None, description="Size of the whole output as JSON.")
    error: dict[str, Any] | None = None
    items: ItemsOut | None = None
    item_samples: list[ItemSample] = Field(default_factory=list)
    approval: dict[str, Any] | None = None
    connection: str | None = None
    needs: list[str] = Field(default_factory=list)
    payload_url: str = Field(description="GET it for the full output (add ?part=input for the input).")


class DataFlowEdge(BaseModel):
    source: str = Field(description="Path of the step whose output is read.", examples=["orders/fetch"])
    target: str = Field(description="Path of the step that reads it.", examples=["orders/score"])
    bytes: int | None = Field(None, description="Size of the output that flowed, as JSON.")


class ExecutionDetail(ExecutionSummary):
    params: Any = Field(None, description="Bounded; large parts show as payload references.")
    output: Any = Field(None, description="The execution's output, payload references resolved.")
    error: dict[str, Any] | None = None
    waiting_approvals: list[str] = Field(
        default_factory=list, description="Paths of steps awaiting a decision."
    )
    steps: list[StepDetail]
    data_flow: list[DataFlowEdge]
    critical_path: list[str] = Field(
        description="Top-level step paths on the chain, linked by `needs`, whose real durations add up "
        "to the most; steps that were skipped or did not start are never on it."
    )
    warnings: list[str] = Field(default_factory=list, examples=[["no worker answered the state query"]])


class DecisionIn(_In):
    step: str = Field(
        min_length=1, max_length=500, description="Id or path of the approval step.", examples=["approve"]
    )
    item_index: int | None = Field(None, ge=0, description="For an approval inside a for_each.")
    comment: str | None = Field(None, max_length=4000, examples=["looks good"])
    payload: Any = Field(None, description="JSON handed to the next steps as the step's output.payload.")


class DecisionOut(BaseModel):
    execution_id: str
    step: str
    approved: bool
    by: str = Field(description="The name of the API key that decided.")
    execution_status: str = Field(examples=["running"])


class TerminateIn(_In):
    reason: str | None = Field(None, max_length=1000, examples=["stuck on a dead service"])


class ActionOut(BaseModel):
    execution_id: str
    ok: bool = True
    message: str = Field(examples=["cancellation requested"])
    new_execution_id: str | None = None


DefinitionSaved.model_rebuild()


# Debugging and recovery ---------------------------------------------------------------------------


class BreakpointIn(_In):
    step: str = Field(max_length=500, description="Step path or id.", examples=["orders/charge"])
    when: Literal["before", "after", "error"] = "before"
    condition: str | None = Field(
        None,
        max_length=2000,
        description="jq over inputs, steps, item, index, input.",
        examples=[".item.amount > 1000"],
    )
    items: list[int] | None = Field(None, max_length=1000, description="Only these for_each item indexes.")
    enabled: bool = True


class BreakpointPatch(_In):
    enabled: bool


class DebugCommandIn(_In):
    action: Literal["pause", "continue", "step_over", "step_into", "step_out", "run_to"]
    target: str | None = Field(None, max_length=500, description="run_to: the step path or id.")


class VariableEditIn(_In):
    path: str = Field(
        max_length=500,
        description="inputs.<name>…, steps.<id>.output…, item…, or input… (the next step's input).",
        examples=["input.args.amount"],
    )
    value: Any = None


class EvaluateIn(_In):
    expression: str = Field(min_length=1, max_length=10_000, examples=[".item.amount"])


class EvaluateOut(BaseModel):
    ok: bool
    value: Any = None
    error: str | None = None


class DebugView(BaseModel):
    """The debugger's view of an execution: status, breakpoints, where it is paused and why, the audit
    trail, and (while paused) every variable in scope."""

    execution_id: str
    execution_status: str
    debug: dict[str, Any]
    scope: dict[str, Any] | None = Field(None, description="While paused: inputs, steps, item, index, input.")
    awaiting_decision: list[str] = Field(default_factory=list, description="Steps paused on their error.")


class ReplayOut(BaseModel):
    execution_id: str
    position: int
    total: int
    frame: dict[str, Any] | None = Field(None, description="The recorded step at this position.")


class RecoveryDecisionIn(_In):
    step: str = Field(max_length=500, examples=["orders/charge"])
    action: Literal["retry", "skip", "fail"]
    input: dict[str, Any] | None = Field(None, description="retry: the step's input to use instead.")
    timeout_s: float | None = Field(None, gt=0, le=86_400, description="retry: a new timeout.")
    output: Any = Field(None, description="skip: the output dependants see.")
    reason: str | None = Field(None, max_length=1000)


class RecoveryBulkRequest(_In):
    action: Literal["retry", "resume"]
    ids: list[str] | None = Field(None, max_length=1000)
    filter: BulkFilter | None = Field(None, description="Instead of ids: every execution that matches.")
    limit: int = Field(100, ge=1, le=1000)


RunConfig.model_rebuild()  # its breakpoints are declared above
