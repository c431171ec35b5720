"""Error analysis: recent failures, patterns across executions, suggestions, and applying them.

Failures come from two sources, merged:
- step attempts the worker recorded in `step_metrics` (every failed attempt of an I/O step, with its
  redacted message, fingerprint, body excerpt or traceback, connection and host);
- failed, timed-out, cancelled and terminated executions in Temporal visibility, whose final failure
  names the step (`ApplicationError` details): this is how failures that never reach an activity —
  expressions and validation in pure steps, activity timeouts enforced by Temporal — are seen. A
  failure already recorded as a step attempt of the same execution and step is not counted twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Path, Query, Response
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api import visibility
from api.analysis_models import (
    WINDOW,
    ActionResult,
    ApplyIn,
    ApplyOut,
    ExecutionErrors,
    FailureOut,
    FailurePage,
    PatternDetail,
    PatternOut,
    PatternPage,
    SuggestionOut,
    TrendOut,
    TrendPoint,
)
from api.deps import OperatorKey, SettingsDep, StoreDep, TemporalClientDep, ViewerKey
from api.errors import Problem
from api.models import SourceIn, VerifyIn, problems
from api.routes.connections import verify_connection
from api.routes.definitions import _save as save_definition
from api.routes.executions import _describe, _rerun, _start_input
from rte import analysis
from rte import temporal as sa
from rte.config import Settings
from rte.errors import NON_RETRYABLE_CATEGORIES, EngineError
from rte.store import Store
from rte.store.api_keys import ApiKeyInfo, Role
from rte.store.errors import FailedAttempt
from workflows.durations import parse_duration
from workflows.plan import ACTIVITY_KINDS

router = APIRouter(tags=["errors"], responses=problems(401, 403, 404, 422, 503))

MAX_WINDOW = timedelta(days=90)
EXECUTION_SCAN = 300  # failed executions read from Temporal per request
SQL_SCAN = 5000
READ_CONCURRENCY = 8
RPC_TIMEOUT = timedelta(seconds=10)
CLOSED_FAILED = ("Failed", "TimedOut", "Canceled", "Terminated")
FAILED_STATUSES = {
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT,
    WorkflowExecutionStatus.CANCELED,
    WorkflowExecutionStatus.TERMINATED,
}
# A closed execution never changes: its final failure is read once per process.
_EXECUTION_CACHE: dict[str, analysis.Failure | None] = {}
_CACHE_MAX = 20_000

WindowQuery = Annotated[str, Query(pattern=WINDOW, description="How far back: e.g. 30m, 24h, 7d (≤ 90d).")]
Fingerprint = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", examples=["3f2a9c1b7d4e5f60"])]
Workflow = Annotated[str | None, Query(max_length=200, description="A definition id.")]
Category = Annotated[str | None, Query(max_length=50, examples=["rate_limit"])]
Step = Annotated[str | None, Query(max_length=500, description="A step path, e.g. orders/fetch.")]


@router.get("/errors", response_model=FailurePage)
async def list_failures(
    store: StoreDep,
    client: TemporalClientDep,
    _: ViewerKey,
    window: WindowQuery = "24h",
    since: Annotated[datetime | None, Query(description="Overrides `window`.")] = None,
    workflow: Workflow = None,
    category: Category = None,
    step: Step = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FailurePage:
    """Recent failures, newest first, each with its category, redacted excerpt and suggestions."""
    start, end = _window(window, since)
    failures, _sources = await collect(store, client, start, end, workflow, category, step)
    patterns = {p.fingerprint: p for p in analysis.group(failures, start, end)}
    items = [
        FailureOut.of(failure, _suggestions(patterns[failure.fingerprint])) for failure in failures[:limit]
    ]
    return FailurePage(since=start, until=end, items=items)


@router.get("/errors/patterns", response_model=PatternPage)
async def list_patterns(
    store: StoreDep,
    client: TemporalClientDep,
    _: ViewerKey,
    window: WindowQuery = "24h",
    workflow: Workflow = None,
    category: Category = None,
    step: Step = None,
    min_count: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    sort: Literal["count", "last_seen", "first_seen", "trend"] = "count",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PatternPage:
    """Failures grouped by fingerprint: counts, first/last seen, affected runs, trend, suggestions."""
    start, end = _window(window, None)
    failures, sources = await collect(store, client, start, end, workflow, category, step)
    patterns = [p for p in analysis.group(failures, start, end) if p.count >= min_count]
    order = {"new": 0, "rising": 1, "steady": 2, "falling": 3}
    if sort == "last_seen":
        patterns.sort(key=lambda p: p.last_seen, reverse=True)
    elif sort == "first_seen":
        patterns.sort(key=lambda p: p.first_seen)
    elif sort == "trend":
        patterns.sort(key=lambda p: (order[p.trend.direction], -p.count))
    return PatternPage(
        since=start,
        until=end,
        patterns=[_pattern_out(p) for p in patterns[:limit]],
        failures_scanned=len(failures),
        sources=sources,
    )


@router.get("/errors/patterns/{fingerprint}", response_model=PatternDetail)
async def get_pattern(
    fingerprint: Fingerprint,
    store: StoreDep,
    client: TemporalClientDep,
    _: ViewerKey,
    window: WindowQuery = "7d",
    workflow: Workflow = None,
    samples: Annotated[int, Query(ge=1, le=100)] = 10,
) -> PatternDetail:
    """One pattern: samples with redacted excerpts, affected executions, trend and suggestions."""
    start, end = _window(window, None)
    pattern = await _find_pattern(store, client, fingerprint, start, end, workflow)
    suggestions = _suggestions(pattern)
    return PatternDetail(
        **_pattern_out(pattern).model_dump(),
        samples=[FailureOut.of(f, suggestions) for f in pattern.failures[:samples]],
    )


@router.get("/executions/{execution_id}/errors", response_model=ExecutionErrors)
async def execution_failures(
    execution_id: Annotated[str, Path(min_length=1, max_length=1000)],
    store: StoreDep,
    client: TemporalClientDep,
    _: ViewerKey,
) -> ExecutionErrors:
    """Every failure of one execution (each attempt, and its final failure) with suggestions."""
    description = await _describe(client, execution_id)
    rows = await store.errors.failures(execution_id=execution_id, limit=SQL_SCAN)
    failures = [_from_attempt(row) for row in rows]
    final = None
    if description.status in FAILED_STATUSES:
        final = await _execution_failure(client, execution_id, description.run_id, description.close_time)
        recorded = {(f.execution_id, f.step_path) for f in failures}
        if final is not None and (final.execution_id, final.step_path) not in recorded:
            failures.append(final)
    failures = await _mark_recovered(store, client, failures)
    # Suggestions weigh each fingerprint's history over the last 30 days, not only this execution.
    end = datetime.now(UTC)
    start = end - timedelta(days=30)
    history, _sources = await collect(store, client, start, end, _workflow_of(description))
    # This execution's own failures are usually part of that history; older ones may not be.
    patterns = {p.fingerprint: p for p in analysis.group(failures, start, end)}
    patterns |= {p.fingerprint: p for p in analysis.group(history, start, end)}
    ordered = sorted(failures, key=lambda f: f.at)
    out = [FailureOut.of(f, _suggestions(patterns[f.fingerprint])) for f in ordered]
    # The final failure names the pattern, unless its attempt was recorded (then the last attempt does).
    ending = (
        final if final is not None and final.fingerprint in patterns else (ordered[-1] if ordered else None)
    )
    suggestions = []
    if ending is not None and description.status in FAILED_STATUSES:
        suggestions = [SuggestionOut.of(s) for s in _suggestions(patterns[ending.fingerprint])]
    return ExecutionErrors(execution_id=execution_id, failures=out, suggestions=suggestions)


@router.post("/errors/patterns/{fingerprint}/apply", response_model=ApplyOut)
async def apply_suggestion(
    fingerprint: Fingerprint,
    body: ApplyIn,
    store: StoreDep,
    client: TemporalClientDep,
    settings: SettingsDep,
    key: OperatorKey,
) -> ApplyOut:
    """Perform a suggestion for every execution, connection or step the pattern affects."""
    since, until = _window(body.window, None)
    pattern = await _find_pattern(store, client, fingerprint, since, until, None)
    offered = {s.id for s in _suggestions(pattern)}
    if body.suggestion not in offered:
        raise Problem(
            409,
            "Suggestion not offered",
            f"'{body.suggestion}' is not a suggestion for this {pattern.category} pattern "
            f"(offered: {', '.join(sorted(offered))})",
        )
    if body.suggestion == "retry":
        results = await _retry(client, settings, pattern.executions[: body.limit])
    elif body.suggestion == "verify_connection":
        results = await _verify(store, key, pattern)
    else:
        results = await _change_definitions(store, key, pattern, body.suggestion, body.apply)
    applied = any(r.ok and (r.new_execution_id or r.definition_version) for r in results) or (
        body.suggestion == "verify_connection" and bool(results)
    )
    return ApplyOut(fingerprint=fingerprint, suggestion=body.suggestion, applied=applied, results=results)


# Sources ----------------------------------------------------------------------------------------


async def collect(
    store: Store,
    client: Client,
    since: datetime,
    until: datetime,
    workflow: str | None = None,
    category: str | None = None,
    step: str | None = None,
) -> tuple[list[analysis.Failure], dict[str, int]]:
    """Failures in [since, until) from both sources, newest first, with `recovered` set."""
    rows = await store.errors.failures(
        since=since, until=until, definition_id=workflow, category=category, step_path=step, limit=SQL_SCAN
    )
    attempts = [_from_attempt(row) for row in rows]
    executions = await _failed_executions(client, since, until, workflow)
    kept = []
    for failure in executions:
        if (category and failure.category != category) or (step and failure.step_path != step):
            continue
        if failure.kind in ACTIVITY_KINDS and await store.errors.failures(
            execution_id=failure.execution_id, step_path=failure.step_path, limit=1
        ):
            continue  # its attempts are already counted
        kept.append(failure)
    failures = await _mark_recovered(store, client, attempts + kept)
    failures.sort(key=lambda f: f.at, reverse=True)
    return failures, {"step_attempt": len(attempts), "execution": len(kept)}


def _workflow_of(description: Any) -> str | None:
    return description.typed_search_attributes.get(sa.DEFINITION_ID)


def _from_attempt(row: FailedAttempt) -> analysis.Failure:
    category = row.error_category or "internal"
    message = row.error_message or f"attempt {row.attempt} failed [{category}]"
    target = row.connection_id or row.host
    return analysis.Failure(
        at=row.started_at,
        execution_id=row.execution_id,
        run_id=row.run_id,
        definition_id=row.definition_id,
        step_path=row.step_path,
        kind=row.kind,
        category=category,
        message=message,
        # Rows written before migration 0005 have no fingerprint: compute it the same way.
        fingerprint=row.error_fingerprint or analysis.fingerprint(row.kind, category, target, message),
        retryable=(
            row.error_retryable
            if row.error_retryable is not None
            else category not in NON_RETRYABLE_CATEGORIES
        ),
        attempt=row.attempt,
        item_index=row.item_index,
        http_status=row.http_status,
        connection_id=row.connection_id,
        host=row.host,
        details=row.error_details,
    )


async def _failed_executions(
    client: Client, since: datetime, until: datetime, workflow: str | None
) -> list[analysis.Failure]:
    clauses = [
        f"WorkflowType = {visibility.literal(sa.WORKFLOW_TYPE)}",
        f"ExecutionStatus IN ({', '.join(visibility.literal(s) for s in CLOSED_FAILED)})",
        f"CloseTime >= {_ts(since)}",
        f"CloseTime < {_ts(until)}",
        # A for_each slice's failure reaches its parent, which is counted instead.
        f"({sa.TRIGGER_TYPE.name} IS NULL OR {sa.TRIGGER_TYPE.name} != 'child')",
    ]
    if workflow:
        clauses.append(f"{sa.DEFINITION_ID.name} = {visibility.literal(workflow)}")
    infos = [info async for info in visibility.iterate(client, " AND ".join(clauses), EXECUTION_SCAN)]
    slots = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(info: Any) -> analysis.Failure | None:
        async with slots:
            closed = info.close_time.ToDatetime(tzinfo=UTC) if info.HasField("close_time") else until
            return await _execution_failure(
                client, info.execution.workflow_id, info.execution.run_id, closed, info
            )

    found = await asyncio.gather(*(one(info) for info in infos))
    return [failure for failure in found if failure is not None]


async def _execution_failure(
    client: Client, execution_id: str, run_id: str, closed: datetime | None, info: Any = None
) -> analysis.Failure | None:
    """The final failure of a closed execution, read from its last history event (cached)."""
    if run_id in _EXECUTION_CACHE:
        return _EXECUTION_CACHE[run_id]
    request = GetWorkflowExecutionHistoryReverseRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=execution_id, run_id=run_id),
        maximum_page_size=1,
    )
    try:
        response = await client.workflow_service.get_workflow_execution_history_reverse(
            request, timeout=RPC_TIMEOUT
        )
        run_input = await _start_input(client, execution_id, run_id)
    except (RPCError, Problem):
        return None  # deleted meanwhile, or Temporal is busy: the next request tries again
    if not response.history.events:
        return None
    event = response.history.events[0]
    error = await _final_error(client, event)
    if error is None:
        return None
    step_path = str(error.get("step_path") or "")
    plan_step = next((s for s in run_input.plan.walk() if s.path == step_path), None)
    kind = plan_step.kind.value if plan_step else "workflow"
    details = error.get("details") if isinstance(error.get("details"), dict) else None
    url = details.get("url") if details else None
    host = analysis.host_of(url) if isinstance(url, str) else None
    connection = plan_step.connection if plan_step else None
    category, message = str(error.get("category") or "internal"), str(error.get("message") or "")
    at = closed or datetime.now(UTC)
    failure = analysis.Failure(
        at=at,
        execution_id=execution_id,
        run_id=run_id,
        definition_id=run_input.plan.definition_id,
        step_path=step_path,
        kind=kind,
        category=category,
        message=message[: analysis.MAX_MESSAGE],
        fingerprint=analysis.fingerprint(kind, category, connection or host, message),
        retryable=bool(error.get("retryable", category not in NON_RETRYABLE_CATEGORIES)),
        attempt=int(error.get("attempts") or 1),
        item_index=error.get("item_index"),
        http_status=details.get("status") if details and isinstance(details.get("status"), int) else None,
        connection_id=connection,
        host=host,
        details=analysis.bounded_details(details),
        source="execution",
    )
    if len(_EXECUTION_CACHE) >= _CACHE_MAX:
        _EXECUTION_CACHE.clear()
    _EXECUTION_CACHE[run_id] = failure
    return failure


async def _final_error(client: Client, event: Any) -> dict[str, Any] | None:
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        cause = await client.data_converter.decode_failure(
            event.workflow_execution_failed_event_attributes.failure
        )
        if isinstance(cause, ApplicationError):
            details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
            # The interpreter's details are the step's ErrorInfo; its message is the step's own.
            return {"category": cause.type or "internal", "message": cause.message} | details
        return {"category": "internal", "message": str(cause)}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return {"category": "timeout", "message": "the execution ran past its timeout", "retryable": True}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        return {"category": "cancelled", "message": "the execution was cancelled", "retryable": False}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason
        return {
            "category": "cancelled",
            "message": f"the execution was terminated: {reason}",
            "retryable": False,
        }
    return None


async def _mark_recovered(
    store: Store, client: Client, failures: Sequence[analysis.Failure]
) -> list[analysis.Failure]:
    """Recovered = the same workflow step succeeded later (a retry attempt or a later execution).

    Step attempts answer for I/O steps; pure steps record no attempts, so for them a later completed
    execution of the same workflow counts (an execution completes only when its failing step did not
    fail again).
    """
    history = await store.errors.successes(
        ((f.definition_id, f.step_path) for f in failures), (f.execution_id for f in failures)
    )
    later = history.first_attempt
    pure = {f.definition_id for f in failures if f.kind not in ACTIVITY_KINDS and f.definition_id}
    for definition_id in pure:
        latest = await _last_completed(client, definition_id)
        if latest is None:
            continue
        for path in {
            f.step_path for f in failures if f.definition_id == definition_id and f.kind not in ACTIVITY_KINDS
        }:
            later[(definition_id, path)] = max(latest, later.get((definition_id, path), latest))
    return analysis.mark_recovered(failures, later, history.same_execution)


async def _last_completed(client: Client, definition_id: str) -> datetime | None:
    query = (
        f"WorkflowType = {visibility.literal(sa.WORKFLOW_TYPE)} AND ExecutionStatus = 'Completed' "
        f"AND {sa.DEFINITION_ID.name} = {visibility.literal(definition_id)}"
    )
    latest = None
    async for info in visibility.iterate(client, query, 200):
        if info.HasField("start_time"):
            start = info.start_time.ToDatetime(tzinfo=UTC)
            latest = start if latest is None or start > latest else latest
    return latest


# Patterns and suggestions -----------------------------------------------------------------------


async def _find_pattern(
    store: Store, client: Client, fingerprint: str, since: datetime, until: datetime, workflow: str | None
) -> analysis.Pattern:
    failures, _sources = await collect(store, client, since, until, workflow)
    for pattern in analysis.group([f for f in failures if f.fingerprint == fingerprint], since, until):
        return pattern
    raise Problem(
        404, "Not found", f"no failure with fingerprint '{fingerprint}' since {since:%Y-%m-%d %H:%M} UTC"
    )


def _suggestions(pattern: analysis.Pattern) -> list[analysis.Suggestion]:
    return analysis.suggest(pattern.category, pattern.retryable, pattern.recovered, pattern.count)


def _pattern_out(pattern: analysis.Pattern) -> PatternOut:
    return PatternOut(
        fingerprint=pattern.fingerprint,
        kind=pattern.kind,
        category=pattern.category,
        target=pattern.target,
        message=pattern.message,
        retryable=pattern.retryable,
        count=pattern.count,
        first_seen=pattern.first_seen,
        last_seen=pattern.last_seen,
        workflows=pattern.workflows,
        steps=pattern.steps,
        executions=pattern.executions[:100],
        execution_count=len(pattern.executions),
        recovered=pattern.recovered,
        trend=TrendOut(
            bucket=pattern.trend.bucket,
            direction=pattern.trend.direction,
            counts=[TrendPoint(start=start, count=count) for start, count in pattern.trend.counts],
        ),
        suggestions=[SuggestionOut.of(s) for s in _suggestions(pattern)],
    )


def _window(window: str, since: datetime | None) -> tuple[datetime, datetime]:
    until = datetime.now(UTC)
    if since is not None:
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        return max(since, until - MAX_WINDOW), until
    amount, unit = int(window[:-1]), window[-1]
    size = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]
    return until - min(size, MAX_WINDOW), until


def _ts(value: datetime) -> str:
    return visibility.literal(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


# Applying ---------------------------------------------------------------------------------------


async def _retry(client: Client, settings: Settings, execution_ids: Sequence[str]) -> list[ActionResult]:
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


async def _verify(store: Store, key: ApiKeyInfo, pattern: analysis.Pattern) -> list[ActionResult]:
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


async def _change_definitions(
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
