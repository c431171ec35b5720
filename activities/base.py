"""The contract between the interpreter workflow and the step activities.

The workflow resolves a step's `with` templates and sends a `StepRequest`; the activity of that
step's kind runs a *handler* — a plain async function `handler(params, ctx) -> output` — and answers
with a `StepResult`. Handlers know nothing about Temporal: they raise `EngineError` for failures and
use `StepContext` for logs, metrics, connections and the idempotency key. `activities/runtime.py`
wraps them into Temporal activities.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from activities.outbound_policy import OutboundPolicy

LogLevel = Literal["debug", "info", "warning", "error"]


class StepRequest(BaseModel):
    """One call of a step: a single item, or a batch of items (`items` set, `params` per item)."""

    execution_id: str
    run_id: str = ""
    definition_id: str = ""
    step_path: str
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    item_index: int | None = None
    connection: str | None = None
    timeout_s: float | None = None
    max_attempts: int = 1
    # Claim check: the most the output (each item's, for a batch) may keep inline, when the
    # interpreter gathers many outputs into one payload (the items of a for_each slice); larger
    # parts go to the payload store. None: the worker's RTE_PAYLOAD_OFFLOAD_BYTES.
    output_budget_bytes: int | None = None
    # Batches: one activity call handles several items, heartbeating progress so a retry resumes
    # after the items already done.
    batch: list[BatchItem] | None = None


class BatchItem(BaseModel):
    item_index: int
    params: dict[str, Any]


class StepResult(BaseModel):
    output: Any = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    # For batches: one outcome per item, in order.
    items: list[BatchItemResult] | None = None


class BatchItemResult(BaseModel):
    item_index: int
    ok: bool
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 1


StepRequest.model_rebuild()
StepResult.model_rebuild()


@dataclass(frozen=True)
class ResolvedConnection:
    """A connection with its secret, as only an activity ever sees it."""

    id: str
    type: str  # bearer | api_key | basic | openai
    config: dict[str, Any]
    secret: dict[str, Any] = field(repr=False)

    def secret_values(self) -> list[str]:
        return [str(value) for value in self.secret.values() if value]


class ConnectionResolver(Protocol):
    async def resolve(self, connection_id: str) -> ResolvedConnection: ...


@dataclass
class LogEntry:
    level: LogLevel
    message: str
    source: str
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class StepContext:
    """What a handler may use besides its parameters."""

    request: StepRequest
    attempt: int
    connections: ConnectionResolver
    logs: list[LogEntry] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # values redacted from logs and errors
    # Where http/ai steps may connect; None: the policy of this process's settings (RTE_OUTBOUND_*).
    policy: OutboundPolicy | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable for one step (and item) of one execution, identical across retries."""
        parts = [self.request.execution_id, self.request.step_path]
        if self.request.item_index is not None:
            parts.append(str(self.request.item_index))
        return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]

    def log(self, level: LogLevel, message: str, source: str | None = None) -> None:
        self.logs.append(LogEntry(level, self.redact(message), source or self.request.kind))

    async def connection(self, connection_id: str) -> ResolvedConnection:
        resolved = await self.connections.resolve(connection_id)
        self.secrets.extend(resolved.secret_values())
        return resolved

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text


Handler = Callable[[dict[str, Any], StepContext], Awaitable[Any]]
