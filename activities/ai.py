"""The `ai` step: one chat completion from an OpenAI-compatible endpoint.

It POSTs `{base_url}/chat/completions` with the connection's key as a bearer token, through the
http step's `send_request`, so errors are classified exactly as for `http` (429 → rate_limit with
Retry-After, 5xx → retryable, 401/403 → auth…). The output is
`{"content", "model", "finish_reason", "usage"}`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities.base import ResolvedConnection, StepContext
from activities.http import parse_params, redact_value, send_request, step_connection
from rte.errors import EngineError, ErrorCategory

OPENAI_BASE_URL = "https://api.openai.com/v1"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]]


class AiParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection: str | None = Field(
        None, description="Must be the step's own connection (set by the definition) when given."
    )
    model: str | None = Field(None, description="Defaults to the connection's config.model.")
    messages: list[ChatMessage] | None = None
    prompt: str | None = Field(None, description="Shorthand for one user message.")
    system: str | None = Field(None, description="Prepended as a system message.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    timeout_s: float = Field(60.0, gt=0, le=3600)
    response_format: dict[str, Any] | None = Field(
        None, description="Passed through, e.g. {'type': 'json_object'}."
    )

    @model_validator(mode="after")
    def _one_source_of_messages(self) -> AiParams:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' or 'prompt'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        if self.prompt is not None:
            messages.append({"role": "user", "content": self.prompt})
        else:
            messages.extend(message.model_dump() for message in self.messages or [])
        return messages


def _base_url(connection: ResolvedConnection) -> str:
    base_url = connection.config.get("base_url")
    if connection.type == "openai":
        return str(base_url or OPENAI_BASE_URL)
    if connection.type == "bearer" and base_url:
        return str(base_url)
    raise EngineError(
        ErrorCategory.CONFIGURATION,
        f"connection '{connection.id}' (type {connection.type}) cannot serve the ai step: "
        "use an openai connection, or a bearer connection with a base_url",
    )


def _completion_output(data: Any, model: str) -> dict[str, Any]:
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise EngineError(
            ErrorCategory.VALIDATION,
            "the AI endpoint answered, but not with an OpenAI-compatible chat completion "
            "(no choices[0].message)",
            retryable=True,
        ) from None
    usage = data.get("usage") or {}
    return {
        "content": content,
        "model": data.get("model") or model,
        "finish_reason": choice.get("finish_reason"),
        "usage": usage,
    }


async def handle_ai(params: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    p = parse_params(AiParams, params, "ai")
    connection_id = step_connection(p.connection, ctx)
    if not connection_id:
        raise EngineError(
            ErrorCategory.VALIDATION,
            "invalid parameters for the ai step: connection: a connection is required",
        )
    connection = await ctx.connection(connection_id)
    base_url = _base_url(connection)
    model = p.model or connection.config.get("model")
    if not model:
        raise EngineError(
            ErrorCategory.VALIDATION,
            f"invalid parameters for the ai step: model: required (connection '{connection.id}' sets none)",
        )
    body: dict[str, Any] = {"model": model, "messages": p.chat_messages()}
    for name in ("temperature", "max_tokens", "response_format"):
        if getattr(p, name) is not None:
            body[name] = getattr(p, name)

    response = await send_request(
        ctx,
        "POST",
        f"{base_url.rstrip('/')}/chat/completions",
        connection=connection,
        json_body=body,
        timeout_s=p.timeout_s,
    )
    try:
        data = response.json()
    except ValueError:
        data = None
    output = redact_value(_completion_output(data, str(model)), ctx)
    usage = output["usage"]
    if isinstance(usage.get("prompt_tokens"), int):
        ctx.metrics["tokens_prompt"] = usage["prompt_tokens"]
    if isinstance(usage.get("completion_tokens"), int):
        ctx.metrics["tokens_completion"] = usage["completion_tokens"]
    ctx.log(
        "info",
        f"model {output['model']} finished ({output['finish_reason']}) with "
        f"{usage.get('prompt_tokens', '?')} prompt + {usage.get('completion_tokens', '?')} completion tokens",
    )
    return output
