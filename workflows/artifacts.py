"""What the compiler shows about a plan: statistics, a Mermaid graph and a Python-shaped preview.

Everything here reads the plan only, so the native format and Serverless Workflow get the same
artifacts. The preview is Python syntax (it parses with `ast.parse`) but it is a picture of what runs
in which order, not code that runs: jq expressions appear as `jq("…")` unless they are plain paths.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from rte.errors import ExpressionError
from workflows.durations import format_duration, parse_duration
from workflows.expressions import split_template
from workflows.graph import DEFAULT_BRANCH, Graph, Levels, critical_path, parallel_width, topological_levels
from workflows.plan import PURE_KINDS, Plan, PlanBlock, PlanStep, StepKind

INDENT = "    "
# Names the preview's helper calls use; step variables never take them.
_HELPERS = frozenset({"jq", "http", "ai", "script", "python", "sleep", "approval", "inputs", "item", "index"})
_SIMPLE_PATH = re.compile(r"\.[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_UNSAFE_IN_FSTRING = re.compile(r"[\"\\{}#!:\n\r]")


class Stats(BaseModel):
    steps: int
    levels: int = Field(description="Topological levels: the longest chain of `needs`, in steps.")
    parallel_width: int = Field(description="Most steps at one level, i.e. that may run at once.")
    critical_path: list[str] = Field(description="The chain that decides the run time (estimated).")


class Artifacts(BaseModel):
    plan_hash: str
    input_schema: dict[str, Any]
    mermaid: str
    preview: str
    stats: Stats


def build_artifacts(plan: Plan) -> Artifacts:
    graph = block_graph(plan.root)
    levels = topological_levels(graph)
    steps = {step.id: step for step in plan.root.steps}
    cost = {step_id: step_cost(step) for step_id, step in steps.items()}
    return Artifacts(
        plan_hash=plan.hash,
        input_schema=plan.input_schema,
        mermaid=mermaid(plan),
        preview=python_preview(plan, levels),
        stats=Stats(
            steps=len(plan.walk()),
            levels=len(levels.levels),
            parallel_width=parallel_width(levels.levels),
            critical_path=critical_path(graph, levels.levels, cost),
        ),
    )


def block_graph(block: PlanBlock) -> Graph:
    """A DAG block's `needs`; a sequence block is a chain in step order."""
    if block.mode == "dag":
        return Graph.build((step.id, step.needs) for step in block.steps)
    ids = [step.id for step in block.steps]
    return Graph.build((step_id, ids[index - 1 : index]) for index, step_id in enumerate(ids))


def step_cost(step: PlanStep) -> float:
    """Estimated run time for the critical path: pure steps are free, a delay takes its duration."""
    if step.kind in PURE_KINDS:
        return 0.0
    if step.kind == StepKind.DELAY:
        try:
            return parse_duration(step.with_.get("duration"))
        except ValueError:
            return 1.0  # an expression: unknown until run time
    return 1.0


def gates_of(block: PlanBlock) -> dict[str, dict[str, list[str]]]:
    """step id → {switch id: branches that enable it}, read back from the switches' cases."""
    gates: dict[str, dict[str, list[str]]] = {}
    for step in block.steps:
        for case in step.cases:
            for target in filter(None, case.then.split(",")):
                gates.setdefault(target, {}).setdefault(step.id, []).append(case.name)
    return gates


# Mermaid -------------------------------------------------------------------------------------------


def mermaid(plan: Plan) -> str:
    block = plan.root
    node = {step.id: f"n{index}" for index, step in enumerate(block.steps)}
    gates = gates_of(block) if block.mode == "dag" else {}
    lines = ["flowchart TD"]
    for step in block.steps:
        label = f"{step.id} [{step.kind.value}]"
        if step.for_each:
            label += f"<br/>for each {step.for_each.items}"
            if step.for_each.concurrency > 1:
                label += f" ×{step.for_each.concurrency}"
        label = _mermaid_text(label)
        if step.kind == StepKind.SWITCH:
            shape = f'{{"{label}"}}'
        elif step.for_each:
            shape = f'[["{label}"]]'
        else:
            shape = f'["{label}"]'
        lines.append(f"{INDENT}{node[step.id]}{shape}")
    for upstream, step in _edges(block):
        branches = gates.get(step.id, {}).get(upstream)
        arrow = f'-->|"{_mermaid_text(" / ".join(branches))}"|' if branches else "-->"
        lines.append(f"{INDENT}{node[upstream]} {arrow} {node[step.id]}")
    return "\n".join(lines) + "\n"


def _edges(block: PlanBlock) -> list[tuple[str, PlanStep]]:
    if block.mode == "dag":
        return [(upstream, step) for step in block.steps for upstream in step.needs]
    return [(before.id, after) for before, after in zip(block.steps, block.steps[1:], strict=False)]


def _mermaid_text(text: str) -> str:
    # Mermaid reads `#name;` entities inside quoted labels; quotes and angle brackets must use them.
    text = text.replace("#", "#35;").replace('"', "#quot;")
    text = text.replace("<br/>", "\0").replace("<", "#lt;").replace(">", "#gt;").replace("\0", "<br/>")
    return " ".join(text.split())


# Python preview ------------------------------------------------------------------------------------


def python_preview(plan: Plan, levels: Levels) -> str:
    steps = {step.id: step for step in plan.root.steps}
    names = _variable_names(list(steps))
    gates = gates_of(plan.root) if plan.root.mode == "dag" else {}
    title = " ".join(plan.name.split())  # a comment stays on one line
    lines = [
        f"async def {_identifier(plan.definition_id, 'workflow')}(inputs):",
        f"{INDENT}# {title}: which steps run in which order (a preview, not the code that runs)",
    ]
    for number, level in enumerate(levels.levels, 1):
        comment = f"# level {number}"
        if len(level) > 1:
            comment += f" — runs in parallel: {', '.join(level)}"
        lines.append(INDENT + comment)
        for step_id in level:
            lines.extend(_step_lines(steps[step_id], names, gates.get(step_id, {})))
    if plan.outputs is not None:
        lines.append(f"{INDENT}return {_value(plan.outputs, names)}")
    return "\n".join(lines) + "\n"


def _step_lines(step: PlanStep, names: Mapping[str, str], gates: Mapping[str, list[str]]) -> list[str]:
    conditions = [_branch_test(names[switch], branches) for switch, branches in gates.items()]
    if step.if_:
        conditions.append(_expression(step.if_, names))
    call = _call(step, names)
    if step.for_each:
        call = f"[{call} for index, item in enumerate({_expression(step.for_each.items, names)})]"
    statement = f"{names[step.id]} = {call}"
    note = _comment(step)
    if not conditions:
        return [f"{INDENT}{statement}{note}"]
    return [f"{INDENT}if {' and '.join(conditions)}:", f"{INDENT * 2}{statement}{note}"]


def _branch_test(variable: str, branches: list[str]) -> str:
    chosen = f"{variable}[{_string('branch')}]"
    if len(branches) == 1:
        return f"{chosen} == {_string(branches[0])}"
    return f"{chosen} in ({', '.join(_string(b) for b in branches)})"


def _call(step: PlanStep, names: Mapping[str, str]) -> str:
    parameters = step.with_
    if step.kind == StepKind.SET:
        return _value(parameters, names)
    if step.kind == StepKind.TRANSFORM:
        program = str(parameters.get("jq", "."))
        return f"jq({_string(program)}, input={_value(parameters.get('input'), names)})"
    if step.kind == StepKind.SWITCH:
        chosen = _string(DEFAULT_BRANCH)
        for case in reversed([case for case in step.cases if case.when is not None]):
            chosen = f"{_string(case.name)} if {_expression(case.when or 'true', names)} else {chosen}"
        return "{" + _string("branch") + ": " + chosen + "}"
    if step.kind == StepKind.DELAY:
        return f"await sleep({_value(parameters.get('duration'), names)})"
    helper = step.kind.value if step.kind.value in _HELPERS else "activity"
    return f"await {helper}({_arguments(parameters, names)})"


def _arguments(parameters: Mapping[str, Any], names: Mapping[str, str]) -> str:
    keyword_args = []
    others: dict[str, Any] = {}
    for key, value in parameters.items():
        if key.isidentifier() and not keyword.iskeyword(key):
            keyword_args.append(f"{key}={_value(value, names)}")
        else:
            others[key] = value
    if others:
        keyword_args.append(f"**{_value(others, names)}")
    return ", ".join(keyword_args)


def _comment(step: PlanStep) -> str:
    notes: list[str] = []
    if step.kind == StepKind.SWITCH:
        for case in step.cases:
            targets = ", ".join(filter(None, case.then.split(","))) or "nothing"
            notes.append(f"{case.name} → {targets}")
    if step.for_each:
        notes.append(f"for each item, {step.for_each.concurrency} at a time")
        if step.for_each.batch_size > 1:
            notes.append(f"batches of {step.for_each.batch_size}")
    if step.retry:
        notes.append(f"retry ×{step.retry.max_attempts}")
    if step.timeout_s is not None:
        notes.append(f"timeout {format_duration(step.timeout_s)}")
    if step.local:
        notes.append("local activity")
    if step.connection:
        notes.append(f"connection {step.connection}")
    if step.on_error != "fail":
        notes.append(f"on error: {step.on_error.value}")
    text = " ".join(", ".join(notes).split())  # a comment must stay on one line
    return f"  # {text}" if text else ""


def _value(template: Any, names: Mapping[str, str]) -> str:
    """A template as a Python expression: literals as literals, `${ }` as paths or jq(…) calls."""
    if isinstance(template, str):
        return _text(template, names)
    if isinstance(template, Mapping):
        items = ", ".join(f"{_string(str(key))}: {_value(value, names)}" for key, value in template.items())
        return "{" + items + "}"
    if isinstance(template, list | tuple):
        return "[" + ", ".join(_value(value, names) for value in template) + "]"
    return repr(template)  # numbers, True, False, None


def _text(value: str, names: Mapping[str, str]) -> str:
    try:
        parts = split_template(value)
    except ExpressionError:
        parts = None  # the compiler reported it; show the text as it is
    if parts is None:
        return _string(value)
    if len(parts) == 1 and parts[0].is_expression:
        return _expression(parts[0].text, names)
    pieces = [(part.is_expression, part.text) for part in parts]
    rendered = [_expression(text, names, quote="'") if is_expr else text for is_expr, text in pieces]
    if all(
        not _UNSAFE_IN_FSTRING.search(r) for (is_expr, _), r in zip(pieces, rendered, strict=True) if is_expr
    ):
        body = "".join(
            "{" + r + "}"
            if is_expr
            else json.dumps(r, ensure_ascii=False)[1:-1].replace("{", "{{").replace("}", "}}")
            for (is_expr, _), r in zip(pieces, rendered, strict=True)
        )
        return f'f"{body}"'
    return " + ".join(
        f"str({_expression(text, names)})" if is_expr else _string(text) for is_expr, text in pieces
    )


def _expression(program: str, names: Mapping[str, str], quote: str = '"') -> str:
    """A jq program as Python: JSON literals and plain paths translate, anything else is jq(…)."""
    program = program.strip()
    try:
        literal = json.loads(program, parse_constant=_reject)
    except ValueError:
        pass
    else:
        return _value(literal, names) if not isinstance(literal, str) else _string(literal)
    if _SIMPLE_PATH.fullmatch(program):
        head, *rest = program[1:].split(".")
        base: str | None = None
        if head in ("inputs", "item", "index"):
            base = head
        elif head == "steps" and len(rest) >= 2 and rest[1] == "output" and rest[0] in names:
            base, rest = names[rest[0]], rest[2:]
        if base is not None:
            return base + "".join(f"[{key!r}]" for key in rest)
    literal = repr(program) if quote == "'" else _string(program)
    return f"jq({literal})"


def _reject(name: str) -> Any:
    raise ValueError(name)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if text.isprintable() else repr(text)


def _variable_names(step_ids: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    taken: set[str] = set(_HELPERS)
    for step_id in step_ids:
        base = _identifier(step_id, "step")
        name = base if base not in taken else f"{base}_"
        suffix = 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        names[step_id] = name
    return names


def _identifier(text: str, prefix: str) -> str:
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit():
        name = f"{prefix}_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name
