"""Large payloads end to end (claim check): 5 MB parameters and a 5 MB step output run through a
real Temporal dev server while the history stays small; the API and the CLI hand the full values
back; bodies over the API's limit are 413 problems. Also the execution detail's data bugs: the
critical path as it ran (never a skipped step) and payloads of a for_each that ran in slices."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.history.v1 import History
from temporalio.client import Client

from rte.claim_check import REF_KEY, canonical_json, is_reference
from rte.config import Settings
from rte.errors import EngineError
from rte.executions import outcome, start_execution
from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.conftest import Engine
from workflows.compiler import compile_source
from workflows.plan import Plan

ROOT = Path(__file__).resolve().parents[2]
FIVE_MB = 5 * 1024 * 1024
# A history that carried the values themselves would be over 5 MB; references keep it tiny.
SMALL_HISTORY = 256 * 1024


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def big_document(size: int = FIVE_MB) -> dict[str, Any]:
    rows = [{"n": index, "text": f"{index:08d}" * 120} for index in range(size // 960 + 1)]  # >= size
    return {"rows": rows}


def digest(value: Any) -> dict[str, Any]:
    """What the `measure` test function answers for a value."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "type": type(value).__name__}


def blob(size: int) -> dict[str, Any]:
    """What the `blob` test function returns."""
    line = "0123456789abcdef" * 4 + "\n"
    return {"name": "blob", "text": (line * (size // len(line) + 1))[:size]}


async def history_bytes(client: Client, execution_id: str) -> int:
    history = await client.get_workflow_handle(execution_id).fetch_history()
    return History(events=history.events).ByteSize()


BIG_PARAMS = """
id: {id}
inputs:
  type: object
  required: [doc]
  properties:
    name: {{type: string}}
    doc: {{type: object, required: [rows]}}
steps:
  - id: measure
    kind: python
    with: {{function: measure, args: {{value: "${{ .inputs.doc }}"}}}}
outputs:
  name: "${{ .inputs.name }}"
  measured: "${{ .steps.measure.output }}"
"""

BIG_OUTPUT = """
id: {id}
steps:
  - id: make
    kind: python
    with: {{function: blob, args: {{size: {size}}}}}
  - id: check
    kind: python
    needs: [make]
    with: {{function: measure, args: {{value: "${{ .steps.make.output }}"}}}}
outputs:
  made: "${{ .steps.make.output }}"
  check: "${{ .steps.check.output }}"
"""


async def define(api_server: ApiServer, text: str) -> None:
    async with api_server.client(Role.ADMIN) as admin:
        response = await admin.post("/definitions", json={"source": text})
        assert response.status_code in (200, 201), response.text


def compiled(text: str) -> Plan:
    compilation = compile_source(text, "test.yaml")
    assert compilation.ok and compilation.plan is not None, compilation.diagnostics
    return compilation.plan


async def test_five_mb_of_parameters_run_through_the_api_with_a_small_history(
    api_server: ApiServer, client: Client
) -> None:
    definition_id = new_id("bigparams")
    await define(api_server, BIG_PARAMS.format(id=definition_id))
    doc = big_document()
    body = json.dumps({"params": {"name": "ada", "doc": doc}}).encode()
    assert FIVE_MB < len(body) < api_server.settings.api_max_body_bytes
    async with api_server.client(Role.OPERATOR) as http:
        started = await http.post(
            f"/definitions/{definition_id}/runs", content=body, headers={"content-type": "application/json"}
        )
        assert started.status_code == 202, started.text
        execution_id = started.json()["execution_id"]
        result = await asyncio.wait_for(client.get_workflow_handle(execution_id).result(), 120)
        assert result == {"name": "ada", "measured": digest(doc)}  # the step saw the whole document
        assert await history_bytes(client, execution_id) < SMALL_HISTORY

        detail = (await http.get(f"/executions/{execution_id}")).json()
        assert detail["status"] == "completed"
        # The deepest useful split: only the rows are stored; `name` and the object around them stay.
        rows = detail["params"]["doc"]["rows"]
        assert detail["params"]["name"] == "ada" and is_reference(rows) and rows["bytes"] > FIVE_MB
        step = detail["steps"][0]
        assert step["input_truncated"] is True and step["input"]["args"]["value"]["rows"] == rows
        given = await http.get(step["payload_url"], params={"part": "input"})
        assert given.status_code == 200 and given.json() == {"function": "measure", "args": {"value": doc}}


async def test_a_webhook_body_of_three_mb_runs_and_the_run_can_be_rerun(
    api_server: ApiServer, client: Client
) -> None:
    definition_id = new_id("bighook")
    await define(api_server, BIG_PARAMS.format(id=definition_id))
    doc = big_document(3 * 1024 * 1024)
    async with api_server.client(Role.ADMIN) as admin:
        hook = (await admin.post("/webhooks", json={"definition_id": definition_id, "name": "big"})).json()
        sent = await admin.post(hook["url"], json={"doc": doc}, headers={"X-Webhook-Token": hook["token"]})
        assert sent.status_code == 202, sent.text
        execution_id = sent.json()["execution_id"]
        result = await asyncio.wait_for(client.get_workflow_handle(execution_id).result(), 120)
        assert result["measured"] == digest(doc)
        # A rerun starts from the recorded parameters, references included.
        again = await admin.post(f"/executions/{execution_id}/rerun")
        assert again.status_code == 202, again.text
        rerun_id = again.json()["new_execution_id"]
        rerun = await asyncio.wait_for(client.get_workflow_handle(rerun_id).result(), 120)
        assert rerun["measured"] == digest(doc)
        assert await history_bytes(client, rerun_id) < SMALL_HISTORY


async def test_five_mb_of_parameters_through_start_execution(engine: Engine) -> None:
    plan = compiled(BIG_PARAMS.format(id=new_id("bigparams")))
    doc = big_document()
    handle = await start_execution(
        engine.client, plan, {"doc": doc}, task_queue=engine.task_queue, payloads=engine.store.payloads
    )
    ok, output = await asyncio.wait_for(outcome(handle, engine.store.payloads), 120)
    assert ok, output
    assert output["measured"] == digest(doc)
    assert await history_bytes(engine.client, handle.id) < SMALL_HISTORY
    # Without a payload store there is nowhere to put them: a clear error, not Temporal's.
    with pytest.raises(EngineError, match="need the payload store"):
        await start_execution(engine.client, plan, {"doc": doc}, task_queue=engine.task_queue)


async def test_a_step_returning_five_mb_hands_it_to_the_next_step_and_to_readers(
    api_server: ApiServer, client: Client
) -> None:
    definition_id = new_id("bigout")
    await define(api_server, BIG_OUTPUT.format(id=definition_id, size=FIVE_MB))
    made = blob(FIVE_MB)
    async with api_server.client(Role.OPERATOR) as http:
        started = await http.post(f"/definitions/{definition_id}/runs", json={"params": {}})
        assert started.status_code == 202, started.text
        execution_id = started.json()["execution_id"]
        result = await asyncio.wait_for(client.get_workflow_handle(execution_id).result(), 120)
        # The workflow's output holds the reference; the next step was given the whole value.
        assert result["made"]["name"] == "blob" and is_reference(result["made"]["text"])
        assert result["check"] == digest(made)
        assert await history_bytes(client, execution_id) < SMALL_HISTORY

        detail = (await http.get(f"/executions/{execution_id}")).json()
        assert detail["output"] == {"made": made, "check": digest(made)}  # resolved for the reader
        steps = {step["id"]: step for step in detail["steps"]}
        make = steps["make"]
        assert make["output_truncated"] is True
        assert make["output"]["text"]["bytes"] == len(canonical_json(made["text"]))
        assert make["output_bytes"] > FIVE_MB
        flow = {(edge["source"], edge["target"]): edge["bytes"] for edge in detail["data_flow"]}
        assert flow[(make["path"], steps["check"]["path"])] > FIVE_MB
        full = await http.get(make["payload_url"])
        assert full.status_code == 200 and len(full.content) > FIVE_MB
        assert full.json() == made


async def test_rte_run_prints_the_resolved_output(
    client: Client, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    flow = tmp_path / "big.yaml"
    flow.write_text(BIG_OUTPUT.format(id=new_id("cli"), size=3 * 1024 * 1024))
    env = os.environ | {
        "RTE_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "RTE_TASK_QUEUE": engine.task_queue,
        "RTE_DATA_DIR": str(settings.data_dir),
        "PYTHONPATH": str(ROOT),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rte", "run", str(flow), "--output", "json", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    result = subprocess.CompletedProcess([], process.returncode, stdout.decode(), stderr.decode())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["made"] == blob(3 * 1024 * 1024)


async def test_bodies_over_the_api_limit_are_413_problems_never_500(api_server: ApiServer) -> None:
    definition_id = new_id("toolarge")
    await define(api_server, BIG_PARAMS.format(id=definition_id))
    limit = api_server.settings.api_max_body_bytes
    body = json.dumps({"params": {"doc": big_document(limit + 1000)}}).encode()
    assert len(body) > limit

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    url = f"/definitions/{definition_id}/runs"
    async with api_server.client(Role.OPERATOR) as http:
        for content in (body, chunks()):
            refused = await http.post(url, content=content, headers={"content-type": "application/json"})
            assert refused.status_code == 413, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert "limit" in refused.json()["detail"]
        listed = (await http.get("/executions", params={"definition_id": definition_id})).json()
        assert listed["items"] == []  # nothing was started


async def test_a_definition_too_large_to_run_is_a_clear_422_not_a_500(api_server: ApiServer) -> None:
    definition_id = new_id("bigplan")
    constant = "z" * 3_000_000  # the plan travels in the start event, so this cannot go by reference
    await define(
        api_server,
        f"id: {definition_id}\nsteps:\n  - id: s\n    kind: set\n    with: {{text: '{constant}'}}\n",
    )
    async with api_server.client(Role.OPERATOR) as http:
        refused = await http.post(f"/definitions/{definition_id}/runs", json={"params": {}})
    assert refused.status_code == 422, refused.text
    assert "keep large constants out of the definition" in refused.json()["detail"]


async def test_a_hand_written_reference_in_parameters_is_a_422(api_server: ApiServer) -> None:
    definition_id = new_id("forged")
    await define(api_server, BIG_PARAMS.format(id=definition_id))
    forged = {REF_KEY: "0" * 64, "bytes": 10, "kind": "object"}
    async with api_server.client(Role.OPERATOR) as http:
        refused = await http.post(
            f"/definitions/{definition_id}/runs", json={"params": {"doc": {"rows": forged}}}
        )
    assert refused.status_code == 422, refused.text
    assert refused.json()["violations"][0]["path"] == "$.params.doc.rows"


CRITICAL = """
id: {id}
inputs: {{type: object, properties: {{gate: {{type: boolean, default: false}}}}}}
steps:
  - id: start
    kind: python
    with: {{function: noop}}
  - id: gate
    kind: python
    needs: [start]
    if: "${{ .inputs.gate }}"
    with: {{function: noop}}
  - id: quick1
    kind: python
    needs: [gate, start]
    with: {{function: noop}}
  - id: quick2
    kind: python
    needs: [quick1]
    with: {{function: noop}}
  - id: slow
    kind: python
    needs: [start]
    with: {{function: slow_double, args: {{value: 1, seconds: 3}}}}
  - id: finish
    kind: python
    needs: [quick2, slow]
    with: {{function: noop}}
"""


async def test_the_critical_path_is_the_chain_that_ran_longest_and_skips_nothing_skipped(
    api_server: ApiServer, client: Client
) -> None:
    definition_id = new_id("critical")
    await define(api_server, CRITICAL.format(id=definition_id))
    async with api_server.client(Role.OPERATOR) as http:
        started = await http.post(f"/definitions/{definition_id}/runs", json={"params": {}})
        execution_id = started.json()["execution_id"]
        await asyncio.wait_for(client.get_workflow_handle(execution_id).result(), 60)
        detail = (await http.get(f"/executions/{execution_id}")).json()
    steps = {step["id"]: step for step in detail["steps"]}
    assert steps["gate"]["status"] == "skipped"
    # By the plan alone (one unit per step) the longest chain runs through the skipped gate; as it
    # ran, the 3 s step decided the duration.
    assert detail["critical_path"] == [steps[name]["path"] for name in ("start", "slow", "finish")]


SLICED = """
id: {id}
steps:
  - id: each
    kind: python
    for_each: {{items: "${{ [range(0; {count})] }}", batch_size: 50, concurrency: 8}}
    with: {{function: measure, args: {{value: "${{ .item }}"}}}}
"""


async def test_payloads_of_a_for_each_that_ran_in_child_slices(api_server: ApiServer, client: Client) -> None:
    count = 1_050  # over the 1,000 items a slice holds: two child executions
    definition_id = new_id("sliced")
    await define(api_server, SLICED.format(id=definition_id, count=count))
    async with api_server.client(Role.OPERATOR) as http:
        started = await http.post(f"/definitions/{definition_id}/runs", json={"params": {}})
        execution_id = started.json()["execution_id"]
        await asyncio.wait_for(client.get_workflow_handle(execution_id).result(), 180)
        detail = (await http.get(f"/executions/{execution_id}")).json()
        step = detail["steps"][0]
        assert step["items"]["completed"] == count
        assert step["output_truncated"] is True  # ~100 KB: the state keeps a preview only
        whole = await http.get(step["payload_url"])
        assert whole.status_code == 200, whole.text
        assert whole.json() == [digest(index) for index in range(count)]
        for index in (3, 1_020):  # one item from each slice
            one = await http.get(step["payload_url"], params={"item": index})
            assert one.status_code == 200, one.text
            assert one.json() == digest(index)
        given = await http.get(step["payload_url"], params={"item": 1_049, "part": "input"})
        assert given.json() == {"function": "measure", "args": {"value": 1_049}}
        beyond = await http.get(step["payload_url"], params={"item": count})
        assert beyond.status_code == 404


APPROVAL = """
id: {id}
steps:
  - id: sign_off
    kind: approval
    with: {{message: Attach the report}}
  - id: check
    kind: python
    needs: [sign_off]
    with: {{function: measure, args: {{value: "${{ .steps.sign_off.output.payload }}"}}}}
outputs:
  check: "${{ .steps.check.output }}"
  payload: "${{ .steps.sign_off.output.payload }}"
"""


async def test_a_large_approval_payload_reaches_the_next_step(api_server: ApiServer, client: Client) -> None:
    definition_id = new_id("bigapproval")
    await define(api_server, APPROVAL.format(id=definition_id))
    report = big_document(3 * 1024 * 1024)
    async with api_server.client(Role.OPERATOR) as http:
        started = await http.post(f"/definitions/{definition_id}/runs", json={"params": {}})
        execution_id = started.json()["execution_id"]
        for _ in range(100):
            detail = (await http.get(f"/executions/{execution_id}")).json()
            if detail["waiting_approvals"]:
                break
            await asyncio.sleep(0.2)
        decided = await http.post(
            f"/executions/{execution_id}/approve", json={"step": "sign_off", "payload": report}
        )
        assert decided.status_code == 200, decided.text
        result = await asyncio.wait_for(client.get_workflow_handle(execution_id).result(), 60)
        assert result["check"] == digest(report)
        assert await history_bytes(client, execution_id) < SMALL_HISTORY
        detail = (await http.get(f"/executions/{execution_id}")).json()
        assert detail["output"] == {"check": digest(report), "payload": report}
