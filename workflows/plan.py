"""The plan: the immutable, content-hashed program the interpreter workflow runs.

Both front ends (the native DAG format and Serverless Workflow 1.0) compile to this one shape, so it
carries the union of their control flow:

- a `PlanBlock` is either a DAG (steps start when their `needs` are done, as in CI job graphs) or a
  sequence (steps run in order, and a step's `then` may jump to another step of the same block,
  forwards or backwards, or `exit` the block, or `end` the workflow);
- a step is either an I/O step (an activity: http, ai, script, python), a pure step evaluated inside
  the workflow (set, transform, switch, raise), a timer or wait (delay, approval), or a control step
  that owns nested blocks (do, fork, try);
- `for_each` turns any step into a loop over items (a SWF `for` is a `do` step with `for_each`).

Values in `with` are templates: any string `${ jq }` is evaluated at run time, everything else is a
literal. The plan travels inside the workflow input, so editing a definition never changes a running
execution, and `hash` identifies exactly what ran.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_FORMAT_VERSION = 1

JsonValue = Any


class StepKind(StrEnum):
    # Pure: evaluated inside the workflow, no activity, no extra history events.
    SET = "set"
    TRANSFORM = "transform"
    SWITCH = "switch"
    RAISE = "raise"
    # I/O: one activity type per kind.
    HTTP = "http"
    AI = "ai"
    SCRIPT = "script"
    PYTHON = "python"
    # Durable waits.
    DELAY = "delay"
    APPROVAL = "approval"
    # Control: own nested blocks.
    DO = "do"
    FORK = "fork"
    TRY = "try"
    CHILD = "child"  # run another plan as a child workflow (SWF `run: workflow`)


PURE_KINDS = frozenset({StepKind.SET, StepKind.TRANSFORM, StepKind.SWITCH, StepKind.RAISE})
ACTIVITY_KINDS = frozenset({StepKind.HTTP, StepKind.AI, StepKind.SCRIPT, StepKind.PYTHON})
CONTROL_KINDS = frozenset({StepKind.DO, StepKind.FORK, StepKind.TRY, StepKind.CHILD})


class OnError(StrEnum):
    FAIL = "fail"  # the step's failure fails its block (and so the execution, unless caught)
    CONTINUE = "continue"  # the step is marked failed, its dependants are skipped, the rest goes on
    PAUSE = "pause"  # the step waits for an operator decision (retry, skip, fail)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # Fields added after plans were first hashed. `plan_hash` leaves them out while they hold their
    # default, so a plan that does not use them keeps the hash it always had.
    later_fields: ClassVar[frozenset[str]] = frozenset()


class RetrySpec(_Frozen):
    later_fields = frozenset(
        {"linear", "when", "except_when", "max_elapsed_s", "attempt_timeout_s", "jitter_s"}
    )

    max_attempts: int = Field(3, ge=1, description="Total attempts, the first included.")
    initial_interval_s: float = Field(1.0, gt=0)
    backoff: float = Field(2.0, ge=1.0)
    max_interval_s: float = Field(60.0, gt=0)
    non_retryable: tuple[str, ...] = Field(
        (), description="Error categories or types that must not be retried."
    )
    # Serverless Workflow retry policies (a `try` task's `catch.retry`).
    linear: bool = Field(False, description="The delay grows by initial_interval_s each attempt.")
    when: str | None = Field(None, description="jq condition on the error: retry only when true.")
    except_when: str | None = Field(None, description="jq condition on the error: never retry when true.")
    max_elapsed_s: float | None = Field(None, gt=0, description="No new attempt after this long.")
    attempt_timeout_s: float | None = Field(None, gt=0, description="Each attempt fails after this long.")
    jitter_s: tuple[float, float] | None = Field(None, description="Random extra delay, from and to.")


class ForEachSpec(_Frozen):
    items: str = Field(description="jq program that yields the array of items.")
    concurrency: int = Field(4, ge=1, le=1000)
    batch_size: int = Field(1, ge=1, le=10_000, description="Items handed to one activity call.")
    item_var: str = "item"
    index_var: str = "index"
    while_: str | None = Field(None, alias="while", description="jq condition checked before each item.")


class SwitchCase(_Frozen):
    name: str
    when: str | None = Field(None, description="jq condition; None is the default case.")
    then: str = Field("continue", description="Step to go to (sequence) or to enable (DAG).")


class ErrorSpec(_Frozen):
    """A Serverless-Workflow-shaped error, every field a template."""

    type: JsonValue
    status: JsonValue = None
    title: JsonValue = None
    detail: JsonValue = None
    instance: JsonValue = None


class CatchSpec(_Frozen):
    errors: dict[str, JsonValue] = Field(default_factory=dict, description="Filter on error fields.")
    as_: str = Field("error", alias="as")
    when: str | None = None
    except_when: str | None = None
    retry: RetrySpec | None = None
    do: PlanBlock | None = None


class PlanStep(_Frozen):
    later_fields = frozenset({"schemas"})

    id: str
    path: str = Field(description="Stable address of the step, e.g. 'main/fetch' or 'main/loop/do/send'.")
    kind: StepKind
    name: str | None = None
    description: str | None = None
    needs: tuple[str, ...] = ()
    with_: dict[str, JsonValue] = Field(default_factory=dict, alias="with")
    if_: str | None = Field(None, alias="if")
    for_each: ForEachSpec | None = None
    retry: RetrySpec | None = None
    timeout_s: float | None = None
    on_error: OnError = OnError.FAIL
    connection: str | None = None
    local: bool = Field(False, description="Run the activity as a Temporal local activity.")
    reads: tuple[str, ...] = Field((), description="Upstream step ids whose results expressions read.")
    # Sequence control and data flow (Serverless Workflow).
    then: str | None = None
    input_from: JsonValue = None
    output_as: JsonValue = None
    export_as: JsonValue = None
    # Control kinds.
    body: PlanBlock | None = None
    branches: tuple[PlanBlock, ...] = ()
    compete: bool = False
    cases: tuple[SwitchCase, ...] = ()
    catch: CatchSpec | None = None
    error: ErrorSpec | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    schemas: dict[str, JsonValue] = Field(
        default_factory=dict, description="JSON Schemas of the step's `input`, `output` and `export`."
    )


class PlanBlock(_Frozen):
    mode: Literal["dag", "sequence"] = "dag"
    steps: tuple[PlanStep, ...] = ()

    def step(self, step_id: str) -> PlanStep:
        for candidate in self.steps:
            if candidate.id == step_id:
                return candidate
        raise KeyError(step_id)


class Plan(_Frozen):
    later_fields = frozenset({"input_from", "output_schema", "document"})

    format_version: int = PLAN_FORMAT_VERSION
    source_format: Literal["native", "swf"] = "native"
    definition_id: str
    name: str
    version: str
    description: str | None = None
    input_schema: dict[str, JsonValue] = Field(default_factory=dict)
    connections: tuple[str, ...] = ()
    root: PlanBlock
    outputs: JsonValue = None
    timeout_s: float | None = None
    max_concurrency: int = Field(16, ge=1, description="Steps of a DAG running at once.")
    expression_mode: Literal["native", "swf"] = "native"
    # Serverless Workflow: the top-level `input.from`, `output.schema`, and the source document
    # (runtime expressions read it as `$workflow.definition`).
    input_from: JsonValue = None
    output_schema: dict[str, JsonValue] | None = None
    document: dict[str, JsonValue] | None = None
    hash: str = ""

    def with_hash(self) -> Plan:
        return self.model_copy(update={"hash": plan_hash(self)})

    def walk(self) -> list[PlanStep]:
        """Every step of the plan, depth first, nested blocks included."""
        found: list[PlanStep] = []
        _walk_block(self.root, found)
        return found


def _walk_block(block: PlanBlock, found: list[PlanStep]) -> None:
    for step in block.steps:
        found.append(step)
        if step.body:
            _walk_block(step.body, found)
        for branch in step.branches:
            _walk_block(branch, found)
        if step.catch and step.catch.do:
            _walk_block(step.catch.do, found)


def plan_hash(plan: Plan) -> str:
    """sha256 over the canonical JSON of the plan, its own hash field left out."""
    data = plan.model_dump(mode="json", by_alias=True, exclude={"hash"})
    _drop_unused_later_fields(plan, data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _drop_unused_later_fields(value: Any, dumped: Any) -> None:
    """Remove from `dumped` (the JSON dump of `value`) every later field still at its default."""
    if isinstance(value, _Frozen) and isinstance(dumped, dict):
        for name, field in type(value).model_fields.items():
            key = field.alias or name
            if key not in dumped:
                continue
            attribute = getattr(value, name)
            if name in value.later_fields and attribute == field.get_default(call_default_factory=True):
                del dumped[key]
            else:
                _drop_unused_later_fields(attribute, dumped[key])
    elif isinstance(value, list | tuple) and isinstance(dumped, list):
        for item, dumped_item in zip(value, dumped, strict=True):
            _drop_unused_later_fields(item, dumped_item)
    elif isinstance(value, dict) and isinstance(dumped, dict):
        for key, item in value.items():
            _drop_unused_later_fields(item, dumped.get(key))


CatchSpec.model_rebuild()
PlanStep.model_rebuild()
