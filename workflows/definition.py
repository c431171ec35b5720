"""The native definition format: a DAG of steps with `needs`, as pydantic models.

These models are the format's single source of truth: the compiler validates with them and the
published JSON Schema (`schemas/rte-workflow.schema.json`) is generated from them. What each step kind
expects in `with` lives in one table, `KINDS`, which both the compiler and the schema read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

SCHEMA_ID = "https://runtime-engine.dev/schemas/rte-workflow.schema.json"

NativeKind = Literal["set", "transform", "switch", "http", "ai", "script", "python", "delay", "approval"]


@dataclass(frozen=True)
class KindSpec:
    """What a step kind takes in `with` and how it runs by default."""

    summary: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these keys must be present
    any_keys: bool = False  # `set`: every key is part of the output
    pure: bool = False  # evaluated inside the workflow, no activity
    activity: bool = False  # I/O: an activity, retried by default
    default_timeout_s: float | None = None
    connection: Literal["required", "optional", "none"] = "none"
    local_when_short: bool = False  # may run as a local activity when short
    durations: tuple[str, ...] = ()  # `with` keys that hold durations
    text: tuple[str, ...] = ()  # `with` keys whose value must be text (a template at most)

    @property
    def known_keys(self) -> tuple[str, ...]:
        return (*self.required, *self.one_of, *self.optional)


KINDS: dict[str, KindSpec] = {
    "set": KindSpec("Output the evaluated `with` object.", any_keys=True, pure=True),
    "transform": KindSpec(
        "Apply the jq program `jq` to `input` (default: the step's scope).",
        required=("jq",),
        optional=("input",),
        pure=True,
        text=("jq",),
    ),
    "switch": KindSpec(
        "Choose a case; only the steps it names run.", required=("cases",), optional=("default",), pure=True
    ),
    "http": KindSpec(
        "Send an HTTP request.",
        required=("url",),
        optional=("method", "headers", "query", "body", "timeout_s", "expect", "response"),
        text=("url", "method"),
        activity=True,
        default_timeout_s=30,
        connection="optional",
        local_when_short=True,
    ),
    "ai": KindSpec(
        "Ask a language model.",
        required=("model",),
        one_of=("prompt", "messages"),
        optional=("system", "temperature", "max_tokens", "timeout_s", "response_format"),
        text=("model",),
        activity=True,
        default_timeout_s=120,
        connection="required",
    ),
    "script": KindSpec(
        "Run code in the sandbox.",
        required=("code",),
        optional=("input", "timeout_s", "memory_mb", "cpu_seconds"),
        text=("code",),
        activity=True,
        default_timeout_s=30,
        connection="optional",
    ),
    "python": KindSpec(
        "Call a registered Python function.",
        required=("function",),
        optional=("args",),
        text=("function",),
        activity=True,
        default_timeout_s=60,
        connection="optional",
    ),
    "delay": KindSpec("Wait durably.", required=("duration",), durations=("duration",)),
    "approval": KindSpec(
        "Wait for a person to approve.", optional=("message", "timeout", "approvers"), durations=("timeout",)
    ),
}

# Local activities are much faster but are not heartbeated: keep them to short steps.
LOCAL_ACTIVITY_MAX_TIMEOUT_S = 60.0
# Methods that are safe to repeat, so a short step using one may run as a local activity by default.
SAFE_HTTP_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

DEFINITION_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"

Duration = Annotated[
    StrictStr | StrictInt | StrictFloat,
    Field(
        description='Seconds as a number, a value like "250ms", "30s", "5m", "1h30m", "1d", or ISO 8601 ("PT30S").',
        examples=["30s", "5m", "PT1M", 10],
    ),
]
StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN, max_length=100)]
Template = Annotated[
    Any,
    Field(description="Any JSON value; strings may hold `${ jq }` expressions, evaluated at run time."),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetryPolicy(_Model):
    """How a failing I/O step is retried. I/O steps retry 3 times by default; pure steps never do."""

    max_attempts: int = Field(3, ge=1, le=1000, description="Total attempts, the first included.")
    initial_interval: Duration = "1s"
    backoff: float = Field(2.0, ge=1.0, le=100, description="Each wait is the previous one times this.")
    max_interval: Duration = "60s"
    non_retryable: list[str] = Field(
        default_factory=list,
        description="Error categories (e.g. http_4xx, auth, validation) or types never retried.",
        examples=[["http_4xx"]],
    )


class ForEachLoop(_Model):
    """Run the step once per item; `.item` and `.index` are in scope inside it."""

    items: StrictStr | list[Any] = Field(
        description="`${ jq }` yielding the array of items, or a literal list.",
        examples=["${ .steps.fetch.output.orders }"],
    )
    concurrency: int = Field(4, ge=1, le=1000, description="Items running at once.")
    batch_size: int = Field(1, ge=1, le=10_000, description="Items handed to one activity call.")


class SwitchCaseDefinition(_Model):
    name: StrictStr = Field(description="The branch name, the switch's output when chosen.")
    when: StrictStr | bool = Field(description="`${ jq }` condition; the first true case is chosen.")
    then: list[StepId] = Field(default_factory=list, description="Steps that run when this case is chosen.")


class SwitchParameters(_Model):
    """`with` of a switch step: the first case whose `when` is true is chosen, else `default`."""

    cases: list[SwitchCaseDefinition] = Field(min_length=1)
    default: list[StepId] = Field(default_factory=list, description="Steps that run when no case is chosen.")


class StepDefinition(_Model):
    """One node of the DAG. A step starts when every step in `needs` has finished."""

    id: StepId = Field(description="Unique within the definition; read its output as `.steps.<id>.output`.")
    name: StrictStr | None = Field(None, description="Label shown in UIs.")
    description: StrictStr | None = None
    kind: NativeKind = Field(description="What the step does; `with` holds its parameters.")
    needs: list[StepId] = Field(default_factory=list, description="Steps that must finish first.")
    with_: dict[str, Template] = Field(
        default_factory=dict, alias="with", description="Parameters of the kind (see the kinds table)."
    )
    if_: StrictStr | bool | None = Field(
        None, alias="if", description="`${ jq }` condition; the step is skipped when it is false or null."
    )
    for_each: ForEachLoop | None = None
    retry: RetryPolicy | None = None
    timeout: Duration | None = Field(None, description="Per attempt; the default depends on the kind.")
    on_error: Literal["fail", "continue", "pause"] = Field(
        "fail",
        description="fail: fail the run; continue: mark the step failed, skip its dependants; "
        "pause: wait for an operator to retry, skip or fail.",
    )
    connection: StrictStr | None = Field(None, description="Id of a connection listed in `connections`.")
    local: StrictBool | None = Field(
        None,
        description="Run as a Temporal local activity: in the worker, without a server round trip — several "
        "times faster, but the step may run again if the worker dies before the workflow task "
        "completes (at-least-once), so use it for short idempotent calls. Default: only http GET/HEAD "
        "steps whose timeout is at most 60 s. for_each items always run as regular activities.",
    )


class WorkflowDefinition(_Model):
    """A workflow in the native format: run parameters, the steps and what the run returns."""

    schema_: StrictStr | None = Field(None, alias="$schema", description="Optional, for editors.")
    id: StrictStr = Field(pattern=DEFINITION_ID_PATTERN, max_length=100, examples=["order-sync"])
    name: StrictStr | None = Field(None, description="Defaults to the id.")
    version: StrictStr | None = Field(None, description='A free label, e.g. "1.0".', examples=["1.0"])
    description: StrictStr | None = None
    inputs: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema (type: object) of the run parameters, read as `.inputs`.",
    )
    connections: list[StrictStr] = Field(default_factory=list, description="Connection ids the steps use.")
    max_concurrency: int = Field(16, ge=1, le=10_000, description="Steps of the DAG running at once.")
    timeout: Duration | None = Field(None, description="Limit on the whole run.")
    steps: list[StepDefinition] = Field(min_length=1)
    outputs: Template = Field(
        None, description="What the run returns; `${ }` may read `.inputs` and `.steps`."
    )


def definition_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the format, with each kind's required `with` keys spelled out."""
    schema = WorkflowDefinition.model_json_schema(by_alias=True)
    switch = SwitchParameters.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    schema["$defs"].update(switch.pop("$defs", {}))
    schema["$defs"]["SwitchParameters"] = switch
    step = schema["$defs"]["StepDefinition"]
    step["allOf"] = [_kind_rule(kind, spec) for kind, spec in KINDS.items()]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Runtime Engine workflow definition",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def _kind_rule(kind: str, spec: KindSpec) -> dict[str, Any]:
    with_schema: dict[str, Any] = {"type": "object"}
    if kind == "switch":
        with_schema = {"$ref": "#/$defs/SwitchParameters"}
    elif not spec.any_keys:
        with_schema["properties"] = {
            key: {"type": "string"} if key in spec.text else {} for key in spec.known_keys
        }
    if spec.required:
        with_schema["required"] = list(spec.required)
    if spec.one_of:
        with_schema["anyOf"] = [{"required": [key]} for key in spec.one_of]
    then: dict[str, Any] = {"properties": {"with": with_schema}}
    if spec.required or spec.one_of:
        then["required"] = ["with"]
    if spec.connection == "required":
        then["required"] = [*then.get("required", []), "connection"]
    return {
        "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
        "then": then,
        "description": f"{kind}: {spec.summary}",
    }
