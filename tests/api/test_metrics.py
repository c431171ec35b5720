"""`GET /metrics`: Prometheus text with the API's request counts and latency and executions started."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from rte.store.api_keys import Role
from tests.api.conftest import ApiServer

RUNS_ROUTE = "/definitions/{definition_id}/runs"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_requests_by_route_and_status_and_executions_by_definition(
    api_server: ApiServer, client: Client
) -> None:
    definition_id = f"metered-{uuid.uuid4().hex[:8]}"
    source = f"id: {definition_id}\nsteps:\n  - id: one\n    kind: set\n    with: {{a: 1}}\n"
    async with api_server.client(Role.ADMIN) as admin:
        assert (await admin.post("/definitions", json={"source": source})).status_code in (200, 201)
        for _ in range(2):
            started = await admin.post(f"/definitions/{definition_id}/runs", json={})
            assert started.status_code == 202, started.text
            await client.get_workflow_handle(started.json()["execution_id"]).result()
        assert (await admin.get("/definitions/no-such-definition")).status_code == 404
    async with api_server.client(Role.VIEWER) as viewer:
        response = await viewer.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    runs = frozenset({("method", "POST"), ("route", RUNS_ROUTE), ("status", "202")})
    assert found[("rte_api_requests_total", runs)] >= 2
    missing = frozenset({("method", "GET"), ("route", "/definitions/{definition_id}"), ("status", "404")})
    assert found[("rte_api_requests_total", missing)] >= 1
    # A histogram: cumulative buckets up to +Inf, which equals the count.
    timed = {("method", "POST"), ("route", RUNS_ROUTE)}
    assert found[("rte_api_request_duration_seconds_count", frozenset(timed))] >= 2
    assert found[("rte_api_request_duration_seconds_bucket", frozenset(timed | {("le", "+Inf")}))] >= 2
    assert found[("rte_api_request_duration_seconds_sum", frozenset(timed))] > 0
    started_here = frozenset({("definition", definition_id), ("trigger", "manual")})
    assert found[("rte_executions_started_total", started_here)] == 2
    # Raw paths never become labels: the definition id appears only as the executions' label.
    assert not any(("route", f"/definitions/{definition_id}/runs") in labels for _, labels in found)


async def test_metrics_need_an_api_key(api_server: ApiServer) -> None:
    async with api_server.client(None) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
