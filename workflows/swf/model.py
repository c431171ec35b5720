"""The parts of a Serverless Workflow 1.0 document the engine runs, as pydantic models.

They validate shapes only (what the spec's JSON Schema says for these constructs); what a value
means — expressions, durations, references to `use` — is checked by the lowering. Constructs outside
the supported subset never reach these models: `workflows/swf/unsupported.py` reports them first.
Python keywords (`if`, `for`, `in`, `as`, `with`, …) are fields with an alias.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

NAME_PATTERN = r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
SEMVER_PATTERN = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DurationParts(_Model):
    days: StrictInt | None = Field(None, ge=0)
    hours: StrictInt | None = Field(None, ge=0)
    minutes: StrictInt | None = Field(None, ge=0)
    seconds: StrictInt | None = Field(None, ge=0)
    milliseconds: StrictInt | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> DurationParts:
        if all(value is None for value in self.model_dump().values()):
            raise ValueError("a duration needs at least one of days, hours, minutes, seconds, milliseconds")
        return self


def _duration(value: Any) -> Any:
    # Messages complete "… should be <message>" (workflows/diagnostics.py).
    if isinstance(value, dict):
        try:
            return DurationParts.model_validate(value)
        except ValidationError as error:
            problems = "; ".join(
                " ".join([*map(str, e["loc"]), e["msg"].removeprefix("Input ").removeprefix("Value error, ")])
                for e in error.errors()
            )
            raise ValueError(f"a duration like {{seconds: 30}} ({problems})") from None
    if isinstance(value, str):
        return value
    raise ValueError("a duration like {seconds: 30}, ISO 8601 text like PT30S or a ${ } expression")


# A duration: days/hours/minutes/seconds/milliseconds, ISO 8601 text (PT30S) or a runtime expression.
Duration = Annotated[Any, AfterValidator(_duration)]


class Document(_Model):
    dsl: StrictStr
    namespace: StrictStr = Field(pattern=NAME_PATTERN)
    name: StrictStr = Field(pattern=NAME_PATTERN)
    version: StrictStr = Field(pattern=SEMVER_PATTERN)
    title: StrictStr | None = None
    summary: StrictStr | None = None
    tags: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class Evaluate(_Model):
    language: StrictStr = "jq"
    mode: Literal["strict", "loose"] = "strict"


class SchemaDefinition(_Model):
    format: StrictStr = "json"
    document: Any = None
    resource: dict[str, Any] | None = None


class Input(_Model):
    schema_: SchemaDefinition | None = Field(None, alias="schema")
    from_: StrictStr | dict[str, Any] | None = Field(None, alias="from")


class Output(_Model):
    schema_: SchemaDefinition | None = Field(None, alias="schema")
    as_: StrictStr | dict[str, Any] | None = Field(None, alias="as")


class Export(_Model):
    schema_: SchemaDefinition | None = Field(None, alias="schema")
    as_: StrictStr | dict[str, Any] | None = Field(None, alias="as")


class Timeout(_Model):
    after: Duration


class TaskBase(_Model):
    if_: StrictStr | None = Field(None, alias="if")
    input: Input | None = None
    output: Output | None = None
    export: Export | None = None
    timeout: Timeout | StrictStr | None = None
    then: StrictStr | None = None
    metadata: dict[str, Any] | None = None


TaskList = list[dict[str, Any]]  # items are checked one by one, so one bad task does not hide the others


class SetTask(TaskBase):
    set: dict[str, Any] | StrictStr = Field(min_length=1)


class SwitchCase(_Model):
    when: StrictStr | None = None
    then: StrictStr


class SwitchTask(TaskBase):
    switch: list[dict[str, SwitchCase]] = Field(min_length=1)


class ForLoop(_Model):
    each: StrictStr = "item"
    in_: StrictStr = Field(alias="in")
    at: StrictStr = "index"


class ForTask(TaskBase):
    for_: ForLoop = Field(alias="for")
    while_: StrictStr | None = Field(None, alias="while")
    do: TaskList


class DoTask(TaskBase):
    do: TaskList


class Fork(_Model):
    branches: TaskList
    compete: StrictBool = False


class ForkTask(TaskBase):
    fork: Fork


class ErrorDefinition(_Model):
    type: StrictStr
    status: StrictInt
    instance: StrictStr | None = None
    title: StrictStr | None = None
    detail: StrictStr | None = None


class Raise(_Model):
    error: ErrorDefinition | StrictStr


class RaiseTask(TaskBase):
    raise_: Raise = Field(alias="raise")


class WaitTask(TaskBase):
    wait: Duration


class ErrorFilter(_Model):
    type: StrictStr | None = None
    status: StrictInt | None = None
    instance: StrictStr | None = None
    title: StrictStr | None = None
    details: StrictStr | None = None


class CatchErrors(_Model):
    with_: ErrorFilter | None = Field(None, alias="with")


class Backoff(_Model):
    constant: dict[str, Any] | None = None
    exponential: dict[str, Any] | None = None
    linear: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Backoff:
        if sum(value is not None for value in (self.constant, self.exponential, self.linear)) != 1:
            raise ValueError("a backoff is exactly one of constant, exponential or linear")
        return self


class AttemptLimit(_Model):
    count: StrictInt | None = Field(None, ge=0)
    duration: Duration | None = None


class RetryLimit(_Model):
    attempt: AttemptLimit | None = None
    duration: Duration | None = None


class Jitter(_Model):
    from_: Duration = Field(alias="from")
    to: Duration


class RetryPolicy(_Model):
    when: StrictStr | None = None
    exceptWhen: StrictStr | None = None  # noqa: N815 - the spec's name
    delay: Duration | None = None
    backoff: Backoff | None = None
    limit: RetryLimit | None = None
    jitter: Jitter | None = None


class Catch(_Model):
    errors: CatchErrors | None = None
    as_: StrictStr | None = Field(None, alias="as")
    when: StrictStr | None = None
    exceptWhen: StrictStr | None = None  # noqa: N815 - the spec's name
    retry: RetryPolicy | StrictStr | None = None
    do: TaskList | None = None


class TryTask(TaskBase):
    try_: TaskList = Field(alias="try")
    catch: Catch


class BasicAuthentication(_Model):
    username: StrictStr | None = None
    password: StrictStr | None = None
    use: StrictStr | None = None


class BearerAuthentication(_Model):
    token: StrictStr | None = None
    use: StrictStr | None = None


class Authentication(_Model):
    use: StrictStr | None = None
    basic: BasicAuthentication | None = None
    bearer: BearerAuthentication | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Authentication:
        if sum(value is not None for value in (self.use, self.basic, self.bearer)) != 1:
            raise ValueError("an authentication is exactly one of use, basic or bearer")
        return self


class Endpoint(_Model):
    uri: StrictStr
    authentication: Authentication | None = None


class HttpArguments(_Model):
    method: StrictStr
    endpoint: Endpoint | StrictStr
    headers: dict[str, StrictStr] | StrictStr | None = None
    query: dict[str, Any] | StrictStr | None = None
    body: Any = None
    output: Literal["raw", "content", "response"] = "content"
    redirect: StrictBool = False  # accepted; the HTTP client follows redirects, so no 3xx reaches the task


class CallHttp(TaskBase):
    call: Literal["http"]
    with_: HttpArguments = Field(alias="with")


class CallFunction(TaskBase):
    call: StrictStr
    with_: dict[str, Any] | None = Field(None, alias="with")


class Subflow(_Model):
    namespace: StrictStr
    name: StrictStr
    version: StrictStr
    input: dict[str, Any] | None = None


class Run(_Model):
    workflow: Subflow
    await_: StrictBool = Field(True, alias="await")
    return_: StrictStr | None = Field(None, alias="return")


class RunTask(TaskBase):
    run: Run


class Use(_Model):
    authentications: dict[str, Any] | None = None
    errors: dict[str, Any] | None = None
    functions: dict[str, Any] | None = None
    retries: dict[str, Any] | None = None
    secrets: list[StrictStr] | None = None
    timeouts: dict[str, Any] | None = None


class Workflow(_Model):
    document: Document
    input: Input | None = None
    use: Use | None = None
    do: TaskList
    timeout: Timeout | StrictStr | None = None
    output: Output | None = None
    evaluate: Evaluate | None = None
