"""The functions both sides of the benchmark call."""

from rte.functions import function


@function("bench_noop")
def noop() -> None:
    return None


@function("bench_item")
def item(value: int) -> int:
    return value
