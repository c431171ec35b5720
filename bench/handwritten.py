"""The baseline: what a developer would write by hand — a workflow calling a function as 10 activities."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from bench.functions import noop


@activity.defn(name="bench.noop")
async def noop_activity() -> None:
    return noop()


@workflow.defn(name="HandWrittenChain")
class HandWrittenChain:
    @workflow.run
    async def run(self, steps: int) -> int:
        for _ in range(steps):
            await workflow.execute_activity(noop_activity, start_to_close_timeout=timedelta(seconds=30))
        return steps
