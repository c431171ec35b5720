"""Lowering: a Serverless Workflow 1.0 document → diagnostics and the engine's Plan.

Every task list becomes a `sequence` block and every task a `PlanStep` whose `path` is the task's
JSON pointer in the document (without the leading `/`, e.g. `do/0/getPet`), so errors name their
`instance` the way the spec does. The mapping, kind by kind:

| Serverless Workflow | plan |
|---|---|
| `set` | `set`, `with.set` = the value template |
| `switch` | `switch`, one `SwitchCase` per case (`when` None = default) |
| `do` | `do` with `body` |
| `for` | `do` with `body` and `for_each` (`item_var`/`index_var` = `each`/`at`, `while`) |
| `fork` | `fork`, one single-step block per branch, `compete` |
| `try` | `try` with `body` and `catch` (`errors`, `as`, `when`, `except_when`, `retry`, `do`) |
| `raise` | `raise` with `error` (a reusable error is inlined) |
| `wait` | `delay`, `with.duration` |
| `call: http` | `http` (endpoint, method, headers, query, body, output, authentication) |
| `call: <use.functions entry>` | `do` whose body is the function's task, `with.arguments` its input |
| `call: <any other name>` | `python`: the worker's registered function of that name |
| `run: workflow` | `child`, with the child's plan embedded when the catalog knows it |

`if`, `input.from`, `output.as`, `export.as`, `then`, `timeout` and `metadata` go to the step's own
fields. Everything outside the subset is reported by `workflows/swf/unsupported.py` (E110).

Codes: E101 shape, E102 duplicate task name, E103 unknown `then` target, E107 bad duration, E110
unsupported construct, E111 unknown `use` reference, E201/E202 expression, E205 `$secrets` outside
authentication, W110 `run: workflow` not found in the catalog.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ValidationError

from workflows.definition import LOCAL_ACTIVITY_MAX_TIMEOUT_S, SAFE_HTTP_METHODS
from workflows.diagnostics import DataPath, Diagnostic, has_errors, make_diagnostic, validation_diagnostics
from workflows.durations import parse_duration
from workflows.plan import (
    CatchSpec,
    ErrorSpec,
    ForEachSpec,
    Plan,
    PlanBlock,
    PlanStep,
    RetrySpec,
    StepKind,
    SwitchCase,
)
from workflows.source import SourceMap
from workflows.swf import model as m
from workflows.swf import unsupported as u
from workflows.swf.auth import Authentication, lower_authentication
from workflows.swf.catalog import WorkflowCatalog, default_catalog
from workflows.swf.expressions import (
    ARGUMENTS,
    EvaluationMode,
    as_program,
    as_template,
    as_transform,
    check,
    programs,
    whole_expression,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

DIRECTIVES = frozenset({"continue", "exit", "end"})
TASK_KINDS = ("call", "do", "fork", "emit", "for", "listen", "raise", "run", "set", "switch", "try", "wait")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_HTTP_TIMEOUT_S = 30.0
DEFAULT_FUNCTION_TIMEOUT_S = 60.0
DEFAULT_RETRY_DELAY_S = 1.0
UNLIMITED_ATTEMPTS = 1_000_000  # a retry policy without a limit retries until the task's own timeout
NO_INTERVAL_CAP_S = 10 * 365 * 86400.0
_COMPONENT = {"errors": "error", "retries": "retry policy", "timeouts": "timeout"}
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DSL_1_0 = re.compile(r"^1\.0\.\d+")


def compile_swf(
    data: dict[str, Any],
    positions: SourceMap,
    diagnostics: list[Diagnostic],
    *,
    catalog: WorkflowCatalog | None = None,
) -> Plan | None:
    """Validate and lower a Serverless Workflow document; None when it has errors (in `diagnostics`)."""
    return _Lowering(data, positions, diagnostics, catalog or default_catalog).lower()


def definition_id(name: str) -> str:
    """The engine's definition id for a workflow name (ids are lowercase)."""
    return name.lower()


class _Lowering:
    def __init__(
        self,
        data: dict[str, Any],
        positions: SourceMap,
        diagnostics: list[Diagnostic],
        catalog: WorkflowCatalog,
    ) -> None:
        self.data = data
        self.positions = positions
        self.diagnostics = diagnostics
        self.catalog = catalog
        self.mode: EvaluationMode = "strict"
        self.use = m.Use()
        self.connections: list[str] = []
        self.quiet = 0  # > 0 while lowering something already reported (a function used twice)
        self.functions_lowered: set[str] = set()
        self.function_stack: list[str] = []
        self.use_cache: dict[tuple[str, str], Any] = {}

    # reporting ---------------------------------------------------------------------------------

    def report(
        self, code: str, message: str, path: DataPath, hint: str | None = None, *, at_key: bool = False
    ) -> None:
        if not self.quiet:
            position = self.positions.locate(path, at_key=at_key)
            self.diagnostics.append(make_diagnostic(code, message, path, position, hint))

    def unsupported(self, construct: u.Unsupported, where: str, path: DataPath) -> None:
        self.report(u.UNSUPPORTED_CODE, u.message(construct, where), path, construct.hint, at_key=True)

    def validate(self, model: type[ModelT], value: Any, path: DataPath) -> ModelT | None:
        try:
            return model.model_validate(value)
        except ValidationError as error:
            if not self.quiet:
                error = _without_union_noise(error)
                self.diagnostics.extend(
                    validation_diagnostics(error, self.data, self.positions, model, base=path)
                )
            return None

    # the document --------------------------------------------------------------------------------

    def lower(self) -> Plan | None:
        errors_before = sum(d.is_error for d in self.diagnostics)
        data = self._without_unsupported_top_level()
        workflow = self.validate(m.Workflow, data, ())
        if workflow is not None:
            self.use = workflow.use or m.Use()
            self.mode = workflow.evaluate.mode if workflow.evaluate else "strict"
            self.connections = list(self.use.secrets or [])
        for name, definition in (self.use.functions or {}).items():
            self._function_once(name, definition)
        root = self.block(data.get("do"), ("do",), frozenset())
        if workflow is None or sum(d.is_error for d in self.diagnostics) > errors_before:
            return None
        return self._plan(workflow, root)

    def _without_unsupported_top_level(self) -> dict[str, Any]:
        data = dict(self.data)
        for key, construct in u.TOP_LEVEL.items():
            if key in data:
                self.unsupported(construct, "top level", (key,))
                del data[key]
        if isinstance(data.get("use"), dict):
            use = dict(data["use"])
            for key, construct in u.USE.items():
                if key in use:
                    self.unsupported(construct, "top level", ("use", key))
                    del use[key]
            data["use"] = use
        evaluate = data.get("evaluate")
        if isinstance(evaluate, dict) and evaluate.get("language", "jq") != "jq":
            self.unsupported(
                u.EXPRESSION_LANGUAGE, f"language '{evaluate.get('language')}'", ("evaluate", "language")
            )
            data["evaluate"] = {key: value for key, value in evaluate.items() if key != "language"}
        document = data.get("document")
        if (
            isinstance(document, dict)
            and isinstance(document.get("dsl"), str)
            and not _DSL_1_0.match(document["dsl"])
        ):
            self.unsupported(u.DSL_VERSION, f"dsl '{document['dsl']}'", ("document", "dsl"))
        return data

    def _plan(self, workflow: m.Workflow, root: PlanBlock) -> Plan | None:
        document = workflow.document
        input_schema: dict[str, Any] = {}
        input_from = None
        if workflow.input is not None:
            input_schema = self.schema(workflow.input.schema_, ("input", "schema")) or {}
            input_from = self.transform(workflow.input.from_, ("input", "from"), frozenset())
        outputs = output_schema = None
        if workflow.output is not None:
            outputs = self.transform(workflow.output.as_, ("output", "as"), frozenset())
            output_schema = self.schema(workflow.output.schema_, ("output", "schema"))
        timeout_s = self.timeout(workflow.timeout, ("timeout",))
        if has_errors(self.diagnostics):
            return None
        return Plan(
            source_format="swf",
            definition_id=definition_id(document.name),
            name=document.title or document.name,
            version=document.version,
            description=document.summary,
            input_schema=input_schema,
            connections=tuple(dict.fromkeys(self.connections)),
            root=root,
            outputs=outputs,
            timeout_s=timeout_s,
            expression_mode="swf",
            input_from=input_from,
            output_schema=output_schema,
            document=self.data,
        ).with_hash()

    # task lists ----------------------------------------------------------------------------------

    def block(
        self, items: Any, path: DataPath, scope: frozenset[str], plan_path: DataPath | None = None
    ) -> PlanBlock:
        """A task list → a sequence block. `plan_path` is where its steps live in the plan when
        that differs from the document (the tasks of a function, inlined at each call)."""
        plan_path = plan_path if plan_path is not None else path
        if not isinstance(items, list):
            self.report("E101", f"`{_dotted(path)}` must be a list of tasks", path)
            return PlanBlock(mode="sequence")
        named: list[tuple[int, str, Any]] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or len(item) != 1:
                self.report(
                    "E101",
                    f"`{_dotted((*path, index))}` must map one task name to its task",
                    (*path, index),
                    "write `- taskName: {set: …}`",
                )
                continue
            ((name, task),) = item.items()
            if any(name == seen for _, seen, _ in named):
                self.report(
                    "E102", f"duplicate task name '{name}' in this list", (*path, index, name), at_key=True
                )
                continue
            named.append((index, str(name), task))
        siblings = frozenset(name for _, name, _ in named)
        steps = [
            self.task(name, task, (*path, index, name), scope, (*plan_path, index, name), siblings)
            for index, name, task in named
        ]
        return PlanBlock(mode="sequence", steps=tuple(step for step in steps if step is not None))

    def task(
        self,
        name: str,
        raw: Any,
        path: DataPath,
        scope: frozenset[str],
        plan_path: DataPath,
        siblings: frozenset[str],
    ) -> PlanStep | None:
        if not isinstance(raw, dict):
            self.report("E101", f"task '{name}' must be a mapping", path)
            return None
        kind = "for" if "for" in raw else next((key for key in TASK_KINDS if key in raw), None)
        if kind is None:
            self.report(
                "E101",
                f"task '{name}' has no task type",
                path,
                "a task has exactly one of: " + ", ".join(TASK_KINDS),
                at_key=True,
            )
            return None
        if kind in u.TASKS:
            self.unsupported(u.TASKS[kind], f"task '{name}'", (*path, kind))
            return None
        lower = _LOWER_BY_KIND[kind]
        return lower(self, _Task(name, raw, path, scope, plan_path, siblings))

    def common(self, task: _Task, base: m.TaskBase, kind: StepKind, **fields: Any) -> PlanStep:
        """The fields every task has: condition, data flow, schemas, timeout, `then`, metadata."""
        path, scope = task.path, task.scope
        schemas: dict[str, Any] = {}
        input_from = output_as = export_as = None
        if base.input is not None:
            input_from = self.transform(base.input.from_, (*path, "input", "from"), scope)
            schemas["input"] = self.schema(base.input.schema_, (*path, "input", "schema"))
        if base.output is not None:
            output_as = self.transform(base.output.as_, (*path, "output", "as"), scope)
            schemas["output"] = self.schema(base.output.schema_, (*path, "output", "schema"))
        if base.export is not None:
            export_as = self.transform(base.export.as_, (*path, "export", "as"), scope)
            schemas["export"] = self.schema(base.export.schema_, (*path, "export", "schema"))
        if base.then is not None:
            self.directive(base.then, (*path, "then"), task.siblings)
        if "timeout_s" not in fields:
            fields["timeout_s"] = self.timeout(base.timeout, (*path, "timeout"))
        return PlanStep(
            id=task.name,
            path="/".join(str(part) for part in task.plan_path),
            kind=kind,
            name=task.name,
            if_=self.condition(base.if_, (*path, "if"), scope),
            then=base.then,
            input_from=input_from,
            output_as=output_as,
            export_as=export_as,
            schemas={key: value for key, value in schemas.items() if value is not None},
            metadata=base.metadata or {},
            **fields,
        )

    def directive(self, target: str, path: DataPath, siblings: frozenset[str]) -> None:
        if target in DIRECTIVES or target in siblings:
            return
        close = difflib.get_close_matches(target, sorted(siblings), n=1)
        listed = ", ".join(sorted(siblings))
        hint = (
            f"did you mean '{close[0]}'? " if close else ""
        ) + f"`then` takes continue, exit, end or a task of this list: {listed}"
        self.report("E103", f"`then` names unknown task '{target}'", path, hint)

    # values --------------------------------------------------------------------------------------

    def check_programs(
        self, template: Any, path: DataPath, scope: frozenset[str], secrets: bool = False
    ) -> None:
        variables = frozenset(ARGUMENTS) | scope
        for subpath, program in programs(template):
            for problem in check(program, variables, secrets_allowed=secrets):
                self.report(problem.code, problem.message, (*path, *subpath), problem.hint)

    def condition(self, value: str | None, path: DataPath, scope: frozenset[str]) -> str | None:
        if value is None:
            return None
        program = as_program(value)
        self.check_programs("${ " + program + " }", path, scope)
        return program

    def transform(self, value: Any, path: DataPath, scope: frozenset[str]) -> Any:
        if value is None:
            return None
        template = as_transform(value, self.mode)
        self.check_programs(template, path, scope)
        return template

    def template(self, value: Any, path: DataPath, scope: frozenset[str]) -> Any:
        template = as_template(value, self.mode)
        self.check_programs(template, path, scope)
        return template

    def seconds(self, value: Any, path: DataPath) -> float | None:
        """A literal duration in seconds; None (after E107) when it is not one."""
        if isinstance(value, m.DurationParts):
            parts = value.model_dump()
            return (
                (parts["days"] or 0) * 86400
                + (parts["hours"] or 0) * 3600
                + (parts["minutes"] or 0) * 60
                + (parts["seconds"] or 0)
                + (parts["milliseconds"] or 0) / 1000
            )
        try:
            return parse_duration(value)
        except ValueError as error:
            self.report("E107", str(error), path, "write {seconds: 30} or an ISO 8601 duration like PT30S")
            return None

    def timeout(self, value: m.Timeout | str | None, path: DataPath) -> float | None:
        if value is None:
            return None
        if isinstance(value, str):
            found = self.reusable("timeouts", value, m.Timeout, path)
            if found is None:
                return None
            value, path = found, ("use", "timeouts", value)
        if isinstance(value.after, str) and whole_expression(value.after) is not None:
            self.report("E107", "a timeout must be a fixed duration, not an expression", (*path, "after"))
            return None
        return self.seconds(value.after, (*path, "after"))

    def schema(self, value: m.SchemaDefinition | None, path: DataPath) -> dict[str, Any] | None:
        if value is None:
            return None
        if value.resource is not None:
            self.unsupported(u.EXTERNAL_SCHEMA, f"`{_dotted(path)}`", (*path, "resource"))
            return None
        if value.format.split(":", 1)[0] != "json":
            self.unsupported(u.SCHEMA_FORMAT, f"format '{value.format}'", (*path, "format"))
            return None
        if not isinstance(value.document, dict):
            self.report(
                "E101", f"`{_dotted(path)}.document` must be a JSON Schema object", (*path, "document")
            )
            return None
        try:
            Draft202012Validator.check_schema(value.document)
        except SchemaError as error:
            self.report(
                "E101", f"not a valid JSON Schema: {error.message}", (*path, "document", *error.absolute_path)
            )
            return None
        return value.document

    def reusable(self, section: str, name: str, model: type[ModelT], path: DataPath) -> ModelT | None:
        """A named component under `use.<section>`, validated once."""
        key = (section, name)
        if key not in self.use_cache:
            definitions = getattr(self.use, section) or {}
            if name not in definitions:
                known = ", ".join(sorted(definitions)) or "none"
                self.report(
                    "E111", f"unknown {_COMPONENT[section]} '{name}' (use.{section} defines: {known})", path
                )
                return None
            self.use_cache[key] = self.validate(model, definitions[name], ("use", section, name))
        return self.use_cache[key]

    def variable_name(self, value: str, path: DataPath) -> str:
        name = value.removeprefix("$")
        if not _VARIABLE_NAME.match(name) or name in ARGUMENTS:
            self.report(
                "E101",
                f"'{value}' cannot name a variable",
                path,
                "use letters, digits and '_', and none of: " + ", ".join(ARGUMENTS),
            )
        return name

    # functions -----------------------------------------------------------------------------------

    def _function_once(self, name: str, definition: Any) -> None:
        """Report a `use.functions` entry's problems once, used or not."""
        if name not in self.functions_lowered:
            self.functions_lowered.add(name)
            self.function_stack.append(name)
            self.task(
                name,
                definition,
                ("use", "functions", name),
                frozenset(),
                ("use", "functions", name),
                frozenset({name}),
            )
            self.function_stack.pop()

    def function_body(self, function: str, call_plan_path: DataPath) -> PlanBlock:
        self.quiet += 1  # its own problems were reported by _function_once
        try:
            step = self.task(
                function,
                (self.use.functions or {})[function],
                ("use", "functions", function),
                frozenset(),
                (*call_plan_path, function),
                frozenset({function}),
            )
        finally:
            self.quiet -= 1
        return PlanBlock(mode="sequence", steps=(step,) if step else ())

    # authentication ----------------------------------------------------------------------------

    def authentication(self, raw: Any, path: DataPath) -> Authentication | None:
        lowered = lower_authentication(raw, path, self)
        if lowered is not None and lowered.connection:
            self.connections.append(lowered.connection)
        return lowered


@dataclass(frozen=True, slots=True)
class _Task:
    """One task being lowered: its name and mapping, where it is in the document and in the plan,
    the variables in scope (for/catch names) and the names `then` may jump to."""

    name: str
    raw: dict[str, Any]
    path: DataPath
    scope: frozenset[str]
    plan_path: DataPath
    siblings: frozenset[str]


# one lowering per task kind -------------------------------------------------------------------------


def _set(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.SetTask, task.raw, task.path)
    if model is None:
        return None
    value = lowering.template(model.set, (*task.path, "set"), task.scope)
    return lowering.common(task, model, StepKind.SET, with_={"set": value})


def _switch(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.SwitchTask, task.raw, task.path)
    if model is None:
        return None
    cases: list[SwitchCase] = []
    for index, item in enumerate(model.switch):
        path = (*task.path, "switch", index)
        if len(item) != 1:
            lowering.report("E101", "a switch case maps one case name to its `when` and `then`", path)
            continue
        ((name, case),) = item.items()
        lowering.directive(case.then, (*path, name, "then"), task.siblings)
        when = lowering.condition(case.when, (*path, name, "when"), task.scope)
        cases.append(SwitchCase(name=name, when=when, then=case.then))
    return lowering.common(task, model, StepKind.SWITCH, cases=tuple(cases))


def _for(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.ForTask, task.raw, task.path)
    if model is None:
        return None
    item = lowering.variable_name(model.for_.each, (*task.path, "for", "each"))
    index = lowering.variable_name(model.for_.at, (*task.path, "for", "at"))
    inner = task.scope | {item, index}
    for_each = ForEachSpec(
        items=lowering.condition(model.for_.in_, (*task.path, "for", "in"), task.scope) or ".",
        concurrency=1,  # iterations run in order: each one's output is the next one's input
        item_var=item,
        index_var=index,
        while_=lowering.condition(model.while_, (*task.path, "while"), inner),
    )
    body = lowering.block(model.do, (*task.path, "do"), inner, (*task.plan_path, "do"))
    return lowering.common(task, model, StepKind.DO, body=body, for_each=for_each)


def _do(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.DoTask, task.raw, task.path)
    if model is None:
        return None
    body = lowering.block(model.do, (*task.path, "do"), task.scope, (*task.plan_path, "do"))
    return lowering.common(task, model, StepKind.DO, body=body)


def _fork(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.ForkTask, task.raw, task.path)
    if model is None:
        return None
    path, plan_path = (*task.path, "fork", "branches"), (*task.plan_path, "fork", "branches")
    branches: list[PlanBlock] = []
    for index, item in enumerate(model.fork.branches):
        if not isinstance(item, dict) or len(item) != 1:
            lowering.report("E101", "a branch maps one task name to its task", (*path, index))
            continue
        ((name, raw),) = item.items()
        step = lowering.task(
            name, raw, (*path, index, name), task.scope, (*plan_path, index, name), frozenset({name})
        )
        branches.append(PlanBlock(mode="sequence", steps=(step,) if step else ()))
    return lowering.common(task, model, StepKind.FORK, branches=tuple(branches), compete=model.fork.compete)


def _try(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.TryTask, task.raw, task.path)
    if model is None:
        return None
    body = lowering.block(model.try_, (*task.path, "try"), task.scope, (*task.plan_path, "try"))
    catch, path = model.catch, (*task.path, "catch")
    name = lowering.variable_name(catch.as_, (*path, "as")) if catch.as_ else "error"
    handler_scope = task.scope | {name}
    errors = catch.errors.with_.model_dump(exclude_none=True) if catch.errors and catch.errors.with_ else {}
    handler = None
    if catch.do is not None:
        handler = lowering.block(catch.do, (*path, "do"), handler_scope, (*task.plan_path, "catch", "do"))
    spec = CatchSpec(
        errors=errors,
        as_=name,
        when=lowering.condition(catch.when, (*path, "when"), handler_scope),
        except_when=lowering.condition(catch.exceptWhen, (*path, "exceptWhen"), handler_scope),
        retry=_retry(lowering, catch.retry, (*path, "retry"), handler_scope),
        do=handler,
    )
    return lowering.common(task, model, StepKind.TRY, body=body, catch=spec)


def _retry(
    lowering: _Lowering, value: m.RetryPolicy | str | None, path: DataPath, scope: frozenset[str]
) -> RetrySpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        found = lowering.reusable("retries", value, m.RetryPolicy, path)
        if found is None:
            return None
        value, path = found, ("use", "retries", value)
    delay = (
        lowering.seconds(value.delay, (*path, "delay")) if value.delay is not None else DEFAULT_RETRY_DELAY_S
    )
    backoff = value.backoff
    limit = value.limit or m.RetryLimit()
    attempt = limit.attempt or m.AttemptLimit()
    jitter = None
    if value.jitter is not None:
        low = lowering.seconds(value.jitter.from_, (*path, "jitter", "from"))
        high = lowering.seconds(value.jitter.to, (*path, "jitter", "to"))
        jitter = (low or 0.0, max(low or 0.0, high or 0.0))
    return RetrySpec(
        max_attempts=max(attempt.count, 1) if attempt.count is not None else UNLIMITED_ATTEMPTS,
        initial_interval_s=delay or DEFAULT_RETRY_DELAY_S,
        backoff=2.0 if backoff is not None and backoff.exponential is not None else 1.0,
        max_interval_s=NO_INTERVAL_CAP_S,
        linear=backoff is not None and backoff.linear is not None,
        when=lowering.condition(value.when, (*path, "when"), scope),
        except_when=lowering.condition(value.exceptWhen, (*path, "exceptWhen"), scope),
        max_elapsed_s=lowering.seconds(limit.duration, (*path, "limit", "duration"))
        if limit.duration
        else None,
        attempt_timeout_s=lowering.seconds(attempt.duration, (*path, "limit", "attempt", "duration"))
        if attempt.duration
        else None,
        jitter_s=jitter,
    )


def _raise(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.RaiseTask, task.raw, task.path)
    if model is None:
        return None
    error, path = model.raise_.error, (*task.path, "raise", "error")
    if isinstance(error, str):
        found = lowering.reusable("errors", error, m.ErrorDefinition, path)
        if found is None:
            return None
        error, path = found, ("use", "errors", error)
    values = {
        key: lowering.template(value, (*path, key), task.scope) for key, value in error.model_dump().items()
    }
    return lowering.common(task, model, StepKind.RAISE, error=ErrorSpec(**values))


def _wait(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.WaitTask, task.raw, task.path)
    if model is None:
        return None
    path = (*task.path, "wait")
    if isinstance(model.wait, str) and whole_expression(model.wait) is not None:
        duration: Any = lowering.template(model.wait, path, task.scope)
    else:
        duration = lowering.seconds(model.wait, path)
    return lowering.common(task, model, StepKind.DELAY, with_={"duration": duration})


def _call(lowering: _Lowering, task: _Task) -> PlanStep | None:
    call = task.raw.get("call")
    where = f"task '{task.name}'"
    if call == "http":
        return _call_http(lowering, task)
    if isinstance(call, str) and call in u.CALLS:
        lowering.unsupported(u.CALLS[call], where, (*task.path, "call"))
        return None
    if isinstance(call, str) and call in (lowering.use.functions or {}):
        return _call_defined_function(lowering, task, call)
    if isinstance(call, str) and any(mark in call for mark in ("://", "@", ":")):
        lowering.unsupported(u.CATALOG_FUNCTION, f"{where} calls '{call}'", (*task.path, "call"))
        return None
    return _call_python(lowering, task)


def _call_http(lowering: _Lowering, task: _Task) -> PlanStep | None:
    raw = dict(task.raw)
    path = (*task.path, "with")
    arguments = raw.get("with")
    authentication = None
    if isinstance(arguments, dict) and isinstance(arguments.get("endpoint"), dict):
        # Authentication is lowered on its own (it may be unsupported): keep it out of the shape check.
        endpoint = dict(arguments["endpoint"])
        authentication = endpoint.pop("authentication", None)
        raw["with"] = {**arguments, "endpoint": endpoint}
    model = lowering.validate(m.CallHttp, raw, task.path)
    auth = None
    if authentication is not None:
        auth = lowering.authentication(authentication, (*path, "endpoint", "authentication"))
    if model is None:
        return None
    http = model.with_
    method = http.method.upper()
    if method not in HTTP_METHODS:
        lowering.report(
            "E101",
            f"unknown HTTP method '{http.method}'",
            (*path, "method"),
            "use one of " + ", ".join(sorted(HTTP_METHODS)),
        )
    uri_path = (*path, "endpoint", "uri") if isinstance(http.endpoint, m.Endpoint) else (*path, "endpoint")
    uri = http.endpoint.uri if isinstance(http.endpoint, m.Endpoint) else http.endpoint
    if whole_expression(uri) is None and "://" not in uri:
        lowering.report(
            "E101",
            f"endpoint '{uri}' is not an absolute URI",
            uri_path,
            "write e.g. https://api.example.com/items/{id}",
        )
    parameters: dict[str, Any] = {
        "method": method,
        "endpoint": lowering.template(uri, uri_path, task.scope),
        "output": http.output,
    }
    for key in ("headers", "query"):
        value = getattr(http, key)
        if isinstance(value, str) and whole_expression(value) is None:
            lowering.report("E101", f"`{key}` must be a mapping or a ${{ }} expression", (*path, key))
        elif value is not None:
            parameters[key] = lowering.template(value, (*path, key), task.scope)
    if http.body is not None:
        parameters["body"] = lowering.template(http.body, (*path, "body"), task.scope)
    if auth is not None and auth.inline:
        parameters["authentication"] = auth.inline
    timeout_s = lowering.timeout(model.timeout, (*task.path, "timeout")) or DEFAULT_HTTP_TIMEOUT_S
    return lowering.common(
        task,
        model,
        StepKind.HTTP,
        with_=parameters,
        connection=auth.connection if auth else None,
        timeout_s=timeout_s,
        # As in the native format: only short requests that are safe to repeat run as local activities.
        local=method in SAFE_HTTP_METHODS and timeout_s <= LOCAL_ACTIVITY_MAX_TIMEOUT_S,
    )


def _call_python(lowering: _Lowering, task: _Task) -> PlanStep | None:
    model = lowering.validate(m.CallFunction, task.raw, task.path)
    if model is None:
        return None
    arguments = lowering.template(model.with_ or {}, (*task.path, "with"), task.scope)
    timeout_s = lowering.timeout(model.timeout, (*task.path, "timeout")) or DEFAULT_FUNCTION_TIMEOUT_S
    return lowering.common(
        task,
        model,
        StepKind.PYTHON,
        with_={"function": model.call, "args": arguments},
        timeout_s=timeout_s,  # a regular activity: a completed call never runs again
    )


def _call_defined_function(lowering: _Lowering, task: _Task, function: str) -> PlanStep | None:
    model = lowering.validate(m.CallFunction, task.raw, task.path)
    if model is None:
        return None
    if function in lowering.function_stack:
        lowering.report("E111", f"function '{function}' calls itself", (*task.path, "call"))
        return None
    lowering.function_stack.append(function)
    try:
        body = lowering.function_body(function, task.plan_path)
    finally:
        lowering.function_stack.pop()
    parameters = {}
    if model.with_ is not None:
        parameters["arguments"] = lowering.template(model.with_, (*task.path, "with"), task.scope)
    return lowering.common(task, model, StepKind.DO, with_=parameters, body=body)


def _run(lowering: _Lowering, task: _Task) -> PlanStep | None:
    process = task.raw.get("run")
    if isinstance(process, dict):
        for key, construct in u.PROCESSES.items():
            if key in process:
                lowering.unsupported(construct, f"task '{task.name}'", (*task.path, "run", key))
                return None
    model = lowering.validate(m.RunTask, task.raw, task.path)
    if model is None:
        return None
    subflow, path = model.run.workflow, (*task.path, "run", "workflow")
    parameters: dict[str, Any] = {
        "namespace": subflow.namespace,
        "name": subflow.name,
        "version": subflow.version,
        "await": model.run.await_,
    }
    if subflow.input is not None:
        parameters["input"] = lowering.template(subflow.input, (*path, "input"), task.scope)
    child = lowering.catalog.find(subflow.namespace, subflow.name, subflow.version)
    if child is not None:
        parameters["plan"] = child.model_dump(mode="json", by_alias=True)
    else:
        lowering.report(
            "W110",
            f"workflow {subflow.namespace}/{subflow.name}:{subflow.version} is not in the catalog: "
            "the task fails if it runs",
            path,
            "compile the child workflow first and add its plan to the catalog (workflows.swf.catalog)",
        )
    return lowering.common(task, model, StepKind.CHILD, with_=parameters)


_LOWER_BY_KIND = {
    "call": _call,
    "do": _do,
    "fork": _fork,
    "for": _for,
    "raise": _raise,
    "run": _run,
    "set": _set,
    "switch": _switch,
    "try": _try,
    "wait": _wait,
}


def _without_union_noise(error: ValidationError) -> ValidationError:
    """Drop "should be a string" from a `X | str` field whose mapping failed deeper inside `X`: the
    author wrote a mapping, so only what is wrong inside it helps."""
    items = error.errors()

    def shadowed(item: Any) -> bool:
        union = item["loc"][:-1]
        return item["type"] == "string_type" and any(
            len(other["loc"]) > len(item["loc"]) and other["loc"][: len(union)] == union for other in items
        )

    kept = [item for item in items if not shadowed(item)]
    if len(kept) == len(items):
        return error
    return ValidationError.from_exception_data(error.title, kept)  # type: ignore[arg-type]


def _dotted(path: DataPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
