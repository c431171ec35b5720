"""Where a connection's credentials go: only to the origins it is bound to, never across a
redirect, never from an input that names another connection; and what else a request keeps or
drops (the URL's own query string, cookies, secrets echoed back)."""

from __future__ import annotations

import base64
import logging
from urllib.parse import quote

import pytest

from activities.http import handle_http, quiet_transport_logs
from rte.errors import EngineError, ErrorCategory

# One connection per auth type, each with a secret of its own.
CONNECTIONS = {
    "bearer": ("bearer", {"token": "tok-bearer-x1"}, {}),
    "basic": ("basic", {"password": "pw-basic-x2"}, {"username": "ada"}),
    "header": ("api_key", {"key": "key-header-x3"}, {"header": "X-Custom-Key"}),
    "query": ("api_key", {"key": "key-query-x4"}, {"query_param": "api_key"}),
}
SECRETS = ("tok-bearer-x1", "pw-basic-x2", "key-header-x3", "key-query-x4")
BASIC_HEADER = "Basic " + base64.b64encode(b"ada:pw-basic-x2").decode()


def leaked(recorded) -> list[str]:
    text = " ".join([recorded.path, str(recorded.query), str(recorded.headers), recorded.body.decode()])
    return [secret for secret in (*SECRETS, BASIC_HEADER) if secret in text]


def bind(connections, server, name: str) -> str:
    kind, secret, config = CONNECTIONS[name]
    return connections.add(name, kind, secret, config | {"base_url": server.base_url})


@pytest.mark.parametrize("name", list(CONNECTIONS))
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_carries_no_credential(
    server, other_server, make_ctx, connections, name, status
):
    bind(connections, server, name)
    target = quote(other_server.url("/echo"), safe="")
    output = await handle_http(
        {"method": "POST", "url": server.url(f"/redirect?status={status}&to={target}"), "body": {"n": 1}},
        make_ctx(connection=name),
    )

    assert output["path"] == "/echo"
    assert leaked(server.requests[0]), "the first origin got the credential"
    [arrived] = other_server.requests
    assert leaked(arrived) == []
    assert "authorization" not in arrived.headers and "x-custom-key" not in arrived.headers


async def test_a_redirect_within_the_origin_keeps_the_credentials(server, make_ctx, connections):
    for name in CONNECTIONS:
        bind(connections, server, name)
        await handle_http({"url": server.url("/redirect?to=/echo")}, make_ctx(connection=name))
    arrivals = [request for request in server.requests if request.path == "/echo"]
    assert [leaked(request) for request in arrivals] == [
        ["tok-bearer-x1"],
        [BASIC_HEADER],
        ["key-header-x3"],
        ["key-query-x4"],
    ]


async def test_credentials_dropped_once_stay_dropped_when_the_chain_comes_back(
    server, other_server, make_ctx, connections
):
    bind(connections, server, "header")
    back = quote(server.url("/echo"), safe="")
    away = quote(other_server.url(f"/redirect?to={back}"), safe="")
    await handle_http({"url": server.url(f"/redirect?to={away}")}, make_ctx(connection="header"))
    assert leaked(server.requests[0]) == ["key-header-x3"]
    assert leaked(server.requests[-1]) == [] and server.requests[-1].path == "/echo"


async def test_credentials_only_go_to_the_origins_the_connection_is_bound_to(
    server, other_server, make_ctx, connections
):
    connections.add("bound", "bearer", {"token": "tok-bearer-x1"}, {"allowed_origins": [server.base_url]})
    await handle_http({"url": server.url("/echo")}, make_ctx(connection="bound"))
    assert server.last().headers["authorization"] == "Bearer tok-bearer-x1"

    with pytest.raises(EngineError) as caught:
        await handle_http({"url": other_server.url("/echo")}, make_ctx(connection="bound"))
    error = caught.value
    assert error.category is ErrorCategory.POLICY and not error.retryable
    assert error.details["rule"] == "connection_origin"
    assert (
        f"may only send its credentials to {server.base_url}, not to {other_server.base_url}" in error.message
    )
    assert other_server.requests == []


async def test_a_connection_bound_to_no_origin_sends_its_credentials_nowhere(server, make_ctx, connections):
    connections.add("unbound", "bearer", {"token": "tok-bearer-x1"})
    with pytest.raises(EngineError) as caught:
        await handle_http({"url": server.url("/echo")}, make_ctx(connection="unbound"))
    assert caught.value.details["rule"] == "connection_origin"
    assert "allowed_origins" in caught.value.message
    assert server.requests == []


async def test_an_input_cannot_name_another_connection(server, make_ctx, connections):
    bind(connections, server, "bearer")
    for ctx in (make_ctx(), make_ctx(connection="query")):
        with pytest.raises(EngineError) as caught:
            await handle_http({"url": server.url("/echo"), "connection": "bearer"}, ctx)
        assert caught.value.category is ErrorCategory.POLICY
        assert caught.value.details["rule"] == "connection_binding"
    assert server.requests == []


async def test_the_query_string_in_the_url_is_kept_beside_with_query(server, make_ctx, connections):
    output = await handle_http({"url": server.url("/echo?keep=1&page=9"), "query": {"page": 2}}, make_ctx())
    assert output["query"] == {"keep": "1", "page": "2"}
    bind(connections, server, "query")
    output = await handle_http(
        {"url": server.url("/echo?keep=1&api_key=forged"), "query": {"extra": "y"}},
        make_ctx(connection="query"),
    )
    assert output["query"] == {"keep": "1", "api_key": "***", "extra": "y"}
    assert server.last().query == {"keep": ["1"], "api_key": ["key-query-x4"], "extra": ["y"]}


async def test_secrets_a_service_echoes_back_are_redacted_from_the_output(server, make_ctx, connections):
    bind(connections, server, "bearer")
    output = await handle_http(
        {"url": server.url("/echo"), "response": "full"}, make_ctx(connection="bearer")
    )
    assert output["body"]["headers"]["authorization"] == "Bearer ***"
    assert "tok-bearer-x1" not in str(output)


async def test_no_cookie_travels_from_one_step_to_another(server, make_ctx):
    await handle_http({"url": server.url("/set-cookie")}, make_ctx())
    output = await handle_http({"url": server.url("/echo")}, make_ctx(execution_id="someone-else"))
    assert "cookie" not in output["headers"]


async def test_httpx_logs_no_query_string_at_any_level(server, make_ctx, connections, caplog):
    bind(connections, server, "query")
    quiet_transport_logs()
    caplog.set_level(logging.DEBUG)  # root at DEBUG: the httpx logger itself stays at WARNING
    await handle_http({"url": server.url("/echo")}, make_ctx(connection="query"))
    caplog.set_level(logging.DEBUG, logger="httpx")  # even someone turning httpx up sees no key
    await handle_http({"url": server.url("/echo")}, make_ctx(connection="query"))
    httpx_lines = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert httpx_lines and all("?[query hidden]" in line for line in httpx_lines)
    assert not any("key-query-x4" in record.getMessage() for record in caplog.records)


async def test_a_redirect_loop_stops_with_a_non_retryable_error(server, make_ctx):
    with pytest.raises(EngineError) as caught:
        await handle_http({"url": server.url("/loop")}, make_ctx())
    assert caught.value.category is ErrorCategory.HTTP_4XX and not caught.value.retryable
    assert "more than 10 redirects" in caught.value.message
    assert len(server.requests) == 11


async def test_a_redirect_to_another_scheme_is_a_clear_error_not_a_crash(server, make_ctx, connections):
    bind(connections, server, "header")
    with pytest.raises(EngineError) as caught:
        await handle_http(
            {"url": server.url("/redirect?to=file:///etc/passwd")}, make_ctx(connection="header")
        )
    assert caught.value.category is ErrorCategory.VALIDATION and not caught.value.retryable
    assert "key-header-x3" not in caught.value.message
