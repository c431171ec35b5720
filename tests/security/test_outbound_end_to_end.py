"""The outbound policy on the real stack: a worker built from settings, the real dev server, a real
HTTP server. A refusal fails the step at once (non-retryable `policy`, no retry), naming the rule."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from rte.config import Settings
from rte.store import Store
from tests.conftest import running_engine
from tests.support.http_server import Reply, TestServer

CALL = """
id: outbound
inputs: {{type: object, properties: {{url: {{type: string}}}}}}
steps:
  - id: call
    kind: http
    with: {{url: "${{ .inputs.url }}"}}
    retry: {{max_attempts: 3, initial_interval: 100ms}}
outputs: "${{ .steps.call.output }}"
"""


async def run(
    client: Client, store: Store, settings: Settings, url: str, **changes: Any
) -> tuple[bool, Any, Any]:
    async with running_engine(client, store, settings.model_copy(update=changes)) as engine:
        ok, _result, state = await engine.run(CALL.format(), {"url": url})
    return ok, state.steps["outbound/call"].error, state


async def test_loopback_is_refused_by_default_and_reached_once_allowed(
    client: Client, store: Store, settings: Settings, http_server: TestServer
) -> None:
    http_server.route("GET", "/hello", Reply(200, {"hi": True}))
    ok, error, state = await run(client, store, settings, f"{http_server.url}/hello", outbound_allow=[])
    assert not ok and error.category == "policy" and not error.retryable
    assert "(rule loopback)" in error.message and "RTE_OUTBOUND_ALLOW" in error.message
    assert error.attempts == 1  # refused for good: no retry
    assert len(await store.metrics.for_execution(state.execution_id)) == 1  # one attempt recorded
    assert http_server.requests == []
    ok, _, _ = await run(client, store, settings, f"{http_server.url}/hello", outbound_allow=["127.0.0.1"])
    assert ok and len(http_server.calls("/hello")) == 1


async def test_the_engines_own_services_are_refused_with_loopback_allowed(
    client: Client, store: Store, settings: Settings, http_server: TestServer
) -> None:
    temporal = client.service_client.config.target_host
    ok, error, _ = await run(client, store, settings, f"http://{temporal}/", temporal_address=temporal)
    assert not ok and "is the Temporal frontend (rule engine_service)" in error.message
    # The test server stands in for the API and for the Temporal Web UI in turn.
    for setting, name in (("api_url", "the engine's API"), ("temporal_ui_url", "the Temporal Web UI")):
        ok, error, _ = await run(
            client, store, settings, f"{http_server.url}/api/v1/namespaces", **{setting: http_server.url}
        )
        assert not ok and f"is {name} (rule engine_service)" in error.message
    assert http_server.requests == []


async def test_link_local_and_metadata_addresses_are_refused_even_when_everything_else_is_allowed(
    client: Client, store: Store, settings: Settings
) -> None:
    for url, rule in (
        ("http://169.254.169.254/latest/meta-data/", "cloud_metadata"),
        ("http://169.254.10.1/", "link_local"),
    ):
        ok, error, _ = await run(client, store, settings, url, outbound_allow=["0.0.0.0/0", "::/0"])
        assert not ok and f"(rule {rule})" in error.message
