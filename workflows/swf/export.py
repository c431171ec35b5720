"""A native plan written back as a Serverless Workflow 1.0 document, where the plan allows it.

The DAG becomes one task list in dependency order (steps that could run in parallel run one after
the other; the outcome is the same). Native expressions read `.inputs` and `.steps.<id>`, so every
task rebuilds that scope as its input and records its output in the context:

    input:  {from: '${ {inputs: $workflow.input, steps: ($context.steps // {})} }'}
    export: {as: '${ $context + {steps: (($context.steps // {}) + {"<id>": {output: ., status: "completed"}})} }'}

and the user's expressions run unchanged. A step that is skipped (its `if`, a switch that chose
another case, every step it needs skipped) becomes a task with an `if`, and is absent from
`.steps` — where the native run would show it with status `skipped`.

Not exportable, with the reason: `ai`, `script` and `approval` steps (no Serverless Workflow
equivalent), `on_error` other than `fail`, relative URLs (they need the connection's base URL), and
delays whose duration is an expression. Retries become `try`/`catch.retry` on the retryable errors;
a backoff other than 1 (constant) is written as exponential (doubling), and `max_interval` is dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from workflows.durations import parse_duration
from workflows.expressions import split_template
from workflows.plan import OnError, Plan, PlanStep, RetrySpec, StepKind

DSL_VERSION = "1.0.3"
COMMUNICATION = "https://serverlessworkflow.io/spec/1.0.0/errors/communication"
SCOPE = "${ {inputs: $workflow.input, steps: ($context.steps // {})} }"
_RETRYABLE_STATUS = {
    "http_5xx": ".status >= 500",
    "network": ".status >= 500",
    "timeout": ".status == 408",
    "rate_limit": ".status == 429",
}
_NOT_EXPORTABLE = {
    StepKind.AI: "`ai` steps have no Serverless Workflow equivalent",
    StepKind.SCRIPT: "`script` steps have no Serverless Workflow equivalent (`run: script` is not supported)",
    StepKind.APPROVAL: "`approval` steps wait for a person; Serverless Workflow would need events for that",
}


@dataclass
class Export:
    document: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)  # why the plan cannot be exported


def export_swf(plan: Plan) -> Export:
    if plan.source_format == "swf" and plan.document is not None:
        return Export(plan.document)
    problems: list[str] = []
    order = _dependency_order(plan)
    gates = _gates(plan)
    tasks = [{step.id: _task(step, gates.get(step.id, {}), problems)} for step in order]
    if problems:
        return Export(None, problems)
    document: dict[str, Any] = {
        "document": {
            "dsl": DSL_VERSION,
            "namespace": "default",
            "name": _name(plan.definition_id),
            "version": _semver(plan.version),
            "title": plan.name,
        },
    }
    if plan.description:
        document["document"]["summary"] = plan.description
    if plan.input_schema:
        document["input"] = {"schema": {"format": "json", "document": plan.input_schema}}
    if plan.connections:
        document["use"] = {"secrets": list(plan.connections)}
    document["do"] = tasks
    if plan.timeout_s:
        document["timeout"] = {"after": _duration(plan.timeout_s)}
    outputs = "($context.steps // {}) | map_values(.output)"
    if plan.outputs is not None:
        outputs = f"{{inputs: $workflow.input, steps: ($context.steps // {{}})}} | {to_jq(plan.outputs)}"
    document["output"] = {"as": "${ " + outputs + " }"}
    return Export(document)


def _task(step: PlanStep, gates: dict[str, list[str]], problems: list[str]) -> dict[str, Any]:
    """One native step → one task: the call (in a `try` when it retries), looped by a `for` when it
    has for_each, with the scope as input and its output recorded in the context."""
    if step.kind in _NOT_EXPORTABLE:
        problems.append(f"step '{step.id}': {_NOT_EXPORTABLE[step.kind]}")
        return {}
    if step.on_error != OnError.FAIL:
        problems.append(f"step '{step.id}': on_error '{step.on_error}' has no Serverless Workflow equivalent")
    call, reshape = _body(step, problems)
    unit = _with_retry(step, call)
    scope = SCOPE
    if step.for_each is not None:
        collected = f"[({reshape})]" if reshape else "[.]"
        item = {
            "input": {"from": "${ . + {item: $item, index: $index} }"},
            **unit,
            "output": {"as": "${ $input + {__results: ($input.__results + " + collected + ")} }"},
        }
        unit = {
            "for": {"each": "item", "in": "${ " + step.for_each.items + " }", "at": "index"},
            "do": [{step.id: item}],
            "output": {"as": "${ .__results }"},
        }
        scope = "${ {inputs: $workflow.input, steps: ($context.steps // {}), __results: []} }"
    elif reshape:
        unit["output"] = {"as": "${ " + reshape + " }"}
    exported: dict[str, Any] = {"input": {"from": scope}}
    condition = _condition(step, gates)
    if condition:
        exported["if"] = "${ " + condition + " }"
    exported.update(unit)
    record = "{" + json.dumps(step.id) + ': {output: ., status: "completed"}}'
    exported["export"] = {"as": "${ $context + {steps: (($context.steps // {}) + " + record + ")} }"}
    return exported


def _body(step: PlanStep, problems: list[str]) -> tuple[dict[str, Any], str | None]:
    """The task that does the step's work, and the jq program (if any) that gives its output the
    native shape."""
    parameters = step.with_
    if step.kind == StepKind.SET:
        return {"set": to_strict(parameters) if parameters else "${ {} }"}, None
    if step.kind == StepKind.TRANSFORM:
        data = to_jq(parameters["input"]) if "input" in parameters else "."
        return {"set": "${ (" + data + ") | (" + str(parameters.get("jq", ".")) + ") }"}, None
    if step.kind == StepKind.SWITCH:
        chosen = json.dumps(next((case.name for case in step.cases if case.when is None), "default"))
        for case in reversed([case for case in step.cases if case.when is not None]):
            chosen = f"if ({case.when}) then {json.dumps(case.name)} else {chosen} end"
        return {"set": {"branch": "${ " + chosen + " }"}}, None
    if step.kind == StepKind.DELAY:
        try:
            seconds = parse_duration(parameters.get("duration"))
        except ValueError:
            problems.append(f"step '{step.id}': a delay whose duration is an expression cannot be exported")
            return {}, None
        return {"wait": _duration(seconds)}, json.dumps({"slept_s": seconds})
    if step.kind == StepKind.PYTHON:
        return _timed(
            step, {"call": parameters["function"], "with": to_strict(parameters.get("args") or {})}
        ), None
    call, full_response = _http(step, problems)
    return _timed(
        step, call
    ), "{status: .statusCode, headers: .headers, body: .content}" if full_response else None


def _http(step: PlanStep, problems: list[str]) -> tuple[dict[str, Any], bool]:
    parameters = step.with_
    url = parameters["url"]
    if isinstance(url, str) and split_template(url) is None and "://" not in url:
        problems.append(f"step '{step.id}': the relative URL '{url}' needs its connection's base URL")
    endpoint: Any = to_strict(url)
    if isinstance(endpoint, str) and "{" in endpoint and not endpoint.startswith("${"):
        endpoint = "${ " + json.dumps(endpoint) + " }"  # keep `{…}` literal: it is not a URI template here
    if step.connection:
        endpoint = {"uri": endpoint, "authentication": {"bearer": {"use": step.connection}}}
    arguments: dict[str, Any] = {"method": str(parameters.get("method", "GET")).lower(), "endpoint": endpoint}
    for key in ("headers", "query"):
        if parameters.get(key):
            arguments[key] = {name: _text(value) for name, value in to_strict(parameters[key]).items()}
    if parameters.get("body") is not None:
        arguments["body"] = to_strict(parameters["body"])
    full_response = parameters.get("response") == "full"
    if full_response:
        arguments["output"] = "response"
    return {"call": "http", "with": arguments}, full_response


def _timed(step: PlanStep, task: dict[str, Any]) -> dict[str, Any]:
    if step.timeout_s:
        task["timeout"] = {"after": _duration(step.timeout_s)}
    return task


def _with_retry(step: PlanStep, call: dict[str, Any]) -> dict[str, Any]:
    """The call inside a `try` that retries what the native step retries (retryable errors only)."""
    retry: RetrySpec | None = step.retry
    if retry is None or retry.max_attempts <= 1:
        return call
    conditions = [test for category, test in _RETRYABLE_STATUS.items() if category not in retry.non_retryable]
    if not conditions:
        return call
    policy: dict[str, Any] = {
        "when": "${ " + " or ".join(dict.fromkeys(conditions)) + " }",
        "delay": _duration(retry.initial_interval_s),
        "backoff": {"constant": {}} if retry.backoff <= 1.0 else {"exponential": {}},
        "limit": {"attempt": {"count": retry.max_attempts}},
    }
    return {"try": [{step.id: call}], "catch": {"errors": {"with": {"type": COMMUNICATION}}, "retry": policy}}


def _condition(step: PlanStep, gates: dict[str, list[str]]) -> str | None:
    """When the step runs: its gates, not all of its needs skipped, and its own `if`."""
    tests = [
        f"(.steps[{json.dumps(switch)}].output.branch | IN({', '.join(json.dumps(b) for b in branches)}))"
        for switch, branches in gates.items()
    ]
    if step.needs:
        tests.append("(" + " or ".join(f"(.steps | has({json.dumps(need)}))" for need in step.needs) + ")")
    if step.if_:
        tests.append(f"({step.if_})")
    return " and ".join(tests) or None


def _gates(plan: Plan) -> dict[str, dict[str, list[str]]]:
    """step id → {switch id: the cases that enable it} (native switches gate the steps they name)."""
    gates: dict[str, dict[str, list[str]]] = {}
    for step in plan.root.steps:
        for case in step.cases:
            for target in filter(None, (name.strip() for name in case.then.split(","))):
                gates.setdefault(target, {}).setdefault(step.id, []).append(case.name)
    return gates


def _dependency_order(plan: Plan) -> list[PlanStep]:
    """Definition order, except that a step comes after every step it needs (and the switch that gates it)."""
    steps = {step.id: step for step in plan.root.steps}
    placed: list[PlanStep] = []
    done: set[str] = set()
    while len(placed) < len(steps):
        ready = next(step for step in steps.values() if step.id not in done and set(step.needs) <= done)
        placed.append(ready)
        done.add(ready.id)
    return placed


def to_strict(template: Any) -> Any:
    """A native template in strict mode: text with `${ }` inside becomes one jq string expression."""
    if isinstance(template, str):
        parts = split_template(template)
        if parts is None or (len(parts) == 1 and parts[0].is_expression):
            return template
        return "${ " + _jq_string(parts) + " }"
    if isinstance(template, dict):
        return {key: to_strict(value) for key, value in template.items()}
    if isinstance(template, list):
        return [to_strict(value) for value in template]
    return template


def to_jq(template: Any) -> str:
    """A native template as one jq program that builds the same value."""
    if isinstance(template, str):
        parts = split_template(template)
        if parts is None:
            return json.dumps(template)
        if len(parts) == 1 and parts[0].is_expression:
            return f"({parts[0].text})"
        return _jq_string(parts)
    if isinstance(template, dict):
        return "{" + ", ".join(f"{json.dumps(key)}: {to_jq(value)}" for key, value in template.items()) + "}"
    if isinstance(template, list):
        return "[" + ", ".join(to_jq(value) for value in template) + "]"
    return json.dumps(template)


def _jq_string(parts: list[Any]) -> str:
    return (
        '"' + "".join(f"\\(({p.text}))" if p.is_expression else json.dumps(p.text)[1:-1] for p in parts) + '"'
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _duration(seconds: float) -> dict[str, int] | str:
    if float(seconds).is_integer():
        return {"seconds": int(seconds)}
    if float(seconds * 1000).is_integer():
        return {"milliseconds": int(seconds * 1000)}
    return f"PT{seconds:g}S"


def _name(definition_id: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", definition_id.lower()).strip("-")[:63].strip("-")
    return name or "workflow"


def _semver(version: str) -> str:
    numbers = re.findall(r"\d+", version)[:3]
    return ".".join(numbers + ["0"] * (3 - len(numbers))) if numbers else "0.0.0"
