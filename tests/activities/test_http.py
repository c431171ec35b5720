"""The http step against a real local server: auth, idempotency, classification, redaction."""

from __future__ import annotations

import base64
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from activities.http import handle_http, shared_client
from rte.errors import EngineError, ErrorCategory


async def failing(params: dict, ctx) -> EngineError:
    with pytest.raises(EngineError) as caught:
        await handle_http(params, ctx)
    return caught.value


async def test_get_returns_the_parsed_json_body_and_records_metrics(server, make_ctx):
    ctx = make_ctx()
    output = await handle_http({"url": server.url("/echo"), "query": {"page": 2}}, ctx)

    assert output["method"] == "GET"
    assert output["query"] == {"page": "2"}
    assert ctx.metrics["http_status"] == 200
    assert ctx.metrics["bytes_in"] > 0 and ctx.metrics["bytes_out"] == 0
    [line] = ctx.logs
    assert line.level == "info"
    assert line.message.startswith(f"GET {server.url('/echo')} → 200 in ") and line.message.endswith(" ms")


async def test_post_sends_the_body_as_json(server, make_ctx):
    ctx = make_ctx()
    await handle_http({"method": "post", "url": server.url("/echo"), "body": {"sku": "A1", "qty": 3}}, ctx)

    sent = server.last()
    assert sent.method == "POST"
    assert sent.json() == {"sku": "A1", "qty": 3}
    assert sent.headers["content-type"] == "application/json"
    assert ctx.metrics["bytes_out"] == len(sent.body)


async def test_text_responses_come_back_as_text(server, make_ctx):
    assert await handle_http({"url": server.url("/text")}, make_ctx()) == "plain words"
    raw = await handle_http({"url": server.url("/echo"), "expect": "text"}, make_ctx())
    assert isinstance(raw, str) and raw.startswith("{")


async def test_expecting_json_from_a_text_endpoint_is_a_validation_error(server, make_ctx):
    error = await failing({"url": server.url("/text"), "expect": "json"}, make_ctx())
    assert error.category is ErrorCategory.VALIDATION
    assert "not valid JSON" in error.message


async def test_full_response_mode_returns_status_headers_and_body(server, make_ctx):
    output = await handle_http({"url": server.url("/text"), "response": "full"}, make_ctx())
    assert output["status"] == 200
    assert output["headers"]["content-type"].startswith("text/plain")
    assert output["body"] == "plain words"


@pytest.mark.parametrize(
    ("conn_type", "secret", "config", "where", "expected"),
    [
        ("bearer", {"token": "tok-bearer-1"}, {}, ("header", "authorization"), "Bearer tok-bearer-1"),
        ("openai", {"api_key": "sk-openai-1"}, {}, ("header", "authorization"), "Bearer sk-openai-1"),
        ("api_key", {"key": "key-default-1"}, {}, ("header", "x-api-key"), "key-default-1"),
        (
            "api_key",
            {"key": "key-custom-1"},
            {"header": "X-Token"},
            ("header", "x-token"),
            "key-custom-1",
        ),
        ("api_key", {"key": "key-query-1"}, {"query_param": "key"}, ("query", "key"), "key-query-1"),
        (
            "basic",
            {"password": "pw-basic-1"},
            {"username": "alice"},
            ("header", "authorization"),
            "Basic " + base64.b64encode(b"alice:pw-basic-1").decode(),
        ),
    ],
)
async def test_connection_credentials_reach_the_server(
    server, make_ctx, connections, conn_type, secret, config, where, expected
):
    connections.add("svc", conn_type, secret, config | {"base_url": server.base_url})
    await handle_http({"url": server.url("/echo")}, make_ctx(connection="svc"))

    place, name = where
    seen = server.last().headers.get(name) if place == "header" else server.last().query[name][0]
    assert seen == expected


async def test_the_step_level_connection_and_its_base_url_make_relative_urls_work(
    server, make_ctx, connections
):
    connections.add("api", "bearer", {"token": "tok-step-level"}, {"base_url": server.url("/")})
    output = await handle_http({"url": "echo"}, make_ctx(connection="api"))

    assert output["path"] == "/echo"
    assert server.last().headers["authorization"] == "Bearer tok-step-level"


async def test_a_relative_url_without_base_url_is_rejected(make_ctx):
    error = await failing({"url": "/orders"}, make_ctx())
    assert error.category is ErrorCategory.VALIDATION
    assert "'/orders' is relative" in error.message


async def test_unusable_connection_type_is_a_configuration_error(server, make_ctx, connections):
    connections.add("weird", "oauth2", {"token": "x"})
    error = await failing({"url": server.url("/echo")}, make_ctx(connection="weird"))
    assert error.category is ErrorCategory.CONFIGURATION
    assert "oauth2" in error.message


async def test_idempotency_key_is_stable_per_item_across_attempts_and_differs_between_items(server, make_ctx):
    params = {"method": "POST", "url": server.url("/echo"), "body": {}}
    await handle_http(params, make_ctx(step_path="main/pay", item_index=0, attempt=1))
    await handle_http(params, make_ctx(step_path="main/pay", item_index=0, attempt=2))
    await handle_http(params, make_ctx(step_path="main/pay", item_index=1))

    first, retry, other_item = (request.headers["idempotency-key"] for request in server.requests)
    assert first == retry
    assert other_item != first
    assert len(first) == 32


async def test_an_explicit_idempotency_key_is_kept(server, make_ctx):
    await handle_http({"url": server.url("/echo"), "headers": {"idempotency-key": "mine-42"}}, make_ctx())
    assert server.last().headers["idempotency-key"] == "mine-42"


async def test_requests_share_one_pooled_client_and_connection(server, make_ctx):
    assert shared_client() is shared_client()
    await handle_http({"url": server.url("/echo")}, make_ctx())
    await handle_http({"url": server.url("/echo")}, make_ctx())
    first, second = server.requests
    assert first.client_port == second.client_port


async def test_5xx_is_retryable_and_names_method_url_and_status(server, make_ctx):
    error = await failing({"method": "POST", "url": server.url("/status/503")}, make_ctx())

    assert error.category is ErrorCategory.HTTP_5XX
    assert error.retryable
    assert error.message == f"POST {server.url('/status/503')} answered 503 Service Unavailable"
    assert error.details["status"] == 503
    assert "request failed" in error.details["body_excerpt"]


async def test_error_body_excerpt_is_capped_at_2kb(server, make_ctx):
    error = await failing({"url": server.url("/status/500"), "query": {"pad": 10000}}, make_ctx())
    assert len(error.details["body_excerpt"]) == 2048


async def test_429_is_a_rate_limit_with_retry_after_in_seconds(server, make_ctx):
    error = await failing({"url": server.url("/status/429"), "query": {"retry_after": "7"}}, make_ctx())
    assert error.category is ErrorCategory.RATE_LIMIT
    assert error.retryable
    assert error.retry_after_s == 7


async def test_429_retry_after_as_an_http_date(server, make_ctx):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    error = await failing({"url": server.url("/status/429"), "query": {"retry_after": when}}, make_ctx())
    assert error.retry_after_s is not None and 115 <= error.retry_after_s <= 120


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_auth_errors_not_retried(server, make_ctx, status):
    error = await failing({"url": server.url(f"/status/{status}")}, make_ctx())
    assert error.category is ErrorCategory.AUTH
    assert not error.retryable


async def test_404_is_a_4xx_error_not_retried(server, make_ctx):
    error = await failing({"url": server.url("/status/404")}, make_ctx())
    assert error.category is ErrorCategory.HTTP_4XX
    assert not error.retryable
    assert "answered 404 Not Found" in error.message


async def test_a_closed_port_is_a_retryable_network_error(make_ctx):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctx = make_ctx()
    error = await failing({"url": f"http://127.0.0.1:{port}/orders"}, ctx)

    assert error.category is ErrorCategory.NETWORK
    assert error.retryable
    assert error.message.startswith(f"GET http://127.0.0.1:{port}/orders failed")
    assert ctx.logs[-1].level == "warning"


async def test_a_slow_server_is_a_retryable_timeout(server, make_ctx):
    started = time.perf_counter()
    error = await failing({"url": server.url("/slow"), "query": {"delay": 2}, "timeout_s": 0.3}, make_ctx())

    assert time.perf_counter() - started < 1.5
    assert error.category is ErrorCategory.TIMEOUT
    assert error.retryable
    assert "within 0.3 s" in error.message


async def test_secrets_never_appear_in_errors_or_logs(server, make_ctx, connections, visible_text):
    token = "tok-very-secret-4711"
    connections.add("api", "bearer", {"token": token}, {"base_url": server.base_url})
    ctx = make_ctx(connection="api")
    error = await failing({"url": server.url("/status/401")}, ctx)

    assert server.last().headers["authorization"] == f"Bearer {token}"  # sent, and echoed back…
    assert token not in visible_text(ctx, error)  # …and the user never sees it
    assert "***" in error.details["body_excerpt"]


async def test_query_string_credentials_stay_out_of_messages(server, make_ctx, connections, visible_text):
    connections.add(
        "q", "api_key", {"key": "qkey-secret-99"}, {"query_param": "api_key", "base_url": server.base_url}
    )
    ctx = make_ctx(connection="q")
    error = await failing({"url": server.url("/status/500")}, ctx)

    assert server.last().query["api_key"] == ["qkey-secret-99"]
    assert "qkey-secret-99" not in visible_text(ctx, error)
    assert error.message == f"GET {server.url('/status/500')} answered 500 Internal Server Error"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"method": "FETCH", "url": "http://x"}, "method"),
        ({"method": "GET"}, "url"),
        ({"url": "http://x", "heders": {}}, "heders"),
        ({"url": "http://x", "timeout_s": -1}, "timeout_s"),
    ],
)
async def test_invalid_params_are_validation_errors_naming_the_field(make_ctx, params, field):
    error = await failing(params, make_ctx())
    assert error.category is ErrorCategory.VALIDATION
    assert not error.retryable
    assert f"{field}:" in error.message
