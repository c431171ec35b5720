"""A worker's health, as a file a container healthcheck can read (`rte worker --check`).

The worker rewrites the report every few seconds: whether its poller is still running and Temporal's
frontend answers. The check reads only the file (no connection of its own, so it is cheap and says
what the worker itself sees); a report that stopped being refreshed counts as unhealthy.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ValidationError
from temporalio.client import Client

REPORT_INTERVAL_S = 5.0
# A report older than this means the worker's event loop is stuck or the process is gone.
DEFAULT_MAX_AGE_S = 30.0


class HealthReport(BaseModel):
    at: float  # time.time() of the report
    pid: int
    task_queue: str
    ok: bool
    problem: str | None = None


def write_report(path: Path, report: HealthReport) -> None:
    """Replace the report atomically, so a reader never sees half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(report.model_dump_json())
    partial.replace(path)


def check(path: Path, max_age_s: float = DEFAULT_MAX_AGE_S) -> tuple[bool, str]:
    """(healthy, what to print) from the worker's last report."""
    try:
        report = HealthReport.model_validate_json(path.read_text())
    except FileNotFoundError:
        return False, f"no health report at {path}: the worker is not running (or not started yet)"
    except ValidationError as error:
        return False, f"unreadable health report at {path}: {error.errors()[0]['msg']}"
    age = time.time() - report.at
    if age > max_age_s:
        return (
            False,
            f"the worker's last health report is {age:.0f} s old (pid {report.pid}): it is stuck or gone",
        )
    if not report.ok:
        return False, f"unhealthy: {report.problem} (pid {report.pid}, {age:.0f} s ago)"
    return True, f"healthy: pid {report.pid} polls task queue '{report.task_queue}' ({age:.0f} s ago)"


async def report_health(client: Client, running: asyncio.Task[None], path: Path, task_queue: str) -> None:
    """Rewrite the report every REPORT_INTERVAL_S until cancelled."""
    while True:
        problem: str | None = None
        if running.done():
            problem = "the worker's poller stopped"
        else:
            try:
                if not await client.service_client.check_health(timeout=timedelta(seconds=5)):
                    problem = "Temporal's frontend is not serving"
            except Exception as error:  # noqa: BLE001 - any failure to reach Temporal is the answer
                problem = f"Temporal is unreachable: {error}"
        report = HealthReport(
            at=time.time(), pid=os.getpid(), task_queue=task_queue, ok=problem is None, problem=problem
        )
        await asyncio.to_thread(write_report, path, report)
        await asyncio.sleep(REPORT_INTERVAL_S)
