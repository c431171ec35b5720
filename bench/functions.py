"""The functions both sides of the benchmark call.

Async, so both sides call them inline: the engine runs a *sync* function in a thread (it may
block), which would measure a thread hop rather than the orchestration.
"""

from rte.functions import function


@function("bench_noop")
async def noop() -> None:
    return None


@function("bench_item")
async def item(value: int) -> int:
    return value
