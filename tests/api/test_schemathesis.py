"""Property-based checks of the whole API against its own OpenAPI document (schemathesis).

`schemathesis run` with `tests/api/schemathesis.toml` — every operation, streams and bulk actions
included; the examples, coverage, fuzzing and stateful phases (links inferred from the responses) —
against a stack of its own: its own Temporal dev server, SQLite store, worker and API, so bulk
actions by filter, deletions and key revocations cannot touch what other tests use. The stack is
seeded with the resources the document's examples name (definition `greet`, execution
`greet-3f2a9c1b7d4e` waiting for an approval, connection `crm`, schedule `orders-nightly`, …), so
generated requests reach real executions rather than stopping at 404.

No answer may be a 5xx, and every check but `positive_data_acceptance` must pass: statuses, content
types, headers and bodies as documented, invalid input refused, 405 with `Allow`, auth enforced.
Set RTE_FUZZ_SEED to explore other inputs than CI's fixed seed, RTE_FUZZ_EXAMPLES for more per operation.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from api.main import create_app
from api.models import EXAMPLE_SOURCE
from rte.config import Settings
from rte.store import Store
from rte.store.api_keys import Role
from rte.temporal import start_dev_server
from tests.api.conftest import serve
from worker.main import build_worker

CONFIG = Path(__file__).with_name("schemathesis.toml")
RUN_TIMEOUT_S = 600
WAITING = """id: orders
steps:
  - id: sign_off
    kind: approval
    with: {message: "Ship it?", timeout: 1h}
"""


@asynccontextmanager
async def fuzz_stack(data_dir: Path) -> AsyncIterator[tuple[str, str]]:
    """Temporal, a store, a worker and the API, all its own; yields the API's URL and an admin key."""
    env = await start_dev_server()
    try:
        settings = Settings(
            data_dir=data_dir,
            temporal_address=env.client.service_client.config.target_host,
            task_queue="fuzz",
        )
        store = await Store.open(settings)
        try:
            key = (await store.api_keys.create("schemathesis", Role.ADMIN)).key
            async with build_worker(env.client, store, settings):
                with serve(create_app(settings, store)) as url:
                    yield url, key
        finally:
            await store.close()
    finally:
        await env.shutdown()


async def seed(url: str, key: str) -> None:
    """The resources the OpenAPI examples name."""
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        answers = [
            await http.post("/definitions", json={"source": EXAMPLE_SOURCE}),
            await http.post("/definitions", json={"source": WAITING}),
            await http.post(
                "/definitions/orders/runs",
                json={"execution_id": "greet-3f2a9c1b7d4e", "config": {"debug": True}},
            ),
            await http.put(
                "/connections/crm",
                json={
                    "type": "bearer",
                    "config": {"base_url": "https://crm.example"},
                    "secret": {"token": "x"},
                },
            ),
            await http.post(
                "/presets", json={"definition_id": "greet", "name": "ada", "params": {"name": "Ada"}}
            ),
            await http.post(
                "/schedules", json={"id": "orders-nightly", "definition_id": "orders", "every": "1h"}
            ),
            await http.post("/webhooks", json={"definition_id": "orders", "name": "shop checkout"}),
        ]
        for answer in answers:
            assert answer.status_code in (200, 201, 202), answer.text


def summarize(report: Path) -> dict[str, Any]:
    """Requests, statuses and failed checks from schemathesis's NDJSON event report."""
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    operations: set[str] = set()
    errors: list[str] = []
    for line in report.read_text().splitlines():
        event = json.loads(line)
        name, data = next(iter(event.items()))
        if name == "ScenarioFinished":
            recorder = data["recorder"]
            if " /" in recorder["label"]:  # not the stateful phase's "Stateful tests"
                operations.add(recorder["label"])
            for interaction in recorder.get("interactions", {}).values():
                if interaction.get("response"):
                    statuses[interaction["response"]["status_code"]] += 1
            for checks in recorder.get("checks", {}).values():
                failures.update(check["name"] for check in checks if check["status"] == "failure")
        elif name in ("NonFatalError", "FatalError"):
            errors.append(json.dumps(data)[:500])
    return {
        "operations": len(operations),
        "requests": sum(statuses.values()),
        "server_errors": sum(count for status, count in statuses.items() if status >= 500),
        "statuses": dict(sorted(statuses.items())),
        "failures": dict(failures),
        "errors": errors,
    }


async def test_generated_requests_get_no_server_errors_and_match_the_documented_schemas(
    tmp_path: Path,
) -> None:
    report = tmp_path / "events.ndjson"
    async with fuzz_stack(tmp_path / "data") as (url, key):
        await seed(url, key)
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
            "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color",
            *(["--seed", os.environ["RTE_FUZZ_SEED"]] if os.environ.get("RTE_FUZZ_SEED") else []),
            *(["--max-examples", os.environ["RTE_FUZZ_EXAMPLES"]] if os.environ.get("RTE_FUZZ_EXAMPLES") else []),
            env=os.environ | {"RTE_FUZZ_KEY": key}, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
        elapsed = time.monotonic() - started
    text = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    summary = summarize(report)
    print(  # the figure for the record: run with -s to see it
        f"\nschemathesis: {summary['operations']} operations, {summary['requests']} requests, "
        f"{summary['server_errors']} 5xx, failed checks {summary['failures'] or 'none'}, {elapsed:.0f} s; "
        f"statuses {summary['statuses']}"
    )
    failed = text[text.find("FAILURES") :] if "FAILURES" in text else text[-6000:]
    assert summary["operations"] >= 65, text[-3000:]  # every operation, streams and bulk included
    assert summary["server_errors"] == 0, failed
    assert summary["failures"] == {}, failed
    assert summary["errors"] == [], summary["errors"]
    assert process.returncode == 0, failed
