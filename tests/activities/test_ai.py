"""The ai step against a fake OpenAI-compatible endpoint served over real HTTP."""

from __future__ import annotations

import pytest

from activities.ai import handle_ai
from rte.errors import EngineError, ErrorCategory

from .conftest import OPENAI_KEY


@pytest.fixture
def openai(server, connections) -> str:
    return connections.add("llm", "openai", {"api_key": OPENAI_KEY}, {"base_url": server.url("/v1")})


async def failing(params: dict, ctx) -> EngineError:
    with pytest.raises(EngineError) as caught:
        await handle_ai(params, ctx)
    return caught.value


async def test_a_prompt_returns_content_model_finish_reason_and_usage(server, make_ctx, openai):
    ctx = make_ctx("ai", connection=openai)
    output = await handle_ai({"connection": openai, "model": "gpt-test", "prompt": "say hi"}, ctx)

    assert output == {
        "content": "echo: say hi",
        "model": "gpt-test-2024",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    }
    assert ctx.metrics["tokens_prompt"] == 2
    assert ctx.metrics["tokens_completion"] == 3
    sent = server.last()
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.json()["messages"] == [{"role": "user", "content": "say hi"}]
    assert sent.headers["idempotency-key"] == ctx.idempotency_key


async def test_messages_system_and_options_are_sent_as_given(server, make_ctx, openai):
    params = {
        "model": "gpt-test",
        "system": "be brief",
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "what now"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
        "response_format": {"type": "json_object"},
    }
    output = await handle_ai(params, make_ctx("ai", connection=openai))

    sent = server.last().json()
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][0]["content"] == "be brief"
    assert (sent["temperature"], sent["max_tokens"], sent["response_format"]) == (
        0.2,
        50,
        {"type": "json_object"},
    )
    assert output["content"] == "echo: what now"


async def test_a_bearer_connection_with_base_url_and_default_model_works(server, make_ctx, connections):
    connections.add("gw", "bearer", {"token": OPENAI_KEY}, {"base_url": server.url("/v1/"), "model": "house"})
    output = await handle_ai({"connection": "gw", "prompt": "x"}, make_ctx("ai", connection="gw"))

    assert output["model"] == "house-2024"
    assert server.last().path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("conn_type", "config"),
    [("api_key", {"base_url": "http://127.0.0.1:9"}), ("bearer", {}), ("basic", {"username": "u"})],
)
async def test_connections_that_cannot_serve_chat_are_configuration_errors(
    make_ctx, connections, conn_type, config
):
    connections.add("c", conn_type, {"api_key": "k", "token": "t", "password": "p"}, config)
    error = await failing({"connection": "c", "model": "m", "prompt": "x"}, make_ctx("ai", connection="c"))
    assert error.category is ErrorCategory.CONFIGURATION
    assert "openai connection" in error.message


async def test_a_rejected_key_is_an_auth_error_that_never_shows_the_key(
    server, make_ctx, connections, visible_text
):
    wrong_key = "sk-wrong-but-secret-123"
    connections.add("bad", "openai", {"api_key": wrong_key}, {"base_url": server.url("/v1")})
    ctx = make_ctx("ai", connection="bad")
    error = await failing({"connection": "bad", "model": "m", "prompt": "x"}, ctx)

    assert error.category is ErrorCategory.AUTH
    assert not error.retryable
    assert error.message == f"POST {server.url('/v1/chat/completions')} answered 401 Unauthorized"
    assert "Incorrect API key provided: ***" in error.details["body_excerpt"]
    assert wrong_key not in visible_text(ctx, error)


async def test_rate_limits_are_classified_like_http(server, make_ctx, connections):
    connections.add("rl", "openai", {"api_key": OPENAI_KEY}, {"base_url": server.url("/ratelimited/v1")})
    error = await failing({"connection": "rl", "model": "m", "prompt": "x"}, make_ctx("ai", connection="rl"))
    assert error.category is ErrorCategory.RATE_LIMIT
    assert error.retry_after_s == 7


async def test_an_answer_that_is_not_a_chat_completion_is_reported(server, make_ctx, connections):
    connections.add("odd", "openai", {"api_key": OPENAI_KEY}, {"base_url": server.url("/broken/v1")})
    error = await failing(
        {"connection": "odd", "model": "m", "prompt": "x"}, make_ctx("ai", connection="odd")
    )
    assert error.category is ErrorCategory.VALIDATION
    assert "not with an OpenAI-compatible chat completion" in error.message


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"model": "m", "prompt": "x"}, "connection"),
        ({"connection": "llm", "model": "m"}, "exactly one of 'messages' or 'prompt'"),
        ({"connection": "llm", "model": "m", "prompt": "x", "messages": []}, "exactly one of"),
        ({"connection": "llm", "prompt": "x"}, "model"),
        ({"connection": "llm", "model": "m", "prompt": "x", "temperature": 5}, "temperature"),
    ],
)
async def test_invalid_params_are_validation_errors(make_ctx, openai, params, field):
    error = await failing(params, make_ctx("ai", connection=params.get("connection")))
    assert error.category is ErrorCategory.VALIDATION
    assert field in error.message
