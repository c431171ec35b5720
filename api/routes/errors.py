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

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from temporalio.client import Client

from api.analysis_models import (
    WINDOW,
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
from api.failure_sources import (
    FAILED_STATUSES,
    SQL_SCAN,
    collect,
    execution_failure,
    from_attempt,
    mark_recovered,
    workflow_of,
)
from api.models import Timestamp, problems
from api.routes.executions import _describe
from api.suggestion_actions import change_definitions, retry_executions, verify_connections
from rte import analysis
from rte.store import Store

router = APIRouter(tags=["errors"], responses=problems(401, 403, 404, 422, 503))

MAX_WINDOW = timedelta(days=90)

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
    since: Annotated[Timestamp | None, Query(description="Overrides `window`.")] = None,
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
    failures = [from_attempt(row) for row in rows]
    final = None
    if description.status in FAILED_STATUSES:
        final = await execution_failure(client, execution_id, description.run_id, description.close_time)
        recorded = {(f.execution_id, f.step_path) for f in failures}
        if final is not None and (final.execution_id, final.step_path) not in recorded:
            failures.append(final)
    failures = await mark_recovered(store, client, failures)
    # Suggestions weigh each fingerprint's history over the last 30 days, not only this execution.
    end = datetime.now(UTC)
    start = end - timedelta(days=30)
    history, _sources = await collect(store, client, start, end, workflow_of(description))
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
        results = await retry_executions(client, settings, pattern.executions[: body.limit])
    elif body.suggestion == "verify_connection":
        results = await verify_connections(store, key, pattern)
    else:
        results = await change_definitions(store, key, pattern, body.suggestion, body.apply)
    applied = any(r.ok and (r.new_execution_id or r.definition_version) for r in results) or (
        body.suggestion == "verify_connection" and bool(results)
    )
    return ApplyOut(fingerprint=fingerprint, suggestion=body.suggestion, applied=applied, results=results)


# Sources ----------------------------------------------------------------------------------------


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
