"""The dev server's throttle on back-to-back work, with and without the fix `rte/temporal.py` applies.

    python -m bench.bench_dev_server [--runs 10]

The dev server runs one history shard, and each history queue reader may poll for new tasks at most
`history.*ProcessorMaxPollRPS` times a second per shard (default 20). Every activity and workflow
task passes through the transfer queue, so work that arrives faster than the token bucket refills
waits for tokens: a hand-written 10-activity chain ran ~5x slower back to back than after 1 s idle
(the bucket's burst). `DEV_SERVER_DYNAMIC_CONFIG` lifts the cap. This prints, for a server with the
default cap and one with our settings, the chain's median from idle and back to back, and the
kernel's TCP DelayedACKs per step (`nstat`; ~4 per step in the throttled regime: the loopback
connections idle between tokens, so their ACKs are delayed — a symptom, not the cause).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import time
import uuid

from temporalio.worker import Worker

import rte.temporal
from bench.handwritten import HandWrittenChain, noop_activity
from rte.temporal import start_dev_server

STEPS = 10


def delayed_acks() -> int | None:
    """The kernel's TcpExtDelayedACKs counter, or None without `nstat`."""
    if shutil.which("nstat") is None:
        return None
    out = subprocess.run(["nstat", "-az", "TcpExtDelayedACKs"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name, _, rest = line.partition(" ")
        if name == "TcpExtDelayedACKs":
            return int(rest.split()[0])
    return None


async def measure(runs: int, dynamic_config: dict[str, object]) -> tuple[float, float, float | None]:
    """(median from idle, median back to back, DelayedACKs per step back to back)."""
    saved = dict(rte.temporal.DEV_SERVER_DYNAMIC_CONFIG)
    rte.temporal.DEV_SERVER_DYNAMIC_CONFIG.clear()
    rte.temporal.DEV_SERVER_DYNAMIC_CONFIG.update(dynamic_config)
    try:
        env = await start_dev_server()
    finally:
        rte.temporal.DEV_SERVER_DYNAMIC_CONFIG.clear()
        rte.temporal.DEV_SERVER_DYNAMIC_CONFIG.update(saved)
    queue = f"throttle-{uuid.uuid4()}"

    async def chain() -> float:
        started = time.perf_counter()
        await env.client.execute_workflow(
            HandWrittenChain.run, STEPS, id=f"c-{uuid.uuid4()}", task_queue=queue
        )
        return time.perf_counter() - started

    try:
        async with Worker(
            env.client, task_queue=queue, workflows=[HandWrittenChain], activities=[noop_activity]
        ):
            for _ in range(3):
                await chain()
            idle = []
            for _ in range(runs):
                await asyncio.sleep(1.0)
                idle.append(await chain())
            await asyncio.sleep(1.0)
            acks_before = delayed_acks()
            back_to_back = [await chain() for _ in range(2 * runs)]
            acks_after = delayed_acks()
    finally:
        await env.shutdown()
    acks = None
    if acks_before is not None and acks_after is not None:
        acks = (acks_after - acks_before) / (len(back_to_back) * STEPS)
    # The first back-to-back runs still spend the burst: the settled regime is the second half.
    return statistics.median(idle), statistics.median(back_to_back[runs:]), acks


async def main(runs: int) -> None:
    ours = dict(rte.temporal.DEV_SERVER_DYNAMIC_CONFIG)
    default = {key: 20 for key in ours if key.endswith("ProcessorMaxPollRPS")}
    print(f"hand-written chain of {STEPS} activities, in-memory dev server, median of {runs} runs")
    print(f"{'server':32} {'from idle':>10} {'back to back':>13} {'DelayedACKs/step':>17}")
    for label, config in (("default (20 polls/s per shard)", default), ("rte (dev_server_flags)", ours)):
        idle, busy, acks = await measure(runs, config)
        acks_text = f"{acks:17.1f}" if acks is not None else f"{'n/a':>17}"
        print(f"{label:32} {idle * 1000:8.1f}ms {busy * 1000:11.1f}ms {acks_text}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
