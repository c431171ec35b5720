"""The function both sides of the benchmark call."""

from rte.functions import function


@function("bench_noop")
def noop() -> None:
    return None
