"""Applying a recovery suggestion: retry executions, verify connections, change definitions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import yaml
from fastapi import Response
from temporalio.client import Client

from api import visibility
from api.analysis_models import (
    ActionResult,
)
from api.errors import Problem
from api.failure_sources import FAILED_STATUSES, READ_CONCURRENCY
from api.models import SourceIn, VerifyIn
from api.routes.connections import verify_connection
from api.routes.definitions import _save as save_definition
from api.routes.executions import _describe, _rerun
from rte import analysis
from rte.config import Settings
from rte.errors import EngineError
from rte.store import Store
from rte.store.api_keys import ApiKeyInfo, Role
from workflows.durations import parse_duration


async def retry_executions(
    client: Client, settings: Settings, execution_ids: Sequence[str]
) -> list[ActionResult]:
    """Start each affected execution that is still failed again, with the same plan and parameters."""
    try:  # the recovery module's retry, when it is installed
        from rte.recovery import RecoveryError, retry_from_scratch
    except ImportError:
        retry_from_scratch = None
        RecoveryError = EngineError  # noqa: N806 - stands in for the missing class

    async def one(execution_id: str) -> ActionResult:
        try:
            description = await _describe(client, execution_id)
            if description.status not in FAILED_STATUSES:
                state = visibility.status_name(description.status)
                return ActionResult(target=execution_id, ok=False, message=f"not retried: it is {state}")
            if retry_from_scratch is not None:
                new_id = await retry_from_scratch(
                    client, execution_id, task_queue=description.task_queue or settings.task_queue
                )
            else:
                new_id = (await _rerun(client, settings, execution_id)).new_execution_id
        except Problem as problem:
            return ActionResult(target=execution_id, ok=False, message=problem.detail)
        except (EngineError, RecoveryError) as error:
            return ActionResult(target=execution_id, ok=False, message=getattr(error, "message", str(error)))
        return ActionResult(
            target=execution_id, ok=True, message=f"started again as '{new_id}'", new_execution_id=new_id
        )

    slots = asyncio.Semaphore(READ_CONCURRENCY)

    async def bounded(execution_id: str) -> ActionResult:
        async with slots:
            return await one(execution_id)

    return list(await asyncio.gather(*(bounded(e) for e in dict.fromkeys(execution_ids))))


async def verify_connections(store: Store, key: ApiKeyInfo, pattern: analysis.Pattern) -> list[ActionResult]:
    connections = sorted({f.connection_id for f in pattern.failures if f.connection_id})
    if not connections:
        hosts = ", ".join(sorted({f.host for f in pattern.failures if f.host})) or "its service"
        return [
            ActionResult(
                target=hosts,
                ok=False,
                message="the failing steps use no connection: their credentials are in the definition",
            )
        ]
    results = []
    for connection_id in connections:
        try:
            answer = await verify_connection(connection_id, store, key, VerifyIn())
        except Problem as problem:
            results.append(ActionResult(target=connection_id, ok=False, message=problem.detail))
            continue
        results.append(ActionResult(target=connection_id, ok=answer.ok, message=answer.message))
    return results


async def change_definitions(
    store: Store, key: ApiKeyInfo, pattern: analysis.Pattern, action: str, apply: bool
) -> list[ActionResult]:
    results = []
    for definition_id, step_path in sorted({(f.definition_id, f.step_path) for f in pattern.failures}):
        target = f"{definition_id}:{step_path}"
        row = await store.definitions.get(definition_id)
        if row is None:
            results.append(
                ActionResult(target=target, ok=False, message="the definition is not saved in the store")
            )
            continue
        if row.format != "native":
            results.append(
                ActionResult(
                    target=target, ok=False, message="changes are computed for native definitions only"
                )
            )
            continue
        document = yaml.safe_load(row.source)
        patch, why = definition_patch(document, row.plan, step_path, action)
        if not patch:
            results.append(ActionResult(target=target, ok=False, message=why))
            continue
        if not apply:
            results.append(
                ActionResult(
                    target=target, ok=True, message=f"{why}; send apply: true to save it", patch=patch
                )
            )
            continue
        if not key.role.allows(Role.ADMIN):
            results.append(
                ActionResult(
                    target=target,
                    ok=False,
                    patch=patch,
                    message=f"saving a definition needs the admin role; {why}",
                )
            )
            continue
        for operation in patch:
            _apply_operation(document, operation)
        as_json = row.source.lstrip().startswith("{")
        source = json.dumps(document, indent=2) if as_json else yaml.safe_dump(document, sort_keys=False)
        filename = f"{definition_id}.json" if as_json else f"{definition_id}.yaml"
        try:
            saved = await save_definition(
                store, SourceIn(source=source, filename=filename), Response(), definition_id
            )
        except Problem as problem:
            results.append(ActionResult(target=target, ok=False, patch=patch, message=problem.detail))
            continue
        version = saved.definition.version
        results.append(
            ActionResult(
                target=target,
                ok=True,
                patch=patch,
                definition_version=version,
                message=f"{why}; saved as version {version} (version {row.version} is kept)",
            )
        )
    return results


def definition_patch(
    document: Any, plan: dict[str, Any], step_path: str, action: str
) -> tuple[list[dict[str, Any]], str]:
    """JSON-Patch-like operations on a native definition (each with the value it replaces) and why."""
    steps = document.get("steps") if isinstance(document, dict) else None
    step_id = step_path.rsplit("/", 1)[-1]
    index = next(
        (i for i, s in enumerate(steps or []) if isinstance(s, dict) and s.get("id") == step_id), None
    )
    if steps is None or index is None:
        return [], f"step '{step_id}' is not a top-level step of the definition"
    step = steps[index]
    base = f"/steps/{index}"
    if action == "raise_timeout":
        operations = []
        with_ = step.get("with") if isinstance(step.get("with"), dict) else {}
        request_timeout = with_.get("timeout_s")
        planned = next(
            (s.get("timeout_s") for s in plan.get("root", {}).get("steps", []) if s.get("id") == step_id),
            None,
        )
        current = parse_duration(step["timeout"]) if step.get("timeout") is not None else planned
        if isinstance(request_timeout, int | float) and not isinstance(request_timeout, bool):
            new_request = round(request_timeout * 2, 3)
            operations.append(
                {
                    "op": "replace",
                    "path": f"{base}/with/timeout_s",
                    "value": new_request,
                    "old": request_timeout,
                }
            )
            if current is not None and current < new_request:
                operations.append(_set(step, "timeout", base, f"{new_request:g}s"))
            return operations, f"double the request timeout of '{step_id}' to {new_request:g} s"
        new = (current or 30.0) * 2
        return [_set(step, "timeout", base, f"{new:g}s")], f"double the timeout of '{step_id}' to {new:g} s"
    if action == "lower_concurrency":
        loop = step.get("for_each")
        if isinstance(loop, dict):
            current = int(loop.get("concurrency", 4))
            if current <= 1:
                return [], f"'{step_id}' already runs one item at a time"
            new = max(1, current // 2)
            operation = {
                "op": "replace" if "concurrency" in loop else "add",
                "path": f"{base}/for_each/concurrency",
                "value": new,
                "old": loop.get("concurrency"),
            }
            return [operation], f"halve the for_each concurrency of '{step_id}' to {new}"
        current = int(document.get("max_concurrency", 16))
        if current <= 1:
            return [], "the workflow already runs one step at a time"
        new = max(1, current // 2)
        operation = {
            "op": "replace" if "max_concurrency" in document else "add",
            "path": "/max_concurrency",
            "value": new,
            "old": document.get("max_concurrency"),
        }
        return [operation], f"halve the workflow's max_concurrency to {new}"
    return [], f"'{action}' does not change the definition"


def _set(step: dict[str, Any], key: str, base: str, value: Any) -> dict[str, Any]:
    return {
        "op": "replace" if key in step else "add",
        "path": f"{base}/{key}",
        "value": value,
        "old": step.get(key),
    }


def _apply_operation(document: Any, operation: dict[str, Any]) -> None:
    *parents, last = operation["path"].strip("/").split("/")
    target = document
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    target[last] = operation["value"]
