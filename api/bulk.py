"""Bulk actions: resolve the targets (ids or a visibility filter) and run one action per execution,
a few at a time, answering for each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from api import visibility
from api.errors import Problem
from api.models import ActionOut, BulkFilter, BulkItemResult, BulkResult

BULK_CONCURRENCY = 8


async def bulk_targets(
    client: Client, ids: list[str] | None, filter_: BulkFilter | None, limit: int
) -> list[str]:
    """The execution ids a bulk request names, deduplicated in order."""
    if (ids is None) == (filter_ is None):
        raise Problem(
            422,
            "Invalid request",
            "give either `ids` or `filter`, not both and not neither",
            violations=[{"path": "$", "message": "exactly one of ids and filter is required"}],
        )
    if ids is not None:
        return list(dict.fromkeys(ids))
    assert filter_ is not None
    query = visibility.build_query(filter_)
    return [info.execution.workflow_id async for info in visibility.iterate(client, query, limit)]


async def run_bulk(
    action_name: str, ids: list[str], act: Callable[[str], Awaitable[ActionOut]], ok_status: int = 200
) -> BulkResult:
    slots = asyncio.Semaphore(BULK_CONCURRENCY)

    async def one(execution_id: str) -> BulkItemResult:
        async with slots:
            try:
                done = await act(execution_id)
            except Problem as problem:
                return BulkItemResult(
                    execution_id=execution_id, ok=False, status=problem.status, message=problem.detail
                )
            return BulkItemResult(
                execution_id=execution_id,
                ok=True,
                status=ok_status,
                message=done.message,
                new_execution_id=done.new_execution_id,
            )

    results = await asyncio.gather(*(one(execution_id) for execution_id in ids))
    succeeded = sum(1 for result in results if result.ok)
    return BulkResult(
        action=action_name,
        matched=len(ids),
        succeeded=succeeded,
        failed=len(ids) - succeeded,
        results=results,
    )
