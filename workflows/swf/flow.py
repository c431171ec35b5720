"""How a Serverless Workflow plan runs: task lists in order with `then` jumps, the spec's data flow
around every task, and one small handler per step kind.

`Flow` drives a `Run` (workflows/run/) and reuses its machinery — step states, activities,
search attributes, checkpoints — so an execution is watched the same way whatever its front end.
Every task goes through one pipeline, `run_task`:

    raw input → input.schema → input.from → if → handler → output.as → output.schema → export.as

and a block returns its last output with a directive (`continue`, or `end` travelling up to the
workflow). Runs inside the Temporal workflow sandbox: deterministic APIs only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from jsonschema import Draft202012Validator

    from rte import __version__
    from rte import temporal as sa
    from rte.errors import EngineError, json_type_name
    from workflows.durations import parse_duration
    from workflows.expression_boundary import evaluate_template
    from workflows.expressions import truthy
    from workflows.params import violation_message
    from workflows.plan import ACTIVITY_KINDS, CatchSpec, Plan, PlanBlock, PlanStep, RetrySpec, StepKind
    from workflows.run import Run, StepFailed, checkpoint
    from workflows.state import ErrorInfo, ExecutionInput, ItemsProgress, StepState, StepStatus, bounded
    from workflows.swf import http
    from workflows.swf.errors import engine_error, matches_filter, problem_of, raised, with_problem
    from workflows.swf.expressions import ARGUMENTS

# Pure tasks all run in one workflow activation; a long run of them (a big `for` of `set` tasks)
# would trip the SDK's deadlock detector, so every this many tasks a checkpoint timer ends the
# activation. Counted, not timed: the decision must replay identically.
TASKS_PER_CHECKPOINT = 1_000
RUNTIME = {"name": "runtime-engine", "version": __version__, "metadata": {}}
_ARGUMENT_NAME = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class TaskRun:
    """One run of one task: what its expressions see besides `.`."""

    step: PlanStep
    raw_input: Any
    locals: dict[str, Any]  # named `for` and `catch` variables in scope
    started_at: datetime
    input: Any = None  # after input.from: `$input`
    raw_output: Any = None
    output: Any = None  # after output.as: `$output` (export.as only)
    then: str | None = None  # set by a switch, or by a composite whose body ended the workflow


class Flow:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.plan: Plan = run.plan
        self.context: Any = {}
        self.visits: Counter[str] = Counter()  # runs of each step so far (loops, jumps, retries)
        self.tasks_run = 0

    # the workflow ----------------------------------------------------------------------------

    async def run_workflow(self) -> Any:
        data: Any = self.run.params
        if self.plan.input_from is not None:
            data = await self._workflow_expression(self.plan.input_from, data, "/input/from")
        output, _ = await self.run_block(self.plan.root, data, {})
        if self.plan.outputs is not None:
            output = await self._workflow_expression(self.plan.outputs, output, "/output/as")
        if self.plan.output_schema:
            self.validate(self.plan.output_schema, output, "the workflow's output", "/output/schema")
        return output

    async def _workflow_expression(self, template: Any, data: Any, instance: str) -> Any:
        try:
            return await self.evaluate(template, data, None)
        except StepFailed as failure:
            raise StepFailed(with_problem(failure.error, instance)) from None

    # blocks and tasks --------------------------------------------------------------------------

    async def run_block(self, block: PlanBlock, data: Any, variables: dict[str, Any]) -> tuple[Any, str]:
        """Run a task list from its first task, following `then`; (last output, `continue` or `end`)."""
        position = {step.id: index for index, step in enumerate(block.steps)}
        index, transitions, output = 0, 0, data
        limit = self.run.input.config.max_transitions
        while index < len(block.steps):
            transitions += 1
            if transitions > limit:
                where = block.steps[index].path.rsplit("/", 2)[0]
                raise StepFailed(
                    with_problem(
                        engine_error(
                            "runtime",
                            f"the tasks of /{where} made {limit:,} transitions: "
                            "`then` jumps loop without an exit",
                        ),
                        "/" + where,
                    )
                )
            output, directive = await self.run_task(block.steps[index], output, variables)
            if directive == "end":
                return output, "end"
            if directive == "exit":
                return output, "continue"
            index = index + 1 if directive == "continue" else position[directive]
        return output, "continue"

    async def run_task(self, step: PlanStep, raw_input: Any, variables: dict[str, Any]) -> tuple[Any, str]:
        """The data-flow pipeline around one task; (its transformed output, the directive)."""
        state = self.run.state.steps[step.path]
        task = TaskRun(step, raw_input, variables, workflow.now(), input=raw_input)
        try:
            self.validate(step.schemas.get("input"), raw_input, "the task's input", "/" + step.path)
            if step.input_from is not None:
                task.input = await self.evaluate(step.input_from, raw_input, task)
            if step.if_ and not await self.holds(step.if_, task.input, task):
                state.status, state.skipped_reason = StepStatus.SKIPPED, "its condition is false"
                state.ended_at = workflow.now()
                return raw_input, "continue"
            self._started(step, state, task)
            scope = {"input": task.input, "context": self.context, **variables}
            here = await self.run.pause_point(step, "before", scope, None, state, task_input=task.input)
            if here is not None and here.input_edited:
                task.input = here.next_input  # an operator edited the task's input while paused
            task.raw_output = await self._execute(task)
            output = task.raw_output
            if step.output_as is not None:
                output = await self.evaluate(step.output_as, task.raw_output, task)
            self.validate(step.schemas.get("output"), output, "the task's output", "/" + step.path)
            if step.export_as is not None:
                task.output = output
                self.context = await self.evaluate(step.export_as, output, task)
                self.validate(
                    step.schemas.get("export"), self.context, "the exported context", "/" + step.path
                )
        except StepFailed as failure:
            self._failed(step, state, failure)
            await self.run.pause_point(
                step, "error", {"input": task.input, "context": self.context}, None, state
            )
            raise
        except asyncio.CancelledError:
            state.status, state.skipped_reason = StepStatus.SKIPPED, "cancelled: another branch won the race"
            state.ended_at = workflow.now()
            if _waits(step):
                self.run.set_current(step, running=False)
            raise
        state.status, state.output, state.ended_at = StepStatus.COMPLETED, bounded(output), workflow.now()
        if _waits(step):
            self.run.set_current(step, running=False)
        await self.run.pause_point(
            step, "after", {"input": task.input, "output": output, "context": self.context}, None, state
        )
        self.tasks_run += 1
        if self.tasks_run % TASKS_PER_CHECKPOINT == 0:
            await checkpoint()
        return output, task.then or step.then or "continue"

    async def _execute(self, task: TaskRun) -> Any:
        step = task.step
        handler = _HANDLERS.get(step.kind)
        if handler is None:
            raise StepFailed(
                engine_error(
                    "configuration", f"step kind '{step.kind}' cannot run in a Serverless Workflow plan"
                )
            )
        if step.timeout_s is None or step.kind in ACTIVITY_KINDS:  # activities time out on their own
            return await handler(self, task)
        try:
            async with asyncio.timeout(step.timeout_s):
                return await handler(self, task)
        except TimeoutError:
            raise StepFailed(
                engine_error("timeout", f"task '{step.id}' ran past its timeout of {step.timeout_s:g} s")
            ) from None

    def _started(self, step: PlanStep, state: StepState, task: TaskRun) -> None:
        self.visits[step.path] += 1
        state.status, state.started_at, state.ended_at = StepStatus.RUNNING, task.started_at, None
        state.input, state.error, state.skipped_reason = bounded(task.input), None, None
        self.run.record_start(step)
        if _waits(step):
            self.run.set_current(step, running=True)

    def _failed(self, step: PlanStep, state: StepState, failure: StepFailed) -> None:
        # A composite fails with the error of a task inside it: count the error once, where it began.
        first_report = failure.error.step_path in (None, step.path)
        failure.error = with_problem(
            failure.error.model_copy(update={"step_path": failure.error.step_path or step.path}),
            "/" + step.path,
        )
        state.status, state.error, state.ended_at = StepStatus.FAILED, failure.error, workflow.now()
        if _waits(step):
            self.run.set_current(step, running=False)
        if first_report:
            self.run.state.error_count += 1
            self.run.upsert({sa.ERROR_COUNT: self.run.state.error_count})

    # expressions and schemas -------------------------------------------------------------------

    async def evaluate(
        self, template: Any, data: Any, task: TaskRun | None, variables: dict[str, Any] | None = None
    ) -> Any:
        """A template against `data`, with the runtime arguments it names."""
        names = _argument_names(json.dumps(template) if not isinstance(template, str) else template)
        scope = {**(task.locals if task else {}), **(variables or {})}
        values = {
            name: self._argument(name, task, scope) for name in names if name in ARGUMENTS or name in scope
        }
        try:
            return await evaluate_template(template, data, values)
        except EngineError as error:
            raise StepFailed(
                ErrorInfo(category=error.category, message=error.message, details=error.details)
            ) from None

    async def holds(
        self, condition: str, data: Any, task: TaskRun, variables: dict[str, Any] | None = None
    ) -> bool:
        """A jq condition (`if`, `when`, `while`…) is true for `data` (jq truthiness)."""
        return truthy(await self.evaluate("${ " + condition + " }", data, task, variables))

    def _argument(self, name: str, task: TaskRun | None, scope: dict[str, Any]) -> Any:
        if name in scope:
            return scope[name]
        if name == "context":
            return self.context
        if name == "workflow":
            return {
                "id": workflow.info().workflow_id,
                "definition": self.plan.document,
                "input": self.run.params,
                "startedAt": _moment(self.run.state.started_at),
            }
        if name == "runtime":
            return RUNTIME
        if task is None:
            return None
        if name == "input":
            return task.input
        if name == "output":
            return task.output
        return {  # $task
            "name": task.step.id,
            "reference": "/" + task.step.path,
            "definition": _pointer(self.plan.document, task.step.path),
            "input": task.raw_input,
            "output": task.raw_output,
            "startedAt": _moment(task.started_at),
        }

    def validate(self, schema: dict[str, Any] | None, value: Any, what: str, instance: str) -> None:
        if not schema:
            return
        problem = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
        if problem is not None:
            where = "".join(f"/{part}" for part in problem.absolute_path) or "/"
            error = engine_error(
                "validation", f"{what} does not match its schema at {where}: {violation_message(problem)}"
            )
            raise StepFailed(with_problem(error, instance))

    # helpers the handlers share ------------------------------------------------------------------

    async def call(self, task: TaskRun, params: dict[str, Any], shown: dict[str, Any] | None = None) -> Any:
        """The step's activity; the n-th run of a step (in a loop, after a jump) is its item n-1, so
        each run has its own activity id and idempotency key."""
        step, state = task.step, self.run.state.steps[task.step.path]
        state.input = bounded(shown if shown is not None else params)
        visit = self.visits[step.path]
        result = await self.run.call_activity(
            step, params, visit - 1 if visit > 1 else None, local=step.local
        )
        state.attempts = int(result.metrics.get("attempt", 1))
        state.metrics = result.metrics
        return result.output

    async def catches(
        self, catch: CatchSpec, problem: dict[str, Any], task: TaskRun, scope: dict[str, Any]
    ) -> bool:
        if not matches_filter(problem, catch.errors):
            return False
        if catch.when and not await self.holds(catch.when, problem, task, scope):
            return False
        return not (catch.except_when and await self.holds(catch.except_when, problem, task, scope))

    async def retry_delay(
        self,
        retry: RetrySpec,
        attempt: int,
        started: datetime,
        problem: dict[str, Any],
        task: TaskRun,
        scope: dict[str, Any],
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when the policy gives up."""
        if attempt >= retry.max_attempts:
            return None
        if retry.when and not await self.holds(retry.when, problem, task, scope):
            return None
        if retry.except_when and await self.holds(retry.except_when, problem, task, scope):
            return None
        if retry.linear:
            delay = retry.initial_interval_s * attempt
        else:
            delay = retry.initial_interval_s * retry.backoff ** (attempt - 1)
        delay = min(delay, retry.max_interval_s)
        if retry.jitter_s:
            delay += workflow.random().uniform(*retry.jitter_s)
        elapsed = (workflow.now() - started).total_seconds()
        if retry.max_elapsed_s is not None and elapsed + delay > retry.max_elapsed_s:
            return None
        return delay


# one handler per kind -------------------------------------------------------------------------------

Handler = Callable[[Flow, TaskRun], Awaitable[Any]]


async def _set(flow: Flow, task: TaskRun) -> Any:
    return await flow.evaluate(task.step.with_["set"], task.input, task)


async def _switch(flow: Flow, task: TaskRun) -> Any:
    for case in task.step.cases:
        if case.when is None or await flow.holds(case.when, task.input, task):
            task.then = case.then
            return task.input
    return task.input  # no case matched: the task's own `then` applies


async def _raise(flow: Flow, task: TaskRun) -> Any:
    spec = task.step.error
    assert spec is not None
    problem = await flow.evaluate(
        {key: value for key, value in spec.model_dump().items() if value is not None}, task.input, task
    )
    problem.setdefault("instance", "/" + task.step.path)
    raise StepFailed(raised(problem, task.step.path))


async def _wait(flow: Flow, task: TaskRun) -> Any:
    duration = await flow.evaluate(task.step.with_["duration"], task.input, task)
    try:
        seconds = parse_duration(duration)
    except ValueError as error:
        raise StepFailed(engine_error("expression", f"wait: {error}")) from None
    await workflow.sleep(seconds)
    return task.input


async def _http(flow: Flow, task: TaskRun) -> Any:
    arguments = task.step.with_
    try:
        evaluated = await flow.evaluate(http.evaluable_parts(arguments), task.input, task)
        call = http.build_call(arguments, evaluated, task.input, task.step.timeout_s or 30.0)
    except EngineError as error:
        raise StepFailed(ErrorInfo(category=error.category, message=error.message)) from None
    answer = await flow.call(task, call.params, http.shown_params(call))
    return http.task_output(arguments.get("output", "content"), call, answer)


async def _python(flow: Flow, task: TaskRun) -> Any:
    arguments = await flow.evaluate(task.step.with_["args"], task.input, task)
    return await flow.call(task, {"function": task.step.with_["function"], "args": arguments})


async def _do(flow: Flow, task: TaskRun) -> Any:
    step = task.step
    assert step.body is not None
    data = (
        await flow.evaluate(step.with_["arguments"], task.input, task)
        if "arguments" in step.with_
        else task.input
    )
    if step.for_each is not None:
        return await _loop(flow, task, data)
    output, directive = await flow.run_block(step.body, data, task.locals)
    task.then = "end" if directive == "end" else None
    return output


async def _loop(flow: Flow, task: TaskRun, data: Any) -> Any:
    """A `for`: the body runs once per item, in order; each run's output is the next one's input."""
    step, spec = task.step, task.step.for_each
    assert spec is not None and step.body is not None
    items = await flow.evaluate("${ " + spec.items + " }", data, task)
    if items is None:
        return data
    if not isinstance(items, list):
        raise StepFailed(
            engine_error("expression", f"for.in must give an array, got {json_type_name(items)}")
        )
    progress = flow.run.state.steps[step.path].items = ItemsProgress(total=len(items))
    output = data
    for index, item in enumerate(items):
        variables = {**task.locals, spec.item_var: item, spec.index_var: index}
        if spec.while_ and not await flow.holds(spec.while_, output, task, variables):
            break
        output, directive = await flow.run_block(step.body, output, variables)
        progress.completed += 1
        if directive == "end":
            task.then = "end"
            break
    return output


async def _fork(flow: Flow, task: TaskRun) -> Any:
    """Branches run at once; without `compete` the output is every branch's output, in order; with
    it, the first branch to finish wins and the others are cancelled."""
    branches = [
        asyncio.create_task(flow.run_block(branch, task.input, task.locals)) for branch in task.step.branches
    ]
    try:
        pending = set(branches)
        while pending:
            done, pending = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for branch in (branch for branch in branches if branch in done):  # in branch order
                if branch.exception() is not None:
                    raise branch.exception()  # type: ignore[misc]
                if task.step.compete:
                    output, directive = branch.result()
                    task.then = "end" if directive == "end" else None
                    return output
    finally:
        for branch in branches:
            if not branch.done():
                branch.cancel()
        await asyncio.gather(*branches, return_exceptions=True)
    results = [branch.result() for branch in branches]
    if any(directive == "end" for _, directive in results):
        task.then = "end"
    return [output for output, _ in results]


async def _try(flow: Flow, task: TaskRun) -> Any:
    """Run the body. A caught error is retried while the policy allows; then `catch.do` handles it.
    Without `catch.do`, an error whose retries ran out is raised again, and an error caught without
    a retry policy is swallowed (the task's output is then its input)."""
    step, catch = task.step, task.step.catch
    assert step.body is not None and catch is not None
    started, attempt = workflow.now(), 1
    while True:
        try:
            output, directive = await _attempt(flow, task, catch.retry)
            task.then = "end" if directive == "end" else None
            return output
        except StepFailed as failure:
            problem = problem_of(failure.error, "/" + step.path)
            scope = {**task.locals, catch.as_: problem}
            if not await flow.catches(catch, problem, task, scope):
                raise
            delay = (
                await flow.retry_delay(catch.retry, attempt, started, problem, task, scope)
                if catch.retry
                else None
            )
            if delay is not None:
                flow.run.state.steps[step.path].attempts = attempt + 1
                await workflow.sleep(delay)
                attempt += 1
                continue
            if catch.do is None:
                if catch.retry is not None:
                    raise
                return task.input
            output, directive = await flow.run_block(catch.do, task.input, scope)
            task.then = "end" if directive == "end" else None
            return output


async def _attempt(flow: Flow, task: TaskRun, retry: RetrySpec | None) -> tuple[Any, str]:
    assert task.step.body is not None
    if retry is None or retry.attempt_timeout_s is None:
        return await flow.run_block(task.step.body, task.input, task.locals)
    try:
        async with asyncio.timeout(retry.attempt_timeout_s):
            return await flow.run_block(task.step.body, task.input, task.locals)
    except TimeoutError:
        message = f"an attempt of task '{task.step.id}' ran past {retry.attempt_timeout_s:g} s"
        raise StepFailed(with_problem(engine_error("timeout", message), "/" + task.step.path)) from None


async def _child(flow: Flow, task: TaskRun) -> Any:
    """`run: workflow`: the child's plan (embedded at compile time) runs as a child workflow."""
    step, arguments = task.step, task.step.with_
    name = f"{arguments['namespace']}/{arguments['name']}:{arguments['version']}"
    if "plan" not in arguments:
        raise StepFailed(
            engine_error(
                "configuration", f"workflow {name} was not in the catalog when this definition was compiled"
            )
        )
    plan = Plan.model_validate(arguments["plan"])
    params = await flow.evaluate(arguments["input"], task.input, task) if "input" in arguments else task.input
    if not isinstance(params, dict):
        raise StepFailed(engine_error("validation", f"the input of workflow {name} must be an object"))
    info, visit = workflow.info(), flow.visits[step.path]
    child_id = f"{info.workflow_id}/{step.path}" + (f"#{visit}" if visit > 1 else "")
    child_input = ExecutionInput(
        plan=plan,
        params=params,
        trigger="child",
        config=flow.run.input.config,
        step_task_queues=flow.run.input.step_task_queues,
    )
    attributes = TypedSearchAttributes(
        [
            SearchAttributePair(sa.DEFINITION_ID, plan.definition_id),
            SearchAttributePair(sa.DEFINITION_VERSION, plan.version),
            SearchAttributePair(sa.PLAN_HASH, plan.hash),
            SearchAttributePair(sa.TRIGGER_TYPE, "child"),
            SearchAttributePair(sa.PARENT_EXECUTION, info.workflow_id),
            SearchAttributePair(sa.ITEMS_PROCESSED, 0),
            SearchAttributePair(sa.ERROR_COUNT, 0),
        ]
    )
    if not arguments.get("await", True):
        await workflow.start_child_workflow(
            "RunPlan",
            child_input,
            id=child_id,
            search_attributes=attributes,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        return task.input
    try:
        return await workflow.execute_child_workflow(
            "RunPlan", child_input, id=child_id, search_attributes=attributes
        )
    except ChildWorkflowError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
            raise StepFailed(ErrorInfo.model_validate(cause.details[0])) from None
        raise StepFailed(engine_error("runtime", f"workflow {name} failed: {cause or error}")) from None


_HANDLERS: dict[StepKind, Handler] = {
    StepKind.SET: _set,
    StepKind.SWITCH: _switch,
    StepKind.RAISE: _raise,
    StepKind.DELAY: _wait,
    StepKind.HTTP: _http,
    StepKind.PYTHON: _python,
    StepKind.DO: _do,
    StepKind.FORK: _fork,
    StepKind.TRY: _try,
    StepKind.CHILD: _child,
}


def _waits(step: PlanStep) -> bool:
    """Steps that take time are the execution's current steps (a search attribute); composites are
    not: the steps inside them are."""
    return step.kind in ACTIVITY_KINDS or step.kind in (StepKind.DELAY, StepKind.CHILD)


@lru_cache(maxsize=4096)
def _argument_names(text: str) -> frozenset[str]:
    return frozenset(_ARGUMENT_NAME.findall(text))


def _moment(moment: datetime) -> dict[str, Any]:
    seconds = moment.timestamp()
    return {
        "iso8601": moment.isoformat().replace("+00:00", "Z"),
        "epoch": {"seconds": int(seconds), "milliseconds": int(seconds * 1000)},
    }


def _pointer(document: Any, path: str) -> Any:
    """The value at a JSON pointer (without its leading `/`), or None."""
    node = document
    for part in path.split("/"):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node
