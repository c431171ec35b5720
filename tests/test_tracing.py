"""Tracing: one run started through the API gives one trace, from the request to the step's HTTP call.

The API, its Temporal client and a worker are set up with tracing on (an in-memory exporter instead
of OTLP), on a task queue of their own so no untraced worker takes the run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client

from api.main import create_app
from rte import telemetry
from rte.config import Settings
from rte.store import Store
from rte.store.api_keys import Role
from rte.temporal import connect
from tests.api.conftest import ApiServer, serve
from tests.support.http_server import Reply, TestServer
from worker.main import build_worker


@dataclass
class Traced:
    api: ApiServer
    client: Client
    spans: InMemorySpanExporter


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    assert telemetry.enable_tracing(spans) is not None
    try:
        yield spans
    finally:
        telemetry.disable_tracing()


@pytest.fixture
async def traced(
    exporter: InMemorySpanExporter, client: Client, settings: Settings, store: Store
) -> AsyncIterator[Traced]:
    traced_settings = settings.model_copy(
        update={
            "temporal_address": client.service_client.config.target_host,
            "task_queue": f"traced-{uuid.uuid4()}",
        }
    )
    keys = {role: (await store.api_keys.create(f"tracing {role.value}", role)).key for role in Role}
    traced_client = await connect(traced_settings)  # with the tracing interceptor: tracing is on
    with serve(create_app(traced_settings)) as url:
        async with build_worker(traced_client, store, traced_settings):
            yield Traced(ApiServer(url=url, settings=traced_settings, keys=keys), traced_client, exporter)


def chain(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The names of a span's ancestors, nearest first."""
    names: list[str] = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def wait_for_spans(spans: InMemorySpanExporter, *names: str) -> list[ReadableSpan]:
    deadline = time.monotonic() + 30
    while True:
        finished = list(spans.get_finished_spans())
        if all(any(s.name == name for s in finished) for name in names) or time.monotonic() > deadline:
            return finished
        await asyncio.sleep(0.1)


async def test_a_run_started_through_the_api_is_one_trace_down_to_the_http_call(
    traced: Traced, http_server: TestServer
) -> None:
    http_server.route("GET", "/flaky", Reply(503, {"e": 1}), Reply(200, {"ok": True}))
    definition_id = f"traced-{uuid.uuid4().hex[:8]}"
    source = f"""
id: {definition_id}
steps:
  - id: call
    kind: http
    with: {{url: "{http_server.url}/flaky"}}
    retry: {{max_attempts: 2, initial_interval: 100ms}}
outputs: "${{ .steps.call.output }}"
"""
    async with traced.api.client(Role.ADMIN) as admin:
        saved = await admin.post("/definitions", json={"source": source})
        assert saved.status_code in (200, 201), saved.text
        response = await admin.post(f"/definitions/{definition_id}/runs", json={})
    assert response.status_code == 202, response.text
    execution_id = response.json()["execution_id"]
    assert await traced.client.get_workflow_handle(execution_id).result() == {"ok": True}

    finished = await wait_for_spans(
        traced.spans, "POST /definitions/{definition_id}/runs", "RunActivity:rte.http"
    )
    route = "POST /definitions/{definition_id}/runs"
    request = next(s for s in finished if s.kind == SpanKind.SERVER and s.name == route)
    trace_id = request.context.trace_id
    run = [s for s in finished if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in run}
    tree = {s.name: chain(s, by_id) for s in run}

    # The request → workflow start → the workflow and its activity starts (Temporal's interceptor
    # parents both to the start it carried in the headers) → one activity span per attempt.
    assert tree["StartWorkflow:RunPlan"][0] == route, tree
    assert tree["RunWorkflow:RunPlan"][0] == "StartWorkflow:RunPlan", tree
    assert tree["CompleteWorkflow:RunPlan"][0] == "StartWorkflow:RunPlan", tree
    start_activity = "StartActivity:rte.http"
    assert tree[start_activity][0] == "StartWorkflow:RunPlan", tree

    # One activity span per attempt, each carrying the step's path, kind and attempt.
    attempts = sorted(
        (s for s in run if s.name == "RunActivity:rte.http"), key=lambda s: s.attributes["rte.step.attempt"]
    )
    assert [s.attributes["rte.step.attempt"] for s in attempts] == [1, 2], tree
    for span in attempts:
        assert span.attributes["rte.step.path"] == f"{definition_id}/call"
        assert span.attributes["rte.step.kind"] == "http"
        assert chain(span, by_id)[0] == start_activity

    # Each attempt's outgoing call is a client span under it, and the target got its W3C context.
    calls = [
        s for s in run if s.kind == SpanKind.CLIENT and s.parent and by_id.get(s.parent.span_id) in attempts
    ]
    assert len(calls) == 2, tree
    received = [
        r.headers.get("traceparent") or r.headers.get("Traceparent") for r in http_server.calls("/flaky")
    ]
    # version-trace id-parent id-flags: the parent is the call's own span, in the run's trace.
    assert sorted(value.split("-")[1:3] for value in received if value) == sorted(
        [f"{trace_id:032x}", f"{s.context.span_id:016x}"] for s in calls
    ), received


def test_tracing_is_off_without_an_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert telemetry.enable_tracing() is None
    assert telemetry.temporal_interceptors() == []
