"""Running a definition: the input form (JSON Schema with UI hints) and starting a run."""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.connection_guard import refuse_connection_swap
from api.deps import OperatorKey, SettingsDep, StoreDep, TemporalClientDep, ViewerKey
from api.errors import Problem, rpc_problem
from api.models import (
    DEFINITION_ID,
    VERSION,
    InputField,
    RunConfig,
    RunInput,
    RunRequest,
    RunStarted,
    problems,
)
from api.routes.definitions import load_definition
from api.visibility import temporal_ui_url
from rte.claim_check import refuse_references
from rte.config import Settings
from rte.executions import start_execution
from rte.store import DefinitionRow, Store
from workflows.expressions import check_program
from workflows.params import json_path, validate_params
from workflows.plan import ACTIVITY_KINDS, Plan
from workflows.state import Breakpoint, ExecutionConfig

router = APIRouter(
    prefix="/definitions", tags=["runs"], responses=problems(401, 403, 404, 413, 422, 409, 503)
)

DefinitionId = Annotated[str, Path(pattern=DEFINITION_ID, max_length=200, examples=["greet"])]


@router.get("/{definition_id}/input", response_model=RunInput)
async def get_run_input(
    definition_id: DefinitionId,
    store: StoreDep,
    _: ViewerKey,
    version: Annotated[str | None, Query(pattern=VERSION, max_length=20)] = None,
) -> RunInput:
    """The run parameters' JSON Schema with UI hints (titles, descriptions, enums, defaults, formats)."""
    row = await load_definition(store, definition_id, version)
    schema = with_titles(Plan.model_validate(row.plan).input_schema)
    return RunInput(
        definition_id=row.id, version=row.version, input_schema=schema, fields=form_fields(schema)
    )


@router.post("/{definition_id}/runs", status_code=status.HTTP_202_ACCEPTED, response_model=RunStarted)
async def start_run(
    definition_id: DefinitionId,
    body: RunRequest,
    store: StoreDep,
    client: TemporalClientDep,
    settings: SettingsDep,
    key: OperatorKey,
) -> RunStarted:
    """Start a run: parameters are validated (every violation listed with its JSON path); mapping a
    declared connection to another stored one needs the admin role."""
    row = await load_definition(store, definition_id, body.version)
    params, config, connections = dict(body.params or {}), body.config, dict(body.connections or {})
    if body.preset_id:
        preset = await store.presets.get(body.preset_id)
        if preset is None:  # a 404 would say the definition (the URL) is missing
            raise Problem(
                422,
                "Invalid request",
                f"$.preset_id: no preset with id '{body.preset_id}'",
                violations=[{"path": "$.preset_id", "message": f"no preset with id '{body.preset_id}'"}],
            )
        if preset.definition_id != definition_id:
            raise Problem(
                409,
                "Preset of another definition",
                f"preset '{preset.name}' belongs to definition '{preset.definition_id}', not '{definition_id}'",
            )
        params = preset.params | params
        config = config or RunConfig.model_validate(preset.config)
        connections = preset.connections | connections
    config = config or RunConfig()
    plan = Plan.model_validate(row.plan)
    refuse_connection_swap(key, plan.connections, connections)
    params = validate_params(plan.input_schema, params)
    refuse_references(params, "$.params")
    plan = await customised_plan(store, plan, connections, config)
    _check_breakpoints(plan, config)
    if body.execution_id and await _exists(client, body.execution_id):
        raise _duplicate(body.execution_id)
    try:
        handle = await start_execution(
            client,
            plan,
            params,
            task_queue=settings.task_queue,
            step_task_queues=settings.step_task_queues(),
            trigger="manual",
            config=ExecutionConfig(
                error_mode=config.error_mode,
                max_concurrency=config.max_concurrency,
                timeout_s=config.timeout_s,
                debug=config.debug or bool(config.breakpoints),
                breakpoints=[Breakpoint(**b.model_dump()) for b in config.breakpoints],
            ),
            execution_id=body.execution_id,
            definition_version=row.version,
            payloads=store.payloads,
            offload_bytes=settings.payload_offload_bytes,
        )
    except WorkflowAlreadyStartedError:
        raise _duplicate(body.execution_id or "") from None
    return run_started(handle, row, plan, settings)


def run_started(
    handle: WorkflowHandle[Any, Any], row: DefinitionRow, plan: Plan, settings: Settings
) -> RunStarted:
    """The answer to any request that started a run (manual or webhook)."""
    return RunStarted(
        execution_id=handle.id,
        run_id=handle.result_run_id or "",
        definition_id=row.id,
        version=row.version,
        plan_hash=plan.hash,
        url=f"/executions/{handle.id}",
        temporal_ui_url=temporal_ui_url(settings, handle.id, handle.result_run_id),
    )


async def _exists(client: Client, execution_id: str) -> bool:
    """Whether any run of this id exists (Temporal alone would allow a new run once the last one closed)."""
    try:
        await client.get_workflow_handle(execution_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise rpc_problem(error, f"cannot check '{execution_id}'") from None
    return True


def _duplicate(execution_id: str) -> Problem:
    return Problem(
        409,
        "Execution exists",
        f"an execution with id '{execution_id}' already exists; choose another id, or GET /executions/{execution_id}",
    )


def _check_breakpoints(plan: Plan, config: RunConfig) -> None:
    """Initial breakpoints must name a step of the plan and carry a usable condition (422 otherwise)."""
    known = {step.path for step in plan.walk()} | {step.id for step in plan.walk()}
    violations = []
    for number, breakpoint in enumerate(config.breakpoints):
        where = f"$.config.breakpoints[{number}]"
        if breakpoint.step not in known:
            violations.append({"path": f"{where}.step", "message": f"unknown step '{breakpoint.step}'"})
        problems = check_program(breakpoint.condition) if breakpoint.condition else []
        if problems:
            violations.append({"path": f"{where}.condition", "message": problems[0].message})
    if violations:
        summary = "; ".join(f"{v['path']}: {v['message']}" for v in violations[:5])
        raise Problem(422, "Invalid breakpoints", summary, violations=violations)


async def customised_plan(store: Store, plan: Plan, connections: dict[str, str], config: RunConfig) -> Plan:
    """The plan with connection substitutions and a retry override applied; every connection must exist."""
    unknown = sorted(set(connections) - set(plan.connections))
    if unknown:
        declared = ", ".join(plan.connections) or "none"
        raise Problem(
            422,
            "Invalid request",
            f"the definition declares no connection {', '.join(repr(u) for u in unknown)} (declared: {declared})",
            violations=[{"path": f"$.connections.{name}", "message": "is not declared"} for name in unknown],
        )
    if connections or config.retry:
        data = plan.model_dump(mode="json", by_alias=True, exclude={"hash"})
        retry = config.retry.model_dump() if config.retry else None
        _rewrite_steps(data["root"], connections, retry)
        data["connections"] = sorted({connections.get(name, name) for name in plan.connections})
        plan = Plan.model_validate(data).with_hash()
    used = sorted({step.connection for step in plan.walk() if step.connection})
    missing = [name for name in used if await store.connections.get_public(name) is None]
    if missing:
        raise Problem(
            409,
            "Connection missing",
            f"the run needs connection(s) {', '.join(missing)}, which are not defined; create them with "
            "PUT /connections/{id}, or map them to existing ones with `connections`",
            missing=missing,
        )
    return plan


def _rewrite_steps(node: Any, connections: dict[str, str], retry: dict[str, Any] | None) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite_steps(item, connections, retry)
        return
    if not isinstance(node, dict):
        return
    if "kind" in node and "path" in node:  # a step
        if node.get("connection") in connections:
            node["connection"] = connections[node["connection"]]
        if retry is not None and node["kind"] in {kind.value for kind in ACTIVITY_KINDS}:
            kept = (node.get("retry") or {}).get("non_retryable", [])
            node["retry"] = retry | {"non_retryable": kept}
    for key, value in node.items():
        if key not in ("with", "metadata") and isinstance(value, dict | list):
            _rewrite_steps(value, connections, retry)


def with_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of the schema where every property has a `title` (from its name when the author gave none)."""
    result = copy.deepcopy(schema) if isinstance(schema, dict) else {}
    _add_titles(result)
    return result


def _add_titles(schema: dict[str, Any]) -> None:
    for name, child in (schema.get("properties") or {}).items():
        if isinstance(child, dict):
            child.setdefault("title", _title(name))
            _add_titles(child)
    items = schema.get("items")
    if isinstance(items, dict):
        _add_titles(items)


def _title(name: str) -> str:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").split()
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else name


def form_fields(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[InputField]:
    """The schema's properties as a flat list of form fields; nested objects give dotted names."""
    fields: list[InputField] = []
    required = set(schema.get("required") or [])
    for name, child in (schema.get("properties") or {}).items():
        if not isinstance(child, dict):
            continue
        path = (*prefix, name)
        if child.get("type") == "object" and child.get("properties"):
            fields.extend(form_fields(child, path))
            continue
        enum = child.get("enum")
        fields.append(
            InputField(
                name=".".join(path),
                path=json_path(path),
                type=declared if isinstance(declared := child.get("type"), str | list) else None,
                title=str(child.get("title") or _title(name)),
                description=child.get("description"),
                required=name in required,
                default=child.get("default"),
                enum=list(enum) if isinstance(enum, list) else None,
                format=child.get("format"),
                examples=child.get("examples") if isinstance(child.get("examples"), list) else None,
                pattern=child.get("pattern") if isinstance(child.get("pattern"), str) else None,
                **{field: _number(child.get(keyword)) for keyword, field in _NUMBER_LIMITS.items()},
                **{field: _count(child.get(keyword)) for keyword, field in _COUNT_LIMITS.items()},
            )
        )
    return fields


# The schema's limits a form can enforce, by JSON Schema keyword → InputField field.
_NUMBER_LIMITS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "multipleOf": "multiple_of",
}
_COUNT_LIMITS = {
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_items",
    "maxItems": "max_items",
}


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    # JSON Schema allows 2.0 for a count; a form wants 2.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
